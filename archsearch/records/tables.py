"""The leaderboard: the trials to retrain, their ranked rows beside the unranked ones, and picks among them.

The unranked rows are standards to compare the winners with, `baseline=True`
in the table, told apart by their `trial_id`: the lecture notes' baselines
(`baseline:<name>`) and the references, presets trained as the winners are
(`reference:<preset>`). The trials table itself comes from Keras Tuner's
trials (`archsearch.search.trials`); the run directory writes both tables
atomically (`archsearch.records.directory`).
"""

import numpy as np
import pandas as pd

from archsearch.errors import ArchsearchError
from archsearch.model.cost import COST_COLUMNS, INTEGER_COLUMNS
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
    *COST_COLUMNS,  # the untrained model's cost on the search's device
    "seeds",
    "train_seconds",
    "pareto",
]
# One dtype per column across trials.csv and leaderboard.csv (`typed()`): counts are integers, flags booleans,
# names text, the dimensions of their declared kind, and every other number a float.
COUNT_COLUMNS = ("rank", "epochs", "seeds", *INTEGER_COLUMNS)
FLAG_COLUMNS = ("baseline", "pareto")
TEXT_COLUMNS = ("trial_id", "status", "reason", "worker", "workers", "start_from")
NULLABLE = {int: "Int64", float: "Float64", bool: "boolean", str: "string"}
LATENCY = COST_COLUMNS[0]  # "latency_ms", median ms per image at batch 1; runs made before it lack the column
PICKS = ("best", "fastest", "smallest")  # how `pick()` chooses a ranked row
PICK_COSTS = {"fastest": LATENCY, "smallest": "params"}


def pareto_front(cost, accuracy):
    """Returns a boolean mask of the points no other point dominates (as cheap and as accurate, better in one).

    Points with the same cost and accuracy are all on the front; points with
    a missing cost or accuracy are on it never, and dominate nothing.

    Example:

    >>> pareto_front([1, 2, 3, 4, 3], [0.5, 0.4, 0.7, 0.6, 0.7]).tolist()
    [True, False, True, False, True]
    """
    cost, accuracy = np.asarray(cost, float), np.asarray(accuracy, float)
    known = ~(np.isnan(cost) | np.isnan(accuracy))
    cost, accuracy = np.where(known, cost, np.inf), np.where(known, accuracy, -np.inf)
    # dominates[j, i]: point j is as cheap and as accurate as point i, and better in one.
    as_good = (cost[:, None] <= cost[None, :]) & (accuracy[:, None] >= accuracy[None, :])
    better = (cost[:, None] < cost[None, :]) | (accuracy[:, None] > accuracy[None, :])
    return known & ~(as_good & better & known[:, None]).any(axis=0)


def best_trials(trials, top_k, select="top", cost="params"):
    """Returns the completed trials to retrain, the most accurate on validation first (fewer parameters break ties).

    Only validation figures choose; failed and infeasible trials never come in.

    Args:
        trials: the trials table (`trials.csv`).
        top_k: at most this many.
        select: `"top"`, the `top_k` most accurate; `"pareto"`, the `top_k`
            most accurate of those on the Pareto front of validation accuracy
            against `cost` (no other trial is as cheap and as accurate, and better in one).
        cost: the trials' column that `"pareto"` counts as cost, e.g. `"params"` or `"latency_ms"`.

    Returns:
        A DataFrame of at most `top_k` rows of `trials`.

    Raises:
        ArchsearchError: with `"pareto"`, where the trials lack `cost`, or a completed trial has no value of it.

    Example:

    >>> trials = pd.DataFrame({"trial_id": ["0", "1", "2"], "status": "completed",
    ...     "val_accuracy": [0.9, 0.8, 0.7], "params": [500, 600, 100]})
    >>> list(best_trials(trials, 2, select="pareto")["trial_id"])
    ['0', '2']
    """
    completed = trials[trials["status"] == "completed"]
    if select == "pareto":
        where = f"retrain: select='pareto', pareto_cost={cost!r}"
        if cost not in completed.columns:
            raise ArchsearchError(
                f"{where}: trials.csv has no {cost} column (a run made before it was measured); "
                "choose pareto_cost='params'"
            )
        missing = completed.loc[completed[cost].isna(), "trial_id"]
        if len(missing):
            raise ArchsearchError(f"{where}: completed trial(s) {', '.join(map(str, missing))} have no {cost}")
        completed = completed[pareto_front(completed[cost], completed["val_accuracy"])]
    return completed.sort_values(["val_accuracy", "params"], ascending=[False, True]).head(top_k)


def front_cost(leaderboard):
    """The cost of the leaderboard's `pareto` column: `latency_ms` where every ranked row has it, else `params`."""
    ranked = leaderboard[~leaderboard["baseline"].astype(bool)]
    return LATENCY if LATENCY in ranked.columns and ranked[LATENCY].notna().all() else "params"


def on_test_front(leaderboard):
    """Marks the ranked rows on the test split's Pareto front of test accuracy (mean over seeds) against `front_cost()`.

    Unranked rows (baselines, references) take no part: the front is among
    the models the search delivers, the ones `archsearch export` can pick.
    A leaderboard written before the `pareto` column gets it computed here.

    Returns:
        A nullable boolean Series aligned with `leaderboard`: missing for unranked rows.
    """
    if "pareto" in leaderboard.columns:
        return leaderboard["pareto"].astype("boolean")
    ranked = ~leaderboard["baseline"].astype(bool)
    marks = pd.Series(pd.NA, index=leaderboard.index, dtype="boolean")
    rows = leaderboard[ranked]
    marks[ranked] = pareto_front(rows[front_cost(leaderboard)].astype(float), rows["test_accuracy"].astype(float))
    return marks


def leaderboard_frame(rows):
    """Returns the leaderboard: ranked rows by validation accuracy, then the unranked ones in their order.

    Args:
        rows: dicts with the leaderboard's columns; unranked rows (the
            baselines and the references) have `baseline=True`.

    Returns:
        A DataFrame, best first, with `rank` 1, 2, ... and no rank for
        unranked rows, and `pareto` (`on_test_front()`). Extra columns
        (per-class recall) follow the documented ones.
    """
    frame = pd.DataFrame(rows)
    ranked = frame[~frame["baseline"]].sort_values(["val_accuracy", "params"], ascending=[False, True])
    ranked = ranked.assign(rank=range(1, len(ranked) + 1))
    frame = pd.concat([ranked, frame[frame["baseline"]]], ignore_index=True).drop(columns="pareto", errors="ignore")
    frame["rank"] = frame["rank"].astype("Int64")
    frame["pareto"] = on_test_front(frame)
    extra = [c for c in frame.columns if c not in LEADERBOARD_COLUMNS]
    # Nullable dtypes keep integer columns integer beside the baselines' blanks, and float ones float.
    return typed(frame.reindex(columns=LEADERBOARD_COLUMNS + extra))


def typed(frame):
    """Casts a table's columns to their one dtype each, so that a column is written alike in every CSV.

    A dimension takes its kind's nullable dtype (`growth` is a float: `2.0`
    in trials.csv and leaderboard.csv alike); one that also allows `"auto"`
    or a tuple per stage (`stages`, `blocks_per_stage`) is cast only while it
    holds plain numbers. Counts (`rank`, `epochs`, `seeds`, `params`, ...)
    are integers, `baseline` and `pareto` booleans, and the other numeric
    columns (accuracies, recalls, seconds, latencies) floats, even where
    every value is whole (`test_recall_0` is `1.0`, not `1`). Blanks stay blank.

    Args:
        frame: a trials table or a leaderboard.

    Returns:
        The frame with nullable dtypes (`Int64`, `Float64`, `boolean`, `string`).

    Example:

    >>> frame = typed(pd.DataFrame({"growth": [2, None], "seeds": [2.0, 1.0], "test_recall_0": [1, 1]}))
    >>> print(frame.to_csv(index=False).strip())
    growth,seeds,test_recall_0
    2.0,2,1.0
    ,1,1.0
    """
    dtypes = {}
    for name, column in frame.items():
        dimension = dimensions.BY_NAME.get(name)
        if name in COUNT_COLUMNS:
            dtypes[name] = "Int64"
        elif name in FLAG_COLUMNS:
            dtypes[name] = "boolean"
        elif name in TEXT_COLUMNS:
            dtypes[name] = "string"
        elif dimension is not None:
            if not (dimension.auto or dimension.per_stage) or pd.api.types.is_numeric_dtype(column):
                dtypes[name] = NULLABLE[dimension.kind]
        elif pd.api.types.is_bool_dtype(column):
            dtypes[name] = "boolean"
        elif pd.api.types.is_numeric_dtype(column):
            dtypes[name] = "Float64"
    return frame.astype(dtypes)


def references(leaderboard):
    """Returns the leaderboard's references (`reference:<preset>` rows), in its order."""
    return leaderboard[leaderboard["trial_id"].astype(str).str.startswith(REFERENCE)]


def baselines(leaderboard):
    """Returns the leaderboard's baselines from the lecture notes (`baseline:<name>` rows), in its order."""
    return leaderboard[leaderboard["trial_id"].astype(str).str.startswith(BASELINE)]


def pick(leaderboard, how="best", within=1.0):
    """Chooses a ranked row of a leaderboard by validation figures only, never by test figures.

    Args:
        leaderboard: a run's leaderboard.
        how: `"best"`, rank 1 (the most accurate on validation); `"fastest"`,
            the lowest `latency_ms`, or `"smallest"`, the fewest `params`, among
            the ranked rows whose validation accuracy is within `within` points
            of the best one's (fewer of the cost, then rank, break ties).
        within: percentage points, for `"fastest"` and `"smallest"`.

    Returns:
        `(row, candidates)`: the chosen row (a Series) and the ranked rows it
        was chosen among, by rank.

    Raises:
        ArchsearchError: naming what is wrong: an unknown `how`, a negative
            `within`, no ranked row, or `"fastest"` on a leaderboard without `latency_ms`.

    Example:

    >>> board = pd.DataFrame({"rank": [1, 2, 3], "baseline": False, "val_accuracy": [0.95, 0.945, 0.92],
    ...     "params": [900, 400, 100], "test_accuracy": [0.90, 0.99, 0.99]})
    >>> row, candidates = pick(board, "smallest", within=1.0)
    >>> int(row["rank"]), list(candidates["rank"])
    (2, [1, 2])
    """
    if how not in PICKS:
        raise ArchsearchError(f"pick={how!r}: expected one of {', '.join(map(repr, PICKS))}")
    ranked = leaderboard[~leaderboard["baseline"].astype(bool)].sort_values("rank")
    if ranked.empty:
        raise ArchsearchError("the leaderboard has no ranked rows (only baselines and references) to pick from")
    if how == "best":
        return ranked.iloc[0], ranked.head(1)
    if within is None or not within >= 0:
        raise ArchsearchError(f"within={within!r}: expected points of validation accuracy >= 0, e.g. 1.0")
    cost = PICK_COSTS[how]
    if cost not in ranked.columns or ranked[cost].isna().any():
        raise ArchsearchError(
            f"pick={how!r} needs {cost} for every ranked row, and this leaderboard lacks it "
            "(a run made before latency was measured); pick 'smallest' (by params) or 'best'"
        )
    accuracy = ranked["val_accuracy"].astype(float)
    # A hair of slack, so that "within 1 point" holds 0.95 and 0.94 whatever their binary fractions.
    candidates = ranked[accuracy >= accuracy.max() - within / 100 - 1e-12]
    chosen = candidates.assign(_cost=candidates[cost].astype(float)).sort_values(["_cost", "rank"]).iloc[0]
    return chosen.drop("_cost"), candidates
