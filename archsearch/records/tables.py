"""The leaderboard: the best trials to retrain, and their ranked rows beside the baselines.

The trials table itself comes from Keras Tuner's trials (`archsearch.search.trials`);
the run directory writes both tables atomically (`archsearch.records.directory`).
"""

import pandas as pd

from archsearch.recipe import dimensions

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
    "seeds",
    "train_seconds",
]


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
