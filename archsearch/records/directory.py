"""Run directories: one per `archsearch run`, under `results/<space name>/<run id>/`.

A run never reads, changes or deletes another. The run id is the UTC time the
run started, `YYYY-MM-DD_HH-MM-SS` (as Ray Tune and TensorBoard name their log
directories), so ids sort in time order; two runs started in the same second
get `_2`, `_3`, ... A directory is a run when it holds `run.json`; its
`status` there says how far it got (`complete` when finished). A run that
stops before it writes `run.json` removes its directory (`RunDir.discard()`);
one killed before it could (SIGKILL) leaves a folder holding only `.lock`,
listed with the status `no run.json`, which `--resume` starts afresh.

`RunDir` is a run's directory: every path in it is named here and nowhere
else, with `run.json` and its status, the tables it holds, and its lock. Two
folders are named by what writes into them: `workers/`, where the workers that
`archsearch run --workers N` starts write their output
(`archsearch.search.supervisor`, which is given the run directory to pass on to
them), and the files of an export such as `best/` (`archsearch.output.export`).

This module reads only JSON and CSV files, so listing runs stays fast.
"""

import contextlib
import datetime
import json
import os
import shutil
from pathlib import Path

import pandas as pd

from archsearch.errors import ArchsearchError
from archsearch.files import write_csv, write_json
from archsearch.records.tables import typed

RESULTS = Path("results")  # where a space's runs go by default: results/<space name>/<run id>
RUN = "run.json"
TRIALS = "trials.csv"
LEADERBOARD = "leaderboard.csv"
HISTORY = "history.csv"
REPORT = "report.html"
RETRAIN = "retrain"  # one <stem>.json per retraining (a reference's too), and a trial's seed 0's <stem>.keras
BEST = "best"  # the exported winner
TUNER = "tuner"  # Keras Tuner's state (its project name)
TENSORBOARD = "tensorboard"  # --tensorboard's logs
LOCK = ".lock"
COMPLETE = "complete"
UNRECORDED = f"no {RUN}"  # the status of a run's folder whose run was killed before it wrote run.json


def _make_folders(path):
    """Creates `path` and its missing parents; returns those it created, deepest first."""
    path = Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return missing


class RunDir:
    """A run's directory: its paths, its `run.json` and status, its tables and its lock.

    It stands wherever a path does (`os.fspath(run_dir)`, `str(run_dir)` and
    `run_dir.path` give the directory) and equals a `Path` to the same place.

    Args:
        path: the directory, e.g. `results/digits/2026-11-25_09-30-00`.

    Example:

    >>> run_dir = RunDir("results/digits/2026-01-02_03-04-05")
    >>> run_dir.retrained_model("7", 0).as_posix()
    'results/digits/2026-01-02_03-04-05/retrain/trial_7_seed0.keras'
    >>> run_dir.reference_result("resnet20", 1).name
    'reference_resnet20_seed1.json'
    >>> run_dir == Path("results/digits/2026-01-02_03-04-05")
    True
    """

    def __init__(self, path):
        self.path = Path(path)
        self.created = []  # the folders this process created for the run, deepest first: discard() removes them

    def __fspath__(self):
        return os.fspath(self.path)

    def __str__(self):
        return str(self.path)

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other):
        if isinstance(other, (RunDir, os.PathLike)):
            return self.path == Path(other)
        return NotImplemented

    def __hash__(self):
        return hash(self.path)

    @property
    def name(self):
        """The run id, e.g. `2026-11-25_09-30-00`."""
        return self.path.name

    # The files and folders of a run.

    @property
    def run_json(self):
        return self.path / RUN

    @property
    def trials_csv(self):
        return self.path / TRIALS

    @property
    def leaderboard_csv(self):
        return self.path / LEADERBOARD

    @property
    def history_csv(self):
        return self.path / HISTORY

    @property
    def report_html(self):
        return self.path / REPORT

    @property
    def retrain(self):
        return self.path / RETRAIN

    @property
    def best(self):
        return self.path / BEST

    @property
    def tuner(self):
        return self.path / TUNER

    @property
    def tensorboard(self):
        return self.path / TENSORBOARD

    @property
    def lock_file(self):
        return self.path / LOCK

    def retrain_stem(self, trial_id, seed):
        """Where one retraining of a trial is kept, less the suffix: `retrain/trial_<id>_seed<n>`."""
        return self.retrain / f"trial_{trial_id}_seed{seed}"

    def retrained_model(self, trial_id, seed=0):
        """The retrained model (`.keras`; only seed 0's is kept)."""
        return self.retrain_stem(trial_id, seed).with_suffix(".keras")

    def retrained_result(self, trial_id, seed):
        """The retraining's test figures (`.json`, an `Evaluation`)."""
        return self.retrain_stem(trial_id, seed).with_suffix(".json")

    def reference_result(self, name, seed):
        """A reference's test figures for one seed: `retrain/reference_<preset>_seed<n>.json` (no model is kept).

        The name on disk has no `:`, which the leaderboard's `reference:<preset>` has and Windows refuses.
        """
        return self.retrain / f"reference_{name}_seed{seed}.json"

    # run.json and the tables.

    def is_run(self):
        """Whether this is a run directory (it holds `run.json`)."""
        return self.run_json.is_file()

    def status(self):
        """The `status` in `run.json` (`searching`, ..., `complete`), `no run.json`, or `unknown` if unreadable."""
        if not self.run_json.exists():
            return UNRECORDED
        try:
            return self.read_run().get("status", "unknown")
        except (OSError, ValueError):
            return "unknown"

    def read_run(self):
        """Reads `run.json`."""
        return json.loads(self.run_json.read_text())

    def data(self):
        """The run's data declaration (`archsearch.data.Data`), as its `run.json` records it."""
        from archsearch.data import Data  # here: listing runs needs no data package

        return Data(**self.read_run()["space"]["data"])

    def write_run(self, metadata):
        """Writes `run.json`, atomically."""
        write_json(metadata, self.run_json)

    def read_trials(self):
        """Reads `trials.csv`, trial ids as text."""
        return pd.read_csv(self.trials_csv, dtype={"trial_id": str})

    def write_trials(self, trials):
        """Writes `trials.csv` (`archsearch.search.trials.trials_frame()`), atomically, a dtype per column.

        The columns are cast as `archsearch.records.tables.typed()` says, so
        that a column reads alike in trials.csv and leaderboard.csv.
        """
        write_csv(typed(trials), self.trials_csv)

    def read_leaderboard(self):
        """Reads `leaderboard.csv` in the dtypes it was written with, blanks as missing values.

        Raises:
            ArchsearchError: if the directory holds no finished leaderboard.
        """
        if not self.leaderboard_csv.is_file():
            raise ArchsearchError(
                f"{self.leaderboard_csv}: no leaderboard here; is {self} the directory of a finished run?"
            )
        # As written (`write_leaderboard()`): convert_dtypes() alone would make a float column of whole
        # values (growth 2.0, a recall of 1.0) an integer one.
        return typed(pd.read_csv(self.leaderboard_csv, dtype={"trial_id": str}).convert_dtypes())

    def write_leaderboard(self, leaderboard):
        """Writes `leaderboard.csv`, atomically, a dtype per column (as `write_trials()` does)."""
        write_csv(typed(leaderboard), self.leaderboard_csv)

    # The lock, and starting over.

    @contextlib.contextmanager
    def locked(self):
        """Holds the run's lock (`.lock`) for the block, creating the directory if needed.

        Raises:
            ArchsearchError: at once, if another process holds it.
        """
        import filelock  # here: commands that only read runs take no lock

        self.created += _make_folders(self.path)
        lock = filelock.FileLock(str(self.lock_file))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise ArchsearchError(f"{self} is in use by another archsearch run (lock {self.lock_file})") from None
        try:  # not `with lock:`, which would take it a second time and leave it held once at the end
            yield self
        finally:
            lock.release()

    def discard(self):
        """Removes the directory of a run that recorded nothing (no `run.json`), with the lock held.

        Only what the run itself made goes: its lock, then the folders this
        process created for it, or the folder of a killed run that held only
        its lock (`created`), those left empty. What else a folder holds stays.
        """
        if self.is_run():
            return
        self.lock_file.unlink(missing_ok=True)  # on Unix a held lock's file may go: the lock stays held until release
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # not empty (another run's folder, a file the user put there): kept
                break

    def clear(self):
        """Deletes everything in the directory but its lock (to start the run over, with the lock held)."""
        for entry in self.path.iterdir():
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def choose_run(space_name, results=None, *, resume=False, overwrite=False):
    """The run directory a command means; creates a new one when starting afresh.

    Args:
        space_name: the space's name: its runs go to `results/<space name>/`.
        results: a run directory to use exactly; refused if it already holds
            a run, unless `resume` or `overwrite`.
        resume: `True` continues `results`, or else the most recent
            unfinished run of the space; a path continues that run. A run
            that recorded nothing yet (no `run.json`) is started afresh in
            its directory, so that a run killed in its first seconds resumes too.
        overwrite: the run named by `results` is to start over.

    Returns:
        A `RunDir`.

    Raises:
        ArchsearchError: if the combination names no run, or one that may not be used.
    """
    if resume not in (False, None, True):
        if not Path(resume).is_dir():  # --resume RUN names a run that exists; --results DIR may not yet
            raise ArchsearchError(f"{resume}: no run to resume here (no {RUN})")
        results = resume
    if results is not None:
        run_dir = RunDir(results)
        if resume and not run_dir.is_run() and run_dir.path.is_dir():
            others = [entry.name for entry in run_dir.path.iterdir() if entry.name != LOCK]
            if others:  # not what a killed run leaves (its lock alone): a space's folder, say
                raise ArchsearchError(
                    f"{run_dir}: no run to resume here (no {RUN}, and it holds {', '.join(sorted(others)[:3])}); "
                    "name a run's directory, e.g. one that `archsearch runs` lists"
                )
        if run_dir.is_run() and not (resume or overwrite):
            raise ArchsearchError(
                f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
            )
        return _adopt_killed(run_dir)
    root = RESULTS / space_name
    if overwrite:
        raise ArchsearchError("--overwrite starts one named run over: name it with --results DIR")
    return _adopt_killed(latest_unfinished(root)) if resume else new_run_dir(root)


def _adopt_killed(run_dir):
    """Counts a folder that holds only a lock (what a run killed before `run.json` leaves) as the run's own.

    So that `discard()` removes it when this run too stops before recording
    anything; a folder holding anything else is never removed.
    """
    if run_dir.path.is_dir() and [entry.name for entry in run_dir.path.iterdir()] == [LOCK]:
        run_dir.created = [run_dir.path]
    return run_dir


def new_run_dir(space_root, now=None):
    """Creates and returns a fresh run directory under `space_root`.

    Args:
        space_root: the space's folder, e.g. `results/cifar10`.
        now: the start time (default: now, UTC).

    Returns:
        The new directory's `RunDir`, e.g. `results/cifar10/2026-11-25_09-30-00`.

    Example:

    >>> import tempfile, datetime
    >>> root = Path(tempfile.mkdtemp())
    >>> new_run_dir(root, datetime.datetime(2026, 1, 2, 3, 4, 5)).name
    '2026-01-02_03-04-05'
    >>> new_run_dir(root, datetime.datetime(2026, 1, 2, 3, 4, 5)).name
    '2026-01-02_03-04-05_2'
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = now.strftime("%Y-%m-%d_%H-%M-%S")
    parents = _make_folders(space_root)
    for count in range(1, 1000):
        path = Path(space_root) / (stem if count == 1 else f"{stem}_{count}")
        try:
            path.mkdir()  # fails if taken: two runs never share a directory
        except FileExistsError:
            continue
        run_dir = RunDir(path)
        run_dir.created = [path, *parents]
        return run_dir
    raise ArchsearchError(f"{space_root}: cannot create a new run directory for {stem}")


def is_run(path):
    """Whether `path` is a run directory (it holds `run.json`)."""
    return RunDir(path).is_run()


def run_status(path):
    """The `status` in a run's `run.json` (`searching`, ..., `complete`), or `unknown` if unreadable."""
    return RunDir(path).status()


def list_runs(space_root):
    """Returns the run directories (`RunDir`s) under `space_root`, oldest first (by run id).

    A folder holding a run's lock but no `run.json` is one too, with the status
    `no run.json`: its run was killed before it recorded anything.
    """
    root = Path(space_root)
    if not root.is_dir():
        return []
    runs = (RunDir(p) for p in root.iterdir() if p.is_dir() and (is_run(p) or (p / LOCK).exists()))
    return sorted(runs, key=lambda run_dir: run_dir.name)


def resolve_run(path, log=None):
    """Returns the run that `path` names: itself if it is a run, else its most recent complete run.

    Args:
        path: a run directory, or a space's folder such as `results/digits`.
        log: called with a line saying which run was chosen, when `path`
            is a space's folder.

    Returns:
        A `RunDir`.

    Raises:
        ArchsearchError: if `path` is neither a run nor holds a complete one.
    """
    if is_run(path):
        return RunDir(path)
    path = Path(path)
    runs = list_runs(path)
    complete = [run_dir for run_dir in runs if run_dir.status() == COMPLETE]
    if not complete:
        found = f"; its runs: {', '.join(f'{r.name} ({r.status()})' for r in runs)}" if runs else ""
        raise ArchsearchError(f"{path}: no complete run here{found}")
    if log:
        log(f"using the most recent complete run, {complete[-1]}")
    return complete[-1]


def latest_unfinished(space_root):
    """Returns the most recent run (`RunDir`) under `space_root` that is not complete (or recorded nothing yet).

    Raises:
        ArchsearchError: if there is none.
    """
    unfinished = [run_dir for run_dir in list_runs(space_root) if run_dir.status() != COMPLETE]
    if not unfinished:
        raise ArchsearchError(f"{space_root}: no unfinished run to resume (start a new one without --resume)")
    return unfinished[-1]


def runs_frame(space_root):
    """One row per run of a space: id, status, best test accuracy, trials, wall time.

    Args:
        space_root: the space's folder, e.g. `results/digits`.

    Returns:
        A DataFrame with columns `run`, `status`, `test_accuracy`,
        `test_accuracy_std` (rank 1's, for complete runs), `trials`
        (trials that completed) and `wall_seconds`.
    """
    rows = []
    for run_dir in list_runs(space_root):
        try:
            meta = run_dir.read_run()
        except (OSError, ValueError):  # no run.json yet, or one that cannot be read: its status says which
            meta = {}
        row = {
            "run": run_dir.name,
            "status": run_dir.status(),
            "test_accuracy": None,
            "test_accuracy_std": None,
            "trials": None,
            "wall_seconds": wall_seconds(meta),
        }
        if run_dir.trials_csv.is_file():
            row["trials"] = int((run_dir.read_trials()["status"] == "completed").sum())
        if run_dir.leaderboard_csv.is_file():
            board = run_dir.read_leaderboard()
            first = board[board["rank"] == 1]
            if not first.empty:
                row["test_accuracy"] = first.iloc[0]["test_accuracy"]
                row["test_accuracy_std"] = first.iloc[0]["test_accuracy_std"]
        rows.append(row)
    columns = ["run", "status", "test_accuracy", "test_accuracy_std", "trials", "wall_seconds"]
    return pd.DataFrame(rows, columns=columns).convert_dtypes()


def wall_seconds(meta):
    """A run's wall time from its `run.json`: `wall_seconds`, or for older runs search plus retraining."""
    if meta.get("wall_seconds") is not None:
        return meta["wall_seconds"]
    parts = [meta.get("search_seconds"), meta.get("retrain_seconds")]
    return sum(parts) if all(p is not None for p in parts) else None


def read_leaderboard(run_dir):
    """Reads a run's `leaderboard.csv` (`RunDir.read_leaderboard()`); `run_dir` may be a path."""
    return RunDir(run_dir).read_leaderboard()


def read_run(run_dir):
    """Reads a run's `run.json` (`RunDir.read_run()`); `run_dir` may be a path."""
    return RunDir(run_dir).read_run()
