"""Per-epoch history: `history.csv` in the run directory, one row per epoch of every training.

Columns: `trial_id` (a reference's is `reference:<preset>`), `phase`
(`search` for a trial, `retrain` for a retraining or a reference's training),
`seed` (the retraining's seed; blank for a trial), `epoch`
(1-based), `loss`, `accuracy` (on the training batches) and `seconds`.

A training that starts again (a resumed run repeats an interrupted trial or
retraining) drops the rows it writes again, so no epoch appears twice; the
file is rewritten atomically after every epoch. A search's trials report
their epochs to the oracle, which may be on another machine; it writes them.
"""

import time

import keras
import pandas as pd

from archsearch.files import write_csv
from archsearch.records.directory import RunDir

COLUMNS = ["trial_id", "phase", "seed", "epoch", "loss", "accuracy", "seconds"]


def read_history(run_dir):
    """Reads a run's `history.csv`; an empty frame with its columns if the run has none."""
    path = RunDir(run_dir).history_csv
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"trial_id": str}).convert_dtypes()


def record_epoch(run_dir, key, epoch, loss, accuracy, seconds):
    """Writes one epoch of one training into the run's `history.csv`.

    Rows of the same training from this epoch on are dropped first: they are
    from an earlier attempt that this one repeats.

    Args:
        run_dir: the run directory (a `RunDir` or a path).
        key: `{"trial_id": ..., "phase": ..., "seed": ...}`, the training.
        epoch: 1-based.
        loss, accuracy: on the training batches.
        seconds: the epoch's time.
    """
    record_epochs(run_dir, key, [(epoch, loss, accuracy, seconds)])


def record_epochs(run_dir, key, epochs):
    """Writes epochs of one training into the run's `history.csv` at once, as `record_epoch()` writes one.

    Args:
        run_dir: the run directory (a `RunDir` or a path).
        key: `{"trial_id": ..., "phase": ..., "seed": ...}`, the training.
        epochs: `(epoch, loss, accuracy, seconds)` of each, in order; rows of the
            training from the first of them on are dropped first.
    """
    if not epochs:
        return
    rows = read_history(run_dir)
    if len(rows):
        seed = rows["seed"].isna() if key["seed"] is None else rows["seed"] == key["seed"]
        mine = (rows["trial_id"] == key["trial_id"]) & (rows["phase"] == key["phase"]) & seed
        rows = rows[~(mine & (rows["epoch"] >= epochs[0][0]))]
    new = pd.DataFrame(
        [
            {**key, "epoch": epoch, "loss": loss, "accuracy": accuracy, "seconds": round(seconds, 3)}
            for epoch, loss, accuracy, seconds in epochs
        ],
        columns=COLUMNS,
    )
    rows = new if rows.empty else pd.concat([rows, new], ignore_index=True)
    write_csv(rows.astype({"seed": "Int64", "epoch": "Int64"}), RunDir(run_dir).history_csv)


class EpochHistory(keras.callbacks.Callback):
    """Appends one row per epoch of a training to the run's `history.csv` (`record_epoch`).

    Args:
        run_dir: the run directory (a `RunDir` or a path).
        trial_id: the trial trained, or retrained.
        phase: `"search"` or `"retrain"`.
        seed: the retraining's seed (`None` for a trial).

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[EpochHistory(run_dir, "3", "retrain", seed=0)])
    ```
    """

    def __init__(self, run_dir, trial_id, phase, seed=None):
        super().__init__()
        self.run_dir = run_dir
        self.key = {"trial_id": str(trial_id), "phase": phase, "seed": seed}

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record_epoch(
            self.run_dir,
            self.key,
            epoch + 1,
            float(logs.get("loss", "nan")),
            float(logs.get("accuracy", "nan")),
            time.perf_counter() - self.epoch_start,
        )
