"""A search on several workers, with Keras Tuner's chief/worker engine.

The chief (`Chief`) serves the run's oracle over gRPC with Keras Tuner's own
servicer. A worker (`work()`) is a Keras Tuner tuner that Keras Tuner points
at the chief through `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT`: it asks for trials, trains them and reports each
epoch and result, and the chief writes the run's files. What archsearch
changes in that engine (the oracle's part is in `archsearch.search.oracle`
and `archsearch.search.leases`):

- The chief listens on the address it is given, loopback unless told
  otherwise, with gRPC's SO_REUSEPORT off: Keras Tuner's leaves it on, and a
  second chief on the same port would share it silently instead of failing.
- The chief returns as soon as the last trial has ended (Keras Tuner's
  checks every 20 s), and stops with a message when every worker is gone
  (Keras Tuner's waits for ever).
- A worker waits `chief_timeout()` seconds for each answer (Keras Tuner's
  waits an hour per call), then stops with a message; it never overwrites
  (Keras Tuner's worker with `overwrite=True` deletes the project directory,
  the chief's state included when they share it), and it checks that it has
  the chief's space and data before training anything.
- After the search, the same server hands out the retraining, one (trial,
  seed) at a time (`archsearch.search.retraining`), and the workers train
  it; the chief stops serving when its caller closes it (`Chief.close()`).

Keras Tuner's gRPC channel has no authentication: whoever reaches the port
can take trials and hand in results. Listen on loopback, on a private
network, or reach the chief through an SSH tunnel.
"""

import dataclasses
import errno
import ipaddress
import os
import socket
import tempfile
import time
from concurrent import futures

import grpc

from archsearch.compat.keras_tuner import serve_oracle, set_client_timeout
from archsearch.data import load_data
from archsearch.errors import ArchsearchError
from archsearch.search.leases import FINGERPRINT, chief_timeout, fingerprint, lease_floor
from archsearch.search.retraining import Units, UnitsClient, add_service, train_units
from archsearch.search.supervisor import Workers
from archsearch.search.tuners import ChiefLost, SearchStopped, make_tuner

LOOPBACK = "127.0.0.1"
POLL_SECONDS = 0.25  # how often the chief looks at its workers
STOP_GRACE_SECONDS = 3.0  # after the last trial or unit, for idle workers to hear that it is over
SERVER_THREADS = 8  # a worker sending its model, or lost while it does, holds one


def parse_address(text):
    """Splits `HOST:PORT` (`[::1]:8765` for IPv6) into `(host, port)`."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ArchsearchError(f"--chief {text}: expected HOST:PORT, e.g. {LOOPBACK}:8765")
    return host, int(port)


def is_loopback(host):
    """Whether `host` is this machine's loopback interface (only this machine can reach it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Chief:
    """The chief's gRPC server: it listens from the start, serves a search with `serve()`, then its retraining.

    Listening comes first, before a run directory exists, so that an address
    another chief holds fails at once, with nothing to clean up. After
    `serve()`, the workers wait for the retraining's units (`retrain()`);
    `close()` tells them there are no more, and stops them and the server.

    Args:
        host: the interface to listen on (`127.0.0.1`: only this machine).
        port: the port; 0 takes a free one (`self.port` says which).

    Raises:
        ArchsearchError: the address cannot be listened on, saying why.

    Example:

    ```python
    chief = Chief("127.0.0.1", 8765)
    try:
        chief.serve(tuner, workers, fingerprint(space, dataset), run_dir)
        chief.retrain(units, on_result)
    finally:
        chief.close()
    ```
    """

    def __init__(self, host, port):
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=SERVER_THREADS), options=[("grpc.so_reuseport", 0)]
        )
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(target)
        except RuntimeError:
            raise ArchsearchError(f"cannot listen on {target}: {_bind_error(host, port)}") from None
        self.host = host
        self.units = Units(lease_floor())
        add_service(self.server, self.units)
        self.workers = self.oracle = None
        self.stopped = False

    def __str__(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def serve(self, tuner, workers, fingerprint_value, run_dir, log=print):
        """Serves a tuner's oracle until the search is over; the workers then wait for `retrain()`.

        Args:
            tuner: from `archsearch.search.tuners.make_tuner()` with a `lease_floor`.
            workers: the `archsearch.search.supervisor.Workers` to start on this
                machine once the chief serves, or `None`.
            fingerprint_value: `fingerprint()` of the chief's space and data.
            run_dir: the run directory, which this machine's workers share.
            log: where lines go.

        Raises:
            SearchStopped: every worker is gone before the search is over.
        """
        oracle = tuner.oracle
        oracle.log, oracle.verbose, oracle.fingerprint = log, 0, fingerprint_value
        self.workers = workers = workers or Workers(0, [])
        self.oracle, self.units.log = oracle, log
        tuner.save()
        servicer = serve_oracle(self.server, oracle)
        self.server.start()
        try:
            log(f"chief: serving the search on {self}")
            if not is_loopback(self.host):
                log(
                    f"warning: {self.host} is not loopback: Keras Tuner's gRPC has no authentication, so anyone who "
                    "reaches this port can take trials and send results; use a private network or an SSH tunnel"
                )
            everywhere = self.host in ("0.0.0.0", "::")  # every interface: a worker names one of them
            if workers.count == 0:
                address = f"HOST:{self.port}` (HOST: an address of this machine)" if everywhere else f"{self}`"
                log(f"waiting for workers: on each machine, run `archsearch worker SPACE --chief {address}")
            workers.start(f"{LOOPBACK}:{self.port}" if everywhere else str(self), run_dir)
            _wait(oracle, servicer, workers)
        except BaseException:
            self.close()
            raise

    def retrain(self, units, on_result):
        """Hands `units` (`archsearch.search.retraining.Unit`s) to the workers; returns once each has its result.

        Args:
            units: the units to train, in order.
            on_result: called with each unit's result (see `archsearch.search.retraining.Units`).

        Raises:
            SearchStopped: every worker is gone before every unit has its result.
            Exception: what `on_result` raised, or a worker's failure to train a unit.
        """
        self.units.add(units, on_result)
        self.units.know(dict(self.oracle.calls))  # the search's workers, though they have not asked for a unit yet
        workers = self.workers
        while True:
            if self.units.failure:
                raise self.units.failure
            if self.units.finished():
                return
            time.sleep(POLL_SECONDS)
            workers.poll()
            if workers.alive():
                continue
            silent = self.units.silent_for(time.monotonic(), ignore=workers.ids)
            if (silent is None and workers.count) or (silent or 0) > self.units.lease_floor:
                raise SearchStopped(_gone(workers, silent, "retraining"))

    def dismiss(self):
        """Tells the workers that nothing is left: those that ask end (the server still answers until `close()`)."""
        self.units.close()

    def close(self):
        """Dismisses the workers, then stops them and the server; once only.

        The workers have `STOP_GRACE_SECONDS` to hear it, those started here to end by themselves.
        """
        if self.stopped:
            return
        self.dismiss()
        workers = self.workers or Workers(0, [])
        try:
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while (workers.alive() or not self.units.all_told()) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                workers.poll(restart=False)
        finally:
            workers.stop()
            self.server.stop(grace=None)
            self.stopped = True


def _bind_error(host, port):
    """Why the operating system refuses `host:port`, in words."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "the port is in use (by another archsearch chief, or another program); choose another port"
            return f"{error.strerror} (is {host} an address of this machine?)"
    return "gRPC could not bind it"


def _wait(oracle, servicer, workers):
    """Returns once the search is over; raises `SearchStopped` once every worker is gone."""
    over_since = None
    while True:
        time.sleep(POLL_SECONDS)
        workers.poll()
        now = time.monotonic()
        if servicer.stop_triggered and not oracle.ongoing_trials:
            over_since = over_since or now
            if not oracle.tuner_ids or now - over_since > STOP_GRACE_SECONDS:
                return
        if workers.alive():
            continue
        silent = oracle.silent_for(now, ignore=workers.ids)  # workers started elsewhere
        if (silent is None and workers.count) or (silent or 0) > oracle.lease_floor:
            raise SearchStopped(_gone(workers, silent, "search"))


def _gone(workers, silent, step):
    """Why the chief stops: every worker is gone from its `step`."""
    gone = [workers.summary()] if workers.count else []
    if silent is not None:
        gone.append(f"no {'other ' if workers.count else ''}worker has called for {silent:.0f} s")
    return (
        f"every worker is gone ({'; '.join(gone)}), and the {step} cannot go on; "
        "continue it with `archsearch run SPACE --resume` and new workers"
    )


def work(
    space,
    address,
    *,
    worker_id,
    retrain,
    data_dir=None,
    tuner_dir=None,
    trial_callbacks=None,
    unit_callbacks=None,
    base_for=None,
    log=print,
):
    """Trains the chief's trials until it has none left, then its retraining's units.

    Args:
        space: the `Space`, with the same trial-relevant options as the
            chief's (`fingerprint()` is checked).
        address: the chief's `(host, port)`.
        worker_id: this worker's Keras Tuner id; a worker restarted with the
            same id gets its unfinished trial (or unit) back.
        retrain: `archsearch.pipeline.retrain.retrain()`, which trains a unit.
        data_dir: a local copy of the data, as for `archsearch run`.
        tuner_dir: the folder of the chief's Keras Tuner state (`RUN/tuner`),
            when this worker shares its disk (Hyperband continues trials from
            checkpoints kept there); else a temporary directory holds what
            Keras Tuner writes.
        trial_callbacks: called with a trial's id, returns Keras callbacks for
            that trial's training alone (the command line's show its epochs).
        unit_callbacks: the same for a retraining's `Unit`.
        base_for: for a space with `transfer`, called with the loaded
            dataset, returns its source's base
            (`archsearch.pipeline.transfer.resolve_transfer()`).
        log: where lines go.

    Raises:
        ArchsearchError: the chief has another space or data, or stopped
            answering for `chief_timeout()` seconds.
    """
    if "chief" in worker_id:  # Keras Tuner takes any tuner whose id says "chief" for the chief
        raise ArchsearchError(f"--id {worker_id}: a worker's id must not contain 'chief'")
    if space.search.tuner == "hyperband" and tuner_dir is None:
        raise ArchsearchError(
            "Hyperband continues trials from checkpoints kept in the chief's run directory: give this worker that "
            "directory with --results RUN (on the chief's machine, or a shared disk), "
            "or use the random or bayesian tuner"
        )
    dataset = load_data(space.data, data_dir=data_dir)
    host, port = address
    os.environ.update(KERASTUNER_TUNER_ID=worker_id, KERASTUNER_ORACLE_IP=host, KERASTUNER_ORACLE_PORT=str(port))
    timeout = chief_timeout()
    set_client_timeout(timeout)  # Keras Tuner's client waits this long for every answer (its own: an hour)
    with tempfile.TemporaryDirectory(prefix="archsearch-worker-") as scratch:
        base = base_for(dataset) if base_for else None
        tuner = make_tuner(
            space, dataset, tuner_dir or scratch, overwrite=False, trial_callbacks=trial_callbacks, base=base
        )
        try:
            chief_value = tuner.oracle.get_space().values.get(FINGERPRINT)
            if chief_value != fingerprint(space, dataset, base):
                raise ArchsearchError(
                    f"the chief at {host}:{port} searches another space, data or precision: start this worker with "
                    "the chief's SPACE file and its --tuner, --epochs, --seed, --data-dir and --mixed-precision "
                    "(a data folder's fingerprint covers its files' names, sizes and times: copy it with `rsync -a`, "
                    "or use an archive)"
                )
            log(f"{worker_id}: training trials for the chief at {host}:{port}")
            tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
            log(f"{worker_id}: the chief has no trials left; retraining what it hands out")

            def train(unit, callbacks):
                model, evaluation = retrain(
                    unit.point,
                    dataset,
                    unit.seed,
                    unit.point["epochs"],
                    callbacks=callbacks,
                    base=base if unit.transfer else None,
                )
                return model, dataclasses.asdict(evaluation)

            client = UnitsClient(address, worker_id, timeout)
            try:
                kept = train_units(client, train, unit_callbacks, log)
            finally:
                client.close()
        except (grpc.RpcError, ChiefLost) as error:
            code = error.code().name if isinstance(error, grpc.RpcError) else str(error)
            why = f"no answer within {timeout:.0f} s" if code == "DEADLINE_EXCEEDED" else code
            raise ArchsearchError(f"lost the chief at {host}:{port} ({why}); this worker stops") from None
    log(f"{worker_id}: the chief has nothing left; done ({kept} retraining{'s' * (kept != 1)} kept)")
