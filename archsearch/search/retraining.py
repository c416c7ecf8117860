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
        with self.lock:
            self.on_result = on_result
            for unit in units:
                self.units[unit.name] = unit
                self.pending.append(unit.name)

    def close(self):
        """No more units will come (the chief is closing): a worker that asks is done."""
        with self.lock:
            self.closed = True

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
            if holder != worker and now - heard > self.lease():
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

    def deliver(self, worker, name, evaluation, history, chunks):
        """A worker's result of a unit. Returns whether it was kept (not if another's came first)."""
        with self.lock:
            self.calls[worker] = time.monotonic()
            if name not in self.units or name in self.done or name in self.receiving:
                self.log(f"{name}: a second result, from {worker}, is ignored (its lease had run out)")
                return False
            self.receiving.add(name)
        try:
            with tempfile.TemporaryDirectory(prefix="archsearch-result-") as scratch:
                model = os.path.join(scratch, "model.keras") if self.units[name].keep_model else None
                if model:
                    with open(model, "wb") as file:
                        for chunk in chunks:
                            file.write(chunk)
                with self.writing:  # one result at a time into the run's files (history.csv...)
                    self.on_result(self.units[name], worker, evaluation, history, model)
        except BaseException as error:
            with self.lock:
                self.receiving.discard(name)
                if not isinstance(error, grpc.RpcError):  # not a worker lost while sending
                    self.failure = self.failure or error
            raise
        with self.lock:
            self.receiving.discard(name)
            self.done[name] = worker
            self.held = {holder: held for holder, held in self.held.items() if held[0] != name}
            if name in self.pending:
                self.pending.remove(name)
        return True

    def fail(self, worker, name, reason):
        """A worker could not train a unit: the retraining fails, as it would in one process."""
        with self.lock:
            self.failure = self.failure or ArchsearchError(f"{name} failed on {worker}: {reason}")

    def silent_for(self, now, ignore=()):
        """Seconds since the last call of a worker not in `ignore`; `None` if none ever called.

        0 while the lease of a unit one of them holds runs.
        """
        with self.lock:
            calls = {worker: when for worker, when in self.calls.items() if worker not in ignore}
            if not calls:
                return None
            if any(w in calls and now - heard <= self.lease() for w, (_, heard) in self.held.items()):
                return 0.0
            return now - max(calls.values())


def _message(value):
    return json.dumps(value).encode()


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
        kept = units.deliver(header["worker"], header["unit"], header["evaluation"], header["history"], requests)
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
        """Sends a unit's result, and its model's file where given; returns whether the chief kept it."""
        header = {"worker": self.worker, "unit": unit.name, "evaluation": evaluation, "history": history}

        def messages():
            yield _message(header)
            if model_path:
                with open(model_path, "rb") as model:
                    while chunk := model.read(CHUNK_BYTES):
                        yield chunk

        return json.loads(self._deliver(messages(), timeout=self.timeout))["kept"]

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
            client.fail(unit, f"{type(error).__name__}: {next(iter(str(error).strip().splitlines()), '')}")
            raise
        with tempfile.TemporaryDirectory(prefix="archsearch-unit-") as scratch:
            path = None
            if unit.keep_model:
                path = os.path.join(scratch, "model.keras")
                with keras_without_tensorflow():
                    model.save(path)
            kept += client.deliver(unit, evaluation, reports.history, path)
    return kept
