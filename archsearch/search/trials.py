"""The trials table: one row per Keras Tuner trial, as `trials.csv` holds it.

It reads Keras Tuner's trials (their status, hyperparameters and metrics),
so it belongs with the search; the run directory writes the table
(`archsearch.records.directory.RunDir.write_trials`).
"""

import pandas as pd

from archsearch.model.cost import COST_COLUMNS, INTEGER_COLUMNS
from archsearch.recipe import dimensions
from archsearch.search.oracle import is_infeasible

# What a trial reports besides its point, in trials.csv's order.
METRICS = (
    "val_accuracy",
    "val_balanced_error_rate",
    "params",
    "flops",
    *COST_COLUMNS,
    "memory_estimate_bytes",
    "seconds",
    "compile_seconds",
)
TRIAL_COLUMNS = [
    "trial_id",
    "status",
    "reason",
    *dimensions.RECIPE,
    *dimensions.TRAIN,
    *METRICS,
    "worker",
    "start_from",
]


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
        the cost columns (`latency_ms`, `latency_ms_iqr`, `images_per_second`,
        `model_bytes`) are measured before the trial trains, on its untrained
        model (blank for a sample the plan rules out), and
        `memory_estimate_bytes` is the plan's estimate of a training step;
        `worker` names the worker a trial was last given to (blank without
        workers); `start_from` the preset a trial started the search from
        (`Search(start_from=...)`; blank for the others). A failed or infeasible trial's reason is its message, as
        the search records it. A dimension that does not apply to the space's networks is blank: the transfer
        knobs without `Space(transfer=...)`, and with it the recipe's dimensions but its head's
        (`Space.applicable_dimensions()`).
    """
    rows = []
    started_from = tuner.oracle.started_from()
    for trial_id, trial in tuner.oracle.trials.items():
        status = trial_status(trial)
        row = {
            "trial_id": trial_id,
            "status": status,
            "reason": (trial.message or "") if status in ("failed", "infeasible") else "",
            "worker": tuner.oracle.workers.get(trial_id, ""),
            "start_from": started_from.get(trial_id, ""),
        }
        space = tuner.hypermodel.space
        point = space.sample(trial.hyperparameters.copy())
        row.update({name: point[name] for name in space.applicable_dimensions()})
        for metric in (*METRICS, "epochs"):  # epochs: the number trained, which Hyperband varies
            if trial.metrics.exists(metric):
                row[metric] = trial.metrics.get_last_value(metric)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return frame.astype(dict.fromkeys(("epochs", *INTEGER_COLUMNS), "Int64"))  # epochs: Hyperband's count
