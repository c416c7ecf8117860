"""Run directories: one per `archsearch run`, under `results/<space name>/<run id>/`.

A run never reads, changes or deletes another. The run id is the UTC time the
run started, `YYYY-MM-DD_HH-MM-SS` (as Ray Tune and TensorBoard name their log
directories), so ids sort in time order; two runs started in the same second
get `_2`, `_3`, ... A directory is a run when it holds `run.json`; its
`status` there says how far it got (`complete` when finished).

This module reads only JSON and CSV files, so listing runs stays fast.
"""

import datetime
import json
from pathlib import Path

import pandas as pd

from archsearch.errors import ArchsearchError

RUN = "run.json"
TRIALS = "trials.csv"
LEADERBOARD = "leaderboard.csv"
COMPLETE = "complete"


def new_run_dir(space_root, now=None):
    """Creates and returns a fresh run directory under `space_root`.

    Args:
        space_root: the space's folder, e.g. `results/cifar10`.
        now: the start time (default: now, UTC).

    Returns:
        The new directory's `Path`, e.g. `results/cifar10/2026-11-25_09-30-00`.

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
    Path(space_root).mkdir(parents=True, exist_ok=True)
    for count in range(1, 1000):
        path = Path(space_root) / (stem if count == 1 else f"{stem}_{count}")
        try:
            path.mkdir()  # fails if taken: two runs never share a directory
            return path
        except FileExistsError:
            continue
    raise ArchsearchError(f"{space_root}: cannot create a new run directory for {stem}")


def is_run(path):
    """Whether `path` is a run directory (it holds `run.json`)."""
    return (Path(path) / RUN).is_file()


def run_status(path):
    """The `status` in a run's `run.json` (`searching`, ..., `complete`), or `unknown` if unreadable."""
    try:
        return json.loads((Path(path) / RUN).read_text()).get("status", "unknown")
    except (OSError, ValueError):
        return "unknown"


def list_runs(space_root):
    """Returns the run directories under `space_root`, oldest first (by run id)."""
    root = Path(space_root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_run(p)), key=lambda p: p.name)


def resolve_run(path, log=None):
    """Returns the run that `path` names: itself if it is a run, else its most recent complete run.

    Args:
        path: a run directory, or a space's folder such as `results/digits`.
        log: called with a line saying which run was chosen, when `path`
            is a space's folder.

    Raises:
        ArchsearchError: if `path` is neither a run nor holds a complete one.
    """
    path = Path(path)
    if is_run(path):
        return path
    runs = list_runs(path)
    complete = [run for run in runs if run_status(run) == COMPLETE]
    if not complete:
        found = f"; its runs: {', '.join(f'{r.name} ({run_status(r)})' for r in runs)}" if runs else ""
        raise ArchsearchError(f"{path}: no complete run here{found}")
    if log:
        log(f"using the most recent complete run, {complete[-1]}")
    return complete[-1]


def latest_unfinished(space_root):
    """Returns the most recent run under `space_root` that is not complete.

    Raises:
        ArchsearchError: if there is none.
    """
    unfinished = [run for run in list_runs(space_root) if run_status(run) != COMPLETE]
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
    for run in list_runs(space_root):
        meta = read_run(run)
        row = {"run": run.name, "status": meta.get("status", "unknown"), "test_accuracy": None,
               "test_accuracy_std": None, "trials": None, "wall_seconds": wall_seconds(meta)}
        if (run / TRIALS).is_file():
            row["trials"] = int((pd.read_csv(run / TRIALS)["status"] == "completed").sum())
        if (run / LEADERBOARD).is_file():
            board = read_leaderboard(run)
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


def read_leaderboard(run):
    """Reads a run's `leaderboard.csv`, integers as integers and blanks as missing values.

    Args:
        run: a run directory.

    Returns:
        The leaderboard as a DataFrame.

    Raises:
        ArchsearchError: if the directory holds no finished leaderboard.
    """
    path = Path(run) / LEADERBOARD
    if not path.is_file():
        raise ArchsearchError(f"{path}: no leaderboard here; is {run} the directory of a finished run?")
    return pd.read_csv(path, dtype={"trial_id": str}).convert_dtypes()


def read_run(run):
    """Reads a run's `run.json`."""
    return json.loads((Path(run) / RUN).read_text())
