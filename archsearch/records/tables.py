"""The leaderboard: the best trials to retrain, and their ranked rows beside the unranked ones.

The unranked rows are standards to compare the winners with, `baseline=True`
in the table, told apart by their `trial_id`: the lecture notes' baselines
(`baseline:<name>`) and the references, presets trained as the winners are
(`reference:<preset>`). The trials table itself comes from Keras Tuner's
trials (`archsearch.search.trials`); the run directory writes both tables
atomically (`archsearch.records.directory`).
"""

import pandas as pd

from archsearch.recipe import dimensions

BASELINE = "baseline:"  # the trial_id prefix of the notes' baselines
REFERENCE = "reference:"  # the trial_id prefix of the references

LEADERBOARD_COLUMNS = [
    "rank",
    "trial_id",
    "baseline",
    *dimensions.RECIPE,
    *dimensions.TRAIN,
    "val_accuracy",
    "test_accuracy",
    "test_accuracy_std",
    "test_balanced_error_rate",
    "test_balanced_error_rate_std",
    "params",
    "flops",
    # The untrained model's cost on the search's device (`archsearch.model.cost.COST_COLUMNS`).
    "latency_ms",
    "latency_ms_iqr",
    "images_per_second",
    "model_bytes",
    "seeds",
    "train_seconds",
]


def best_trials(trials, top_k):
    """Returns the `top_k` completed trials with the highest validation accuracy (fewer parameters break ties)."""
    completed = trials[trials["status"] == "completed"]
    return completed.sort_values(["val_accuracy", "params"], ascending=[False, True]).head(top_k)


def leaderboard_frame(rows):
    """Returns the leaderboard: ranked rows by validation accuracy, then the unranked ones in their order.

    Args:
        rows: dicts with the leaderboard's columns; unranked rows (the
            baselines and the references) have `baseline=True`.

    Returns:
        A DataFrame, best first, with `rank` 1, 2, ... and no rank for
        unranked rows. Extra columns (per-class recall) follow the documented ones.
    """
    frame = pd.DataFrame(rows)
    ranked = frame[~frame["baseline"]].sort_values(["val_accuracy", "params"], ascending=[False, True])
    ranked = ranked.assign(rank=range(1, len(ranked) + 1))
    frame = pd.concat([ranked, frame[frame["baseline"]]], ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    extra = [c for c in frame.columns if c not in LEADERBOARD_COLUMNS]
    # Nullable dtypes keep integer columns integer beside the baselines' blanks.
    return frame.reindex(columns=LEADERBOARD_COLUMNS + extra).convert_dtypes()


def references(leaderboard):
    """Returns the leaderboard's references (`reference:<preset>` rows), in its order."""
    return leaderboard[leaderboard["trial_id"].astype(str).str.startswith(REFERENCE)]


def baselines(leaderboard):
    """Returns the leaderboard's baselines from the lecture notes (`baseline:<name>` rows), in its order."""
    return leaderboard[leaderboard["trial_id"].astype(str).str.startswith(BASELINE)]
