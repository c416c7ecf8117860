"""Retraining on workers: the chief hands out each (trial, seed) retraining as a unit of work, under a lease.

After the search, a chief with workers (`archsearch.search.distributed.Chief`)
does not retrain the best trials itself. Each retraining of one trial (or
reference) with one seed is a `Unit`, and the chief's `Units` gives it to
the next worker that asks (`train_units()`), under a lease as a trial's
(`archsearch.search.leases`): `LEASE_FACTOR` times the longest retraining
epoch so far, never under the floor. A worker reports every epoch, and that
it is alive within long ones; one silent for longer than its lease loses
the unit to the next worker that asks (a worker restarted with the same id
gets it back). Once trained, the worker sends the test figures, the epochs'
history and, where the unit keeps one, the model, in chunks: Keras Tuner's
gRPC carries metrics only. The first result of a unit is kept, a second is
ignored, so nothing is trained twice into the leaderboard.

The service is gRPC's generic one beside Keras Tuner's on the chief's
server, its messages JSON (and the model's bytes): there is no generated
code to keep in step. Like Keras Tuner's, it has no authentication.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time

import grpc
import keras

from archsearch.errors import ArchsearchError
from archsearch.model.backend import keras_without_tensorflow
from archsearch.search.leases import LEASE_FACTOR

SERVICE = "archsearch.Retraining"
CHUNK_BYTES = 1 << 20  # a model is sent in chunks of this size (gRPC takes messages of up to 4 MiB)
WAIT_SECONDS = 1.0  # a worker asks again after this long when the chief has no unit for it yet
ALIVE_SECONDS = 5.0  # the longest a worker goes without a report, epochs allowing


@dataclasses.dataclass(frozen=True)
class Unit:
    """One retraining: a trial's (or reference's) point, trained from scratch with one seed.

    Args:
        trial_id: the leaderboard row it is for (`"07"`, `"reference:resnet20"`).
        seed: the retraining's seed.
        point: the point to train, the retraining epochs (`epochs`) among its values.
        transfer: whether it starts from the space's transferred base.
        keep_model: whether its trained model comes back to the chief (seed 0 of a trial: the one exported).
    """

    trial_id: str
    seed: int
    point: dict
    transfer: bool = False
    keep_model: bool = False

    @property
    def name(self):
        """What the lines call it, e.g. `retrain [07] seed 0`."""
        return f"retrain [{self.trial_id}] seed {self.seed}"

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values):
        # JSON has no tuples: a point's per-stage values (`blocks_per_stage=(2, 2)`) come back as lists.
        point = {name: tuple(value) if isinstance(value, list) else value for name, value in values["point"].items()}
        return cls(**{**values, "point": point})


class Units:
    """The chief's units of work: handed out under leases, each result kept once.

    A lease runs from the worker's last report. `add()` gives it units,
    `close()` tells it none will come (workers that ask are then done). Each
    result goes to `on_result(unit, worker, evaluation, history, model)`, one
    at a time, `model` being the path of a temporary file with the model
    received (to move away), or `None` where the unit keeps none. Should
    receiving it fail, the unit stays with its worker until its lease runs
    out; should `on_result` raise (a full disk, say), the error is kept in
    `failure` for the chief to raise.

    Args:
        lease_floor: the shortest lease, in seconds.
        log: where lines go.
    """

    def __init__(self, lease_floor, log=print):
        self.lease_floor, self.log = lease_floor, log
        self.lock = threading.Lock()
        self.writing = threading.Lock()
        self.units = {}  # name -> unit, of every unit added
        self.pending = []  # names not handed out, or handed back
        self.held = {}  # worker -> [name, when it last reported on it]
        self.done = {}  # name -> the worker whose result was kept
        self.receiving = set()  # names whose result is arriving
        self.calls = {}  # worker -> when it last called
        self.longest_epoch = 0.0
        self.closed = False
        self.told = set()  # the workers told that nothing is left
        self.failure = None
        self.on_result = None

    def add(self, units, on_result):
        """Queues `units` (in order); their results go to `on_result`."""
        for unit in units:  # here, rather than in a worker's call, should a point not be JSON's
            json.dumps(unit.to_json())
        with self.lock:
            self.on_result = on_result
            for unit in units:
                self.units[unit.name] = unit
                self.pending.append(unit.name)

    def close(self):
        """No more units will come (the chief is closing): a worker that asks is done."""
        with self.lock:
            self.closed = True

    def know(self, calls):
        """Counts the workers that called the search's oracle (worker -> when) as having called: until
        one asks for a unit, its silence since then is what tells whether every worker is gone."""
        with self.lock:
            for worker, when in calls.items():
                self.calls.setdefault(worker, when)

    def all_told(self):
        """Whether every worker that asked for a unit has been told that nothing is left."""
        with self.lock:
            return set(self.calls) <= self.told

    def finished(self):
        """Whether every unit added has its result."""
        with self.lock:
            return len(self.done) == len(self.units)

    def take(self, worker):
        """The unit `worker` should train: its own again, else the next; `"wait"` or `"done"` if none."""
        with self.lock:
            now = self.calls[worker] = time.monotonic()
            if self.closed:
                self.told.add(worker)
                return "done"
            self._reclaim(worker, now)
            if worker in self.held:
                name = self.held[worker][0]
                self.held[worker][1] = now
                self.log(f"{name}: started on {worker} again (it was restarted)")
                return self.units[name]
            if self.pending:
                name = self.pending.pop(0)
                self.held[worker] = [name, now]
                self.log(f"{name}: started on {worker}")
                return self.units[name]
            return "wait"

    def _reclaim(self, worker, now):
        """Puts the units of workers silent for longer than their lease back in the queue, first."""
        for holder, (name, heard) in list(self.held.items()):
            if holder != worker and now - heard > self.lease() and name not in self.receiving:
                del self.held[holder]
                self.pending.insert(0, name)
                self.log(
                    f"{name}: no report from {holder} for {now - heard:.0f} s (its lease: {self.lease():.0f} s); "
                    "handed to the next worker"
                )

    def lease(self):
        """Seconds a worker may stay silent before its unit goes to another."""
        return max(self.lease_floor, LEASE_FACTOR * self.longest_epoch)

    def report(self, worker, name, epoch_seconds=None):
        """A worker's report on a unit; renews its lease. Returns whether its result is still wanted."""
        with self.lock:
            now = self.calls[worker] = time.monotonic()
            if epoch_seconds is not None:
                self.longest_epoch = max(self.longest_epoch, epoch_seconds)
            if self.held.get(worker, [None])[0] == name:
                self.held[worker][1] = now
            return name not in self.done

    def deliver(self, worker, name, evaluation, history, chunks, size=0, digest=None):
        """A worker's result of a unit. Returns whether it was kept.

        Not kept: another's result came first or is arriving, or the model arrived short of its `size`
        bytes or its sha256 `digest` (the unit then stays with its worker, under its lease).
        """
        with self.lock:
            now = self.calls[worker] = time.monotonic()
            if name in self.done or name in self.receiving:
                why = "another worker's came first" if name in self.done else "another worker's is arriving"
                self.log(f"{name}: a second result, from {worker}, is ignored ({why})")
                self._drop(worker, name)
                return False
            self.receiving.add(name)
            if self.held.get(worker, [None])[0] == name:
                self.held[worker][1] = now  # receiving it renews the lease
        kept = False
        try:
            with tempfile.TemporaryDirectory(prefix="archsearch-result-") as scratch:
                model = os.path.join(scratch, "model.keras") if self.units[name].keep_model else None
                if model and _receive(chunks, model) != (size, digest):
                    self.log(f"{name}: the model from {worker} arrived incomplete; not kept")
                    return False
                with self.writing:  # one result at a time into the run's files (history.csv...)
                    self.on_result(self.units[name], worker, evaluation, history, model)
            kept = True
        except grpc.RpcError:  # the worker was lost while it sent: its lease decides
            raise
        except BaseException as error:
            with self.lock:
                self.failure = self.failure or error
            raise
        finally:
            with self.lock:
                # The worker was in its call until now: its silence starts at the end of a long delivery.
                self.calls[worker] = time.monotonic()
                self.receiving.discard(name)
                if kept:
                    self.done[name] = worker
                    for holder in [h for h, held in self.held.items() if held[0] == name]:
                        del self.held[holder]
                    if name in self.pending:
                        self.pending.remove(name)
        return True

    def _drop(self, worker, name):
        """`worker` no longer holds `name` (it would train it again when it next asks)."""
        if self.held.get(worker, [None])[0] == name:
            del self.held[worker]

    def fail(self, worker, name, reason):
        """A worker could not train the unit it holds: the retraining fails, as it would in one process."""
        with self.lock:
            if name in self.done or self.held.get(worker, [None])[0] != name:
                self.log(f"{name}: {worker} failed to train it ({reason}), but it is done or another's: ignored")
                return
            self.failure = self.failure or ArchsearchError(f"{name} failed on {worker}: {reason}")

    def silent_for(self, now, ignore=()):
        """Seconds since the last call of a worker not in `ignore`; `None` if none ever called.

        0 while the lease of a unit one of them holds runs.
        """
        with self.lock:
            calls = {worker: when for worker, when in self.calls.items() if worker not in ignore}
            if not calls:
                return None
            if self.receiving or any(w in calls and now - heard <= self.lease() for w, (_, heard) in self.held.items()):
                return 0.0
            return now - max(calls.values())


def _message(value):
    return json.dumps(value).encode()


def _receive(chunks, path):
    """Writes `chunks` to `path`; returns the bytes written and their sha256 (gRPC may end a stream
    that its client dropped as if it had ended: the caller compares them with what was sent)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as file:
        for chunk in chunks:
            file.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _reason(error):
    """An error in one line: `ValueError: NaN loss`."""
    return f"{type(error).__name__}: {next(iter(str(error).strip().splitlines()), '')}"


def add_service(server, units):
    """Serves `units` on a `grpc.server`, beside Keras Tuner's servicer (before the server starts)."""

    def take(request, context):
        return _message({"unit": _as_json(units.take(json.loads(request)["worker"]))})

    def report(request, context):
        asked = json.loads(request)
        return _message({"wanted": units.report(asked["worker"], asked["unit"], asked.get("epoch_seconds"))})

    def deliver(requests, context):
        header = json.loads(next(requests))
        if "error" in header:
            units.fail(header["worker"], header["unit"], header["error"])
            return _message({"kept": False})
        try:
            kept = units.deliver(
                header["worker"],
                header["unit"],
                header["evaluation"],
                header["history"],
                requests,
                header["model_bytes"],
                header["model_sha256"],
            )
        except grpc.RpcError:
            raise
        except Exception as error:  # the chief's own (a full disk): the chief stops with it, the worker hears it
            return _message({"kept": False, "error": _reason(error)})
        return _message({"kept": kept})

    handlers = {
        "Take": grpc.unary_unary_rpc_method_handler(take),
        "Report": grpc.unary_unary_rpc_method_handler(report),
        "Deliver": grpc.stream_unary_rpc_method_handler(deliver),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def _as_json(answer):
    return answer.to_json() if isinstance(answer, Unit) else answer


class UnitsClient:
    """A worker's calls to the chief's `Units`; each waits `timeout` seconds for its answer.

    Args:
        address: the chief's `(host, port)`.
        worker: this worker's id.
        timeout: seconds.
    """

    def __init__(self, address, worker, timeout):
        host, port = address
        self.channel = grpc.insecure_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self.worker, self.timeout = worker, timeout
        self._take = self.channel.unary_unary(f"/{SERVICE}/Take")
        self._report = self.channel.unary_unary(f"/{SERVICE}/Report")
        self._deliver = self.channel.stream_unary(f"/{SERVICE}/Deliver")

    def take(self):
        """The next `Unit`, `"wait"` or `"done"`."""
        answer = json.loads(self._take(_message({"worker": self.worker}), timeout=self.timeout))["unit"]
        return Unit.from_json(answer) if isinstance(answer, dict) else answer

    def report(self, unit, epoch_seconds=None):
        """Renews the lease on `unit`; returns whether its result is still wanted."""
        asked = {"worker": self.worker, "unit": unit.name, "epoch_seconds": epoch_seconds}
        return json.loads(self._report(_message(asked), timeout=self.timeout))["wanted"]

    def deliver(self, unit, evaluation, history, model_path=None):
        """Sends a unit's result, and its model's file where given.

        Returns:
            The chief's answer: `{"kept": bool}`, with `error` where the chief could not keep it.
        """
        size, digest = os.path.getsize(model_path) if model_path else 0, None
        if model_path:
            with open(model_path, "rb") as model:
                digest = hashlib.sha256(model.read()).hexdigest()
        header = {
            "worker": self.worker,
            "unit": unit.name,
            "evaluation": evaluation,
            "history": history,
            "model_bytes": size,
            "model_sha256": digest,
        }

        def messages():
            yield _message(header)
            if model_path:
                with open(model_path, "rb") as model:
                    while chunk := model.read(CHUNK_BYTES):
                        yield chunk

        # The chief's patience, and as long again for every 64 MiB of model on a slow link.
        timeout = self.timeout * (1 + size // 2**26)
        return json.loads(self._deliver(messages(), timeout=timeout))

    def fail(self, unit, reason):
        """Tells the chief that `unit` cannot be trained, and why."""
        self._deliver(
            iter([_message({"worker": self.worker, "unit": unit.name, "error": reason})]), timeout=self.timeout
        )

    def close(self):
        self.channel.close()


class UnitTaken(Exception):
    """Another worker's result of the unit came first: this worker's training of it is of no use."""


class UnitReports(keras.callbacks.Callback):
    """Reports a unit's epochs to the chief (its lease), and keeps them as `history.csv` rows.

    Args:
        client: the `UnitsClient`.
        unit: the `Unit` being trained.
    """

    async_safe = True  # it reads no tensor within an epoch: training need not wait for each step

    def __init__(self, client, unit):
        super().__init__()
        self.client, self.unit = client, unit
        self.history = []  # [epoch, loss, accuracy, seconds] per epoch, as `record_epoch()` takes them
        self.reported = time.perf_counter()

    def _report(self, epoch_seconds=None):
        self.reported = time.perf_counter()
        if not self.client.report(self.unit, epoch_seconds):
            raise UnitTaken(self.unit.name)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.reported > ALIVE_SECONDS:
            self._report()

    def on_epoch_end(self, epoch, logs=None):
        logs, seconds = logs or {}, time.perf_counter() - self.epoch_start
        self.history.append([epoch + 1, float(logs.get("loss", "nan")), float(logs.get("accuracy", "nan")), seconds])
        self._report(seconds)


def train_units(client, retrain, callbacks=None, log=print):
    """Trains the chief's units until it has none left.

    Args:
        client: a `UnitsClient`.
        retrain: called with a `Unit` and Keras callbacks; returns the trained
            model and its test figures (a dict).
        callbacks: called with a unit, returns more Keras callbacks for its
            training (the command line's show its epochs).
        log: where lines go.

    Returns:
        How many units this worker's results were kept of.

    Raises:
        grpc.RpcError: the chief did not answer in time.
    """
    kept = 0
    while (unit := client.take()) != "done":
        if unit == "wait":
            time.sleep(WAIT_SECONDS)
            continue
        log(f"{client.worker}: {unit.name}")
        reports = UnitReports(client, unit)
        try:
            model, evaluation = retrain(unit, [reports, *(callbacks(unit) if callbacks else [])])
        except UnitTaken:
            log(f"{client.worker}: {unit.name}: another worker's result came first; dropped")
            continue
        except grpc.RpcError:
            raise
        except Exception as error:  # what would stop a retraining in one process stops the chief's
            client.fail(unit, _reason(error))
            raise
        with tempfile.TemporaryDirectory(prefix="archsearch-unit-") as scratch:
            path = None
            if unit.keep_model:
                path = os.path.join(scratch, "model.keras")
                with keras_without_tensorflow():
                    model.save(path)
            answer = client.deliver(unit, evaluation, reports.history, path)
        kept += answer["kept"]
        if "error" in answer:
            log(f"{client.worker}: {unit.name}: the chief could not keep its result: {answer['error']}")
    return kept
