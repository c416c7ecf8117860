"""The results directory: trials.csv, leaderboard.csv and run.json, written atomically.

Every file is written to a temporary file beside it, then renamed over the
old one, so a reader (or a crash) never sees half a CSV (`archsearch.files`).
"""

import json
from pathlib import Path

import pandas as pd

from archsearch.recipe import dimensions
from archsearch.files import atomic_file
from archsearch.search.oracle import is_infeasible

TRIAL_COLUMNS = [
    "trial_id", "status", "reason", *dimensions.RECIPE, *dimensions.TRAIN,
    "val_accuracy", "val_balanced_error_rate", "params", "flops", "seconds", "compile_seconds", "worker",
]
LEADERBOARD_COLUMNS = [
    "rank", "trial_id", "baseline", *dimensions.RECIPE, *dimensions.TRAIN, "val_accuracy",
    "test_accuracy", "test_accuracy_std", "test_balanced_error_rate", "test_balanced_error_rate_std",
    "params", "flops", "seeds", "train_seconds",
]


def write_atomic(path, text):
    """Writes `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as file:
        file.write(text)


def write_csv(frame, path):
    """Writes a DataFrame as CSV, atomically."""
    write_atomic(path, frame.to_csv(index=False))


def write_json(data, path):
    """Writes JSON-ready data, atomically."""
    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path):
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def trial_status(trial):
    """Returns `completed`, `infeasible`, `failed` or `running` for a Keras Tuner trial."""
    if trial.status == "COMPLETED":
        return "completed"
    if trial.status in ("FAILED", "INVALID"):
        return "infeasible" if is_infeasible(trial) else "failed"
    return "running"


def trials_frame(tuner):
    """Returns one row per trial of a tuner, in the order trials were created.

    Args:
        tuner: a tuner from `archsearch.search.tuners.make_tuner()`.

    Returns:
        A DataFrame with the columns of `TRIAL_COLUMNS`; `epochs` is the
        number actually trained (Hyperband trains some trials for fewer);
        `worker` names the worker a trial was last given to (blank without
        workers). A failed or infeasible trial's reason is its message, as
        the search records it.
    """
    rows = []
    for trial_id, trial in tuner.oracle.trials.items():
        status = trial_status(trial)
        row = {"trial_id": trial_id, "status": status, "reason": (trial.message or "") if status in ("failed", "infeasible") else "",
               "worker": tuner.oracle.workers.get(trial_id, "")}
        row.update(tuner.hypermodel.space.sample(trial.hyperparameters.copy()))
        for metric in ("val_accuracy", "val_balanced_error_rate", "params", "flops", "seconds", "compile_seconds", "epochs"):
            if trial.metrics.exists(metric):
                row[metric] = trial.metrics.get_last_value(metric)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return frame.astype({"epochs": "Int64", "params": "Int64", "flops": "Int64"})


def best_trials(trials, top_k):
    """Returns the `top_k` completed trials with the highest validation accuracy (fewer parameters break ties)."""
    completed = trials[trials["status"] == "completed"]
    return completed.sort_values(["val_accuracy", "params"], ascending=[False, True]).head(top_k)


def leaderboard_frame(rows):
    """Returns the leaderboard: ranked rows by validation accuracy, then the baselines.

    Args:
        rows: dicts with the leaderboard's columns; baselines have
            `baseline=True`.

    Returns:
        A DataFrame, best first, with `rank` 1, 2, ... and no rank for
        baselines. Extra columns (per-class recall) follow the documented ones.
    """
    frame = pd.DataFrame(rows)
    ranked = frame[~frame["baseline"]].sort_values(["val_accuracy", "params"], ascending=[False, True])
    ranked = ranked.assign(rank=range(1, len(ranked) + 1))
    frame = pd.concat([ranked, frame[frame["baseline"]]], ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    extra = [c for c in frame.columns if c not in LEADERBOARD_COLUMNS]
    # Nullable dtypes keep integer columns integer beside the baselines' blanks.
    return frame.reindex(columns=LEADERBOARD_COLUMNS + extra).convert_dtypes()
