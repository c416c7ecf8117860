"""Worker processes on this machine: one per GPU, restarted when they die, stopped with their chief.

`Workers(count, command)` runs `count` processes of `COMMAND --chief ADDRESS
--id ID`, the command being `archsearch worker SPACE` with its options. Each
keeps its id for life: a worker restarted after a crash gets its unfinished
trial back from the chief. With GPUs (`CUDA_VISIBLE_DEVICES`, else
`nvidia-smi`), worker i sees only GPU i (round robin when there are more
workers than GPUs). A worker that dies of a signal or a crash is restarted,
at most `MAX_RESTARTS` times; one that exits with archsearch's error status
(bad data, another space than the chief's) is not, as it would fail again.
A worker also stops by itself as soon as the process that started it is
gone (`exit_with_supervisor()`)."""

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

MAX_RESTARTS = 3  # per worker
LOGS = "workers"  # in the run directory the workers share: one <id>.log each
ERROR_STATUS = 2  # archsearch's exit status for an error it explains
SUPERVISOR_PID = "ARCHSEARCH_SUPERVISOR_PID"
STOP_SECONDS = 10  # a worker told to stop gets this long before it is killed
# JAX takes 75% of a GPU's memory at its first use, TensorFlow all of it: where
# processes share a GPU (the chief's and its first worker's, say), each takes what it needs.
SHARED_GPU = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def gpus():
    """The GPUs a worker can be pinned to: `CUDA_VISIBLE_DEVICES` if set, else those `nvidia-smi` lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip() not in ("", "-1")]
    if not shutil.which("nvidia-smi"):
        return []
    listed = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=60
    )
    return listed.stdout.split() if listed.returncode == 0 else []


class Workers:
    """Worker processes of one search on this machine.

    Args:
        count: how many (0: none; the chief then waits for workers started elsewhere).
        command: the worker's command line before `--chief`, e.g.
            `[sys.executable, "-m", "archsearch", "worker", "digits"]`.
        ids: the workers' ids (default `worker0`, `worker1`, ...).
        log: where lines about the workers go.

    Example:

    ```python
    workers = Workers(2, [sys.executable, "-m", "archsearch", "worker", "digits"])
    workers.start("127.0.0.1:8765", run_dir="results/digits/<run id>")
    ```
    """

    def __init__(self, count, command, ids=None, log=print):
        self.count, self.command, self.log = count, list(command), log
        self.ids = ids or [f"worker{i}" for i in range(count)]
        self.processes, self.restarts, self.exits = {}, dict.fromkeys(self.ids, 0), {}
        self.address = self.run_dir = self.logs = None
        self.gpus = gpus() if count else []

    def start(self, address, run_dir=None):
        """Starts every worker on the chief at `address`.

        Args:
            address: `HOST:PORT`.
            run_dir: the chief's run directory, when the workers share its disk:
                they keep Keras Tuner's files there, and their output goes
                to `<run_dir>/workers/<id>.log` (else to this terminal).
        """
        self.address, self.run_dir = address, run_dir
        if run_dir is not None:
            self.logs = Path(run_dir) / LOGS
        if self.gpus and self.count > len(self.gpus):
            self.log(f"warning: {self.count} workers share {len(self.gpus)} GPUs")
        for worker_id in self.ids:
            self._start(worker_id)

    def _start(self, worker_id):
        index = self.ids.index(worker_id)
        env = {**os.environ, SUPERVISOR_PID: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        where = "the CPU"
        if self.gpus:
            gpu = self.gpus[index % len(self.gpus)]
            env["CUDA_VISIBLE_DEVICES"], where = gpu, f"GPU {gpu}"
            if self.count > len(self.gpus):
                env.update(SHARED_GPU)
        output = None
        if self.logs:
            self.logs.mkdir(parents=True, exist_ok=True)
            output = open(self.logs / f"{worker_id}.log", "a")
        try:
            shared = ["--results", str(self.run_dir)] if self.run_dir else []
            process = subprocess.Popen(
                [*self.command, *shared, "--chief", self.address, "--id", worker_id],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output and subprocess.STDOUT,
            )
        finally:
            if output:
                output.close()
        self.processes[worker_id] = process
        log = f", output in {self.logs / f'{worker_id}.log'}" if self.logs else ""
        self.log(f"{worker_id} started (pid {process.pid}, on {where}{log})")

    def poll(self, restart=True):
        """Restarts the workers that died, while they may be (and `restart`); notes those that ended."""
        for worker_id, process in list(self.processes.items()):
            status = process.poll()
            if status is None:
                continue
            del self.processes[worker_id]
            self.exits[worker_id] = status
            if status == 0:
                continue
            how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
            if not restart:
                self.log(f"{worker_id} {how}")
            elif status == ERROR_STATUS:
                self.log(f"{worker_id} {how}: an error it reported (see its output); not restarted")
            elif self.restarts[worker_id] >= MAX_RESTARTS:
                self.log(f"{worker_id} {how}; not restarted: it was restarted {MAX_RESTARTS} times already")
            else:
                self.restarts[worker_id] += 1
                self.log(f"{worker_id} {how}; restarting it ({self.restarts[worker_id]} of {MAX_RESTARTS})")
                self._start(worker_id)

    def wait(self):
        """Returns once every worker has ended, restarting those that die meanwhile."""
        while self.processes:
            time.sleep(1)
            self.poll()

    def alive(self):
        """Whether any worker is running."""
        return bool(self.processes)

    def summary(self):
        """How the workers ended, e.g. `worker0 was killed by SIGKILL after 3 restarts, ...`."""
        parts = []
        for worker_id, status in self.exits.items():
            how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
            parts.append(f"{worker_id} {how} after {self.restarts[worker_id]} restarts")
        return ", ".join(parts)

    def stop(self):
        """Stops the workers still running: SIGTERM, then SIGKILL after `STOP_SECONDS`."""
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = {}


def exit_with_supervisor(log):
    """In a worker that `Workers` started: exits as soon as that process is gone.

    Without it, a worker whose chief was killed would train on until its
    next call to the chief timed out; with `--resume`, a new worker of the
    same id could then be given the same trial.
    """
    supervisor = os.environ.get(SUPERVISOR_PID)
    if not supervisor:
        return

    def watch():
        while os.getppid() == int(supervisor):
            time.sleep(0.5)
        log(f"archsearch: error: the process that started this worker (pid {supervisor}) is gone; stopping")
        time.sleep(0.2)  # lets the line through the standard error filter
        os._exit(ERROR_STATUS)

    threading.Thread(target=watch, name="archsearch-supervisor-watch", daemon=True).start()
