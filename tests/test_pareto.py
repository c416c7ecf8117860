"""Cost against accuracy: the trials retrained from the validation front, the test front marked, the export's pick."""

import dataclasses
import shutil
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archsearch import Retrain, Space
from archsearch.cli.main import main
from archsearch.errors import ArchsearchError, SpaceError
from archsearch.output import export
from archsearch.output.report import write_report
from archsearch.output.summary import leaderboard_table
from archsearch.pipeline.runner import _Session, run
from archsearch.records.directory import read_leaderboard, read_run
from archsearch.records.tables import best_trials, leaderboard_frame, pareto_front, pick

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "results" / "digits" / "2026-11-25_02-40-53"  # ranks 1 and 2: 98.61% and 98.26% on validation


def _trials(*rows):
    """A trials table of (status, val_accuracy, params, latency_ms) rows, trial ids from "0"."""
    frame = pd.DataFrame(rows, columns=["status", "val_accuracy", "params", "latency_ms"])
    return frame.assign(trial_id=[str(i) for i in range(len(frame))])


def test_the_front_leaves_out_every_dominated_point_and_keeps_exact_ties():
    cost = [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, np.nan]
    accuracy = [0.5, 0.5, 0.7, 0.7, 0.6, 0.9, 0.99]
    # 1 is as accurate as 0 but dearer; 3 as accurate as 2 but dearer; 4 beaten by 2; a missing cost is never on it.
    assert pareto_front(cost, accuracy).tolist() == [True, False, True, False, False, True, False]
    assert pareto_front([2, 2], [0.7, 0.7]).tolist() == [True, True]  # neither is better in anything


def test_pareto_selection_retrains_the_most_accurate_of_the_validation_front_and_never_a_failed_trial():
    trials = _trials(
        ("completed", 0.90, 5000, 4.0),
        ("completed", 0.89, 6000, 5.0),  # dominated: slower and less accurate than 0
        ("completed", 0.85, 1000, 1.0),
        ("completed", 0.80, 800, 2.0),  # on the params front, behind 2 on the latency front
        ("failed", 0.99, 10, 0.1),
        ("infeasible", None, 10, None),
    )
    assert list(best_trials(trials, 3)["trial_id"]) == ["0", "1", "2"]  # "top", as before
    assert list(best_trials(trials, 3, "pareto", "latency_ms")["trial_id"]) == ["0", "2"]
    assert list(best_trials(trials, 3, "pareto", "params")["trial_id"]) == ["0", "2", "3"]
    assert list(best_trials(trials, 1, "pareto", "latency_ms")["trial_id"]) == ["0"]  # top_k caps the front


def test_pareto_selection_on_latency_without_it_is_an_error_naming_the_field():
    with pytest.raises(ArchsearchError, match=r"pareto_cost='latency_ms'.*no latency_ms column.*pareto_cost='params'"):
        best_trials(_trials(("completed", 0.9, 10, 1.0)).drop(columns="latency_ms"), 3, "pareto", "latency_ms")
    with pytest.raises(ArchsearchError, match=r"completed trial\(s\) 1 have no latency_ms"):
        best_trials(_trials(("completed", 0.9, 10, 1.0), ("completed", 0.8, 5, None)), 3, "pareto", "latency_ms")


def test_retrain_select_is_checked_and_stays_out_of_the_fingerprint_at_its_default():
    assert Space("s", retrain=Retrain(select="top", pareto_cost="params")).fingerprint() == Space("s").fingerprint()
    pareto = Space("s", retrain=Retrain(select="pareto", pareto_cost="latency_ms"))
    assert pareto.to_dict()["retrain"]["select"] == "pareto" and pareto.fingerprint() != Space("s").fingerprint()
    with pytest.raises(SpaceError, match=r"retrain: select='front': expected one of 'top', 'pareto'"):
        Retrain(select="front")
    with pytest.raises(SpaceError, match=r"retrain: pareto_cost='bytes': expected one of 'params', 'flops'"):
        Retrain(select="pareto", pareto_cost="bytes")
    with pytest.raises(SpaceError, match=r"pareto_cost='latency_ms' counts only with select='pareto'"):
        Retrain(pareto_cost="latency_ms")


def test_a_resumed_run_retrains_the_trials_it_chose_before():
    trials = _trials(("completed", 0.9, 50, 1.0), ("completed", 0.8, 10, 2.0), ("completed", 0.7, 5, 3.0))
    space = Space("s", retrain=Retrain(top_k=2))
    fresh = types.SimpleNamespace(space=space, previous={})
    assert list(_Session.selected(fresh, trials)["trial_id"]) == ["0", "1"]
    resumed = types.SimpleNamespace(space=space, previous={"retrained_trials": ["2", "0"]})
    assert list(_Session.selected(resumed, trials)["trial_id"]) == ["2", "0"]


def _board(*rows, latency=True):
    """A leaderboard from (val_accuracy, test_accuracy, params, latency_ms) ranked rows, a reference and a baseline."""
    ranked = [
        {"trial_id": str(i), "baseline": False, "val_accuracy": v, "test_accuracy": t, "params": p, "latency_ms": ms}
        for i, (v, t, p, ms) in enumerate(rows)
    ]
    unranked = [
        {"trial_id": "reference:resnet20", "baseline": True, "test_accuracy": 0.99, "params": 1, "latency_ms": 0.01},
        {"trial_id": "baseline:mlp", "baseline": True, "test_accuracy": 0.5, "params": 100},
    ]
    frame = leaderboard_frame(ranked + unranked)
    return frame if latency else frame.drop(columns="latency_ms")


def test_the_pareto_column_marks_the_ranked_rows_on_the_test_front_by_latency_where_measured():
    rows = [(0.95, 0.90, 900, 3.0), (0.94, 0.92, 400, 1.0), (0.93, 0.91, 100, 2.0)]
    board = _board(*rows)
    # By latency, rank 2 (0.92 in 1 ms) beats rank 1 and rank 3; the reference, faster and better, takes no part.
    assert board["pareto"].tolist()[:3] == [False, True, False] and board["pareto"].iloc[3:].isna().all()
    again = leaderboard_frame(board.to_dict("records"))  # a leaderboard made anew marks it anew
    assert again["pareto"].tolist()[:3] == [False, True, False]
    by_params = leaderboard_frame(_board(*rows).drop(columns=["latency_ms", "pareto"]).to_dict("records"))
    assert by_params["pareto"].tolist()[:3] == [False, True, True]
    table = " ".join(leaderboard_table(by_params, []).split())  # the caption wraps at the table's width
    assert "front: on the test split's Pareto front of test accuracy against params" in table


def test_the_pick_uses_validation_figures_never_test_ones():
    # Rank 2 has the best test accuracy and is the fastest, but is 1.5 points under rank 1 on validation.
    board = _board((0.95, 0.90, 900, 3.0), (0.935, 0.99, 100, 1.0), (0.945, 0.91, 400, 2.0))
    row, candidates = pick(board, "fastest")
    assert (row["trial_id"], list(candidates["trial_id"])) == ("2", ["0", "2"])
    assert pick(board, "fastest", within=2.0)[0]["trial_id"] == "1"
    assert pick(board, "smallest", within=0)[0]["trial_id"] == "0"
    assert pick(board, "best")[0]["rank"] == 1
    with pytest.raises(ArchsearchError, match=r"pick='fastest' needs latency_ms.*pick 'smallest'"):
        pick(_board((0.95, 0.9, 9, 1.0), latency=False), "fastest")
    with pytest.raises(ArchsearchError, match=r"within=-1.0: expected points"):
        pick(board, "smallest", within=-1.0)


@pytest.fixture
def digits_copy(tmp_path):
    """A copy of the committed digits run, whose leaderboard and trials may be given latency."""
    run = tmp_path / "digits"
    shutil.copytree(DIGITS, run)
    return run


def _measure(run, latency):
    """Adds latency_ms (a function of params) to a run's trials.csv and leaderboard.csv, as the run would write."""
    for name in ("trials.csv", "leaderboard.csv"):
        frame = pd.read_csv(run / name, dtype={"trial_id": str})
        frame["latency_ms"] = frame["params"].map(latency)
        frame.to_csv(run / name, index=False)


@pytest.fixture
def exported(monkeypatch):
    """Stands in for `export_retrained()` (a committed run keeps no weights): records the rank asked for."""
    ranks = []

    def export_retrained(run_dir, rank, out, data_dir=None, quantize=None):
        ranks.append(rank)
        return "?", {}, None

    monkeypatch.setattr(export, "export_retrained", export_retrained)
    monkeypatch.setattr(export, "export_summary", lambda out, check: "written")
    return ranks


def test_export_pick_chooses_by_validation_and_says_why(digits_copy, exported, capsys, tmp_path):
    out = str(tmp_path / "out")
    assert main(["export", str(digits_copy), "--out", out, "--pick", "smallest"]) == 0
    printed = capsys.readouterr().out
    assert "picked rank 2 (trial 5): smallest, 10,650 parameters at validation accuracy 98.26%" in printed
    assert "among the 2 retrained models within 1 point of the best validation accuracy (98.61%)" in printed
    assert "the others: rank 1 28,938 parameters at 98.61%" in printed
    assert main(["export", str(digits_copy), "--out", out, "--pick", "smallest", "--within", "0.1"]) == 0
    assert main(["export", str(digits_copy), "--out", out, "--pick", "fastest"]) == 2
    assert "pick='fastest' needs latency_ms" in capsys.readouterr().err
    _measure(digits_copy, lambda params: 1e-5 * (40_000 - params))  # the larger network is the faster one here
    assert main(["export", str(digits_copy), "--out", out, "--pick", "fastest"]) == 0
    assert "picked rank 1 (trial 4): fastest, 0.111 ms" in capsys.readouterr().out
    assert exported == [2, 1, 1]


def test_export_pick_and_rank_exclude_each_other(digits_copy, exported, capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        main(["export", str(digits_copy), "--out", str(tmp_path), "--pick", "fastest", "--rank", "2"])
    assert stopped.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["export", str(digits_copy), "--out", str(tmp_path), "--rank", "2", "--within", "2"]) == 2
    assert "--within applies only with --pick fastest or --pick smallest" in capsys.readouterr().err
    assert exported == []


def test_the_report_draws_latency_where_measured_and_says_why_not_elsewhere(digits_copy):
    page = write_report(digits_copy).read_text()
    assert "No latency figure: leaderboard.csv has no latency_ms" in page
    assert "test accuracy against latency" not in page
    _measure(digits_copy, lambda params: 1e-4 * params)
    page = write_report(digits_copy).read_text()
    assert 'alt="test accuracy against latency"' in page and "No latency figure" not in page
    board = read_leaderboard(digits_copy)
    assert "pareto" not in board.columns  # written by older code: the report marks the front itself
    assert "<th>pareto</th>" in page


def test_a_pareto_run_retrains_trials_of_the_validation_front_and_records_them(digits_npz, tiny_space, tmp_path):
    space = tiny_space(digits_npz, max_trials=4)
    space = dataclasses.replace(space, retrain=dataclasses.replace(space.retrain, top_k=3, select="pareto"))
    board = run(space, tmp_path / "run", log=lambda line: None)
    trials = pd.read_csv(tmp_path / "run" / "trials.csv", dtype={"trial_id": str})
    completed = trials[trials["status"] == "completed"]
    front = set(completed.loc[pareto_front(completed["params"], completed["val_accuracy"]), "trial_id"])
    recorded = read_run(tmp_path / "run")["retrained_trials"]
    assert recorded and set(recorded) <= front and len(recorded) == min(3, len(front))
    assert recorded == list(best_trials(trials, 3, "pareto", "params")["trial_id"])  # the most accurate first
    assert set(board.loc[~board["baseline"], "trial_id"]) == set(recorded)
    assert board["pareto"].notna().sum() == len(recorded)
