"""Per-epoch history: `history.csv` in the run directory, one row per epoch of every training.

Columns: `trial_id`, `phase` (`search` for a trial, `retrain` for a
retraining), `seed` (the retraining's seed; blank for a trial), `epoch`
(1-based), `loss`, `accuracy` (on the training batches) and `seconds`.

A training that starts again (a resumed run repeats an interrupted trial or
retraining) first drops the rows it is about to write again, so no epoch
appears twice; the file is rewritten atomically after every epoch.
"""

import time
from pathlib import Path

import keras
import pandas as pd

from archsearch.results import write_csv

HISTORY = "history.csv"
COLUMNS = ["trial_id", "phase", "seed", "epoch", "loss", "accuracy", "seconds"]


def read_history(run):
    """Reads a run's `history.csv`; an empty frame with its columns if the run has none."""
    path = Path(run) / HISTORY
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, dtype={"trial_id": str}).convert_dtypes()


class EpochHistory(keras.callbacks.Callback):
    """Appends one row per epoch of a training to the run's `history.csv`.

    Args:
        run: the run directory.
        trial_id: the trial trained, or retrained.
        phase: `"search"` or `"retrain"`.
        seed: the retraining's seed (`None` for a trial).

    Example:

    ```python
    model.fit(x, y, epochs=5, callbacks=[EpochHistory(run_dir, "3", "retrain", seed=0)])
    ```
    """

    def __init__(self, run, trial_id, phase, seed=None):
        super().__init__()
        self.path = Path(run) / HISTORY
        self.key = {"trial_id": str(trial_id), "phase": phase, "seed": seed}

    def _mine(self, frame):
        seed = frame["seed"].isna() if self.key["seed"] is None else frame["seed"] == self.key["seed"]
        return (frame["trial_id"] == self.key["trial_id"]) & (frame["phase"] == self.key["phase"]) & seed

    def on_train_begin(self, logs=None):
        self.rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:
            # This training starts at `epoch` (Hyperband continues trials): drop older rows from it on.
            rows = read_history(self.path.parent)
            self.rows = rows[~(self._mine(rows) & (rows["epoch"] > epoch))] if len(rows) else rows
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {**self.key, "epoch": epoch + 1, "loss": float(logs.get("loss", "nan")),
               "accuracy": float(logs.get("accuracy", "nan")), "seconds": round(time.perf_counter() - self.epoch_start, 3)}
        new = pd.DataFrame([row], columns=COLUMNS)
        self.rows = new if self.rows.empty else pd.concat([self.rows, new], ignore_index=True)
        write_csv(self.rows.astype({"seed": "Int64", "epoch": "Int64"}), self.path)
