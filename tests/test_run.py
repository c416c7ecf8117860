"""`archsearch run` end to end on tiny data: files, columns, honesty of the numbers."""

import dataclasses
import io
import json

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from archsearch import Retrain
from archsearch.cli.main import main
from archsearch.data import Dataset
from archsearch.errors import ArchsearchError, SpaceError
from archsearch.pipeline import runner
from archsearch.pipeline.baselines import least_squares
from archsearch.pipeline.retrain import Evaluation, summarize
from archsearch.pipeline.runner import apply_overrides, run
from archsearch.recipe.dimensions import RECIPE, TRAIN
from archsearch.records.tables import LEADERBOARD_COLUMNS
from archsearch.search.trials import TRIAL_COLUMNS


@pytest.fixture(scope="module")
def finished(digits_npz, tmp_path_factory, tiny_space):
    """One finished run, shared by the tests that only read it."""
    results = tmp_path_factory.mktemp("run") / "tiny"
    leaderboard = run(tiny_space(digits_npz), results, log=lambda line: None)
    return results, leaderboard


def test_a_run_writes_every_file_with_the_documented_columns(finished):
    results, _ = finished
    for name in ("trials.csv", "leaderboard.csv", "run.json", "best/model.keras", "best/saved_model/saved_model.pb"):
        assert (results / name).exists(), name
    trials = pd.read_csv(results / "trials.csv")
    assert list(trials.columns) == TRIAL_COLUMNS
    assert len(trials) == 3 and set(trials["status"]) <= {"completed", "failed", "infeasible"}
    board = pd.read_csv(results / "leaderboard.csv")
    assert list(board.columns[: len(LEADERBOARD_COLUMNS)]) == LEADERBOARD_COLUMNS
    assert [c for c in board.columns if c.startswith("test_recall_")] == [f"test_recall_{i}" for i in range(10)]
    meta = json.loads((results / "run.json").read_text())
    assert meta["status"] == "complete"
    assert {"space", "space_fingerprint", "data", "versions", "backend", "device"} <= set(meta)


def test_the_leaderboard_is_ranked_best_first_by_validation_with_baselines_last(finished):
    _, board = finished
    ranked = board[~board["baseline"]]
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert list(ranked["val_accuracy"]) == sorted(ranked["val_accuracy"], reverse=True)
    baselines = board[board["baseline"]]
    assert list(baselines["trial_id"]) == ["baseline:least_squares", "baseline:mlp"]
    assert baselines["rank"].isna().all()
    assert board.index[board["baseline"]].min() > board.index[~board["baseline"]].max()


def test_test_figures_equal_those_recomputed_from_the_saved_model(finished, digits_npz):
    import tensorflow as tf

    results, board = finished
    arrays = np.load(digits_npz)
    served = tf.saved_model.load(str(results / "best" / "saved_model")).signatures["serve"]
    probabilities = served(image=tf.constant(arrays["x_test"]))["probabilities"].numpy()
    predicted = probabilities.argmax(axis=1)
    winner = board[board["rank"] == 1].iloc[0]  # one seed: its model is the exported one
    assert winner["test_accuracy"] == pytest.approx(np.mean(predicted == arrays["y_test"]), abs=1e-9)
    assert winner["test_balanced_error_rate"] == pytest.approx(
        1 - balanced_accuracy_score(arrays["y_test"], predicted), abs=1e-9
    )


def test_saved_model_and_keras_model_predict_the_same(finished, digits_npz):
    import tensorflow as tf

    results, _ = finished
    images = np.load(digits_npz)["x_test"][:32]
    keras_probabilities = keras.saving.load_model(results / "best" / "model.keras").predict(images, verbose=0)
    served = tf.saved_model.load(str(results / "best" / "saved_model")).signatures["serve"](image=tf.constant(images))[
        "probabilities"
    ]
    np.testing.assert_allclose(served.numpy(), keras_probabilities, atol=1e-5)


def test_the_test_split_does_not_influence_the_search(finished, digits_npz, tmp_path, tiny_space):
    results, _ = finished
    arrays = dict(np.load(digits_npz))
    arrays["y_test"] = np.random.default_rng(0).permutation(arrays["y_test"])
    arrays["x_test"] = arrays["x_test"][::-1].copy()
    shuffled = tmp_path / "digits.npz"
    np.savez(shuffled, **arrays)
    run(tiny_space(shuffled), tmp_path / "tiny", log=lambda line: None)
    ignore = ["seconds", "compile_seconds", "latency_ms", "latency_ms_iqr", "images_per_second"]  # timings
    before = pd.read_csv(results / "trials.csv").drop(columns=ignore)
    after = pd.read_csv(tmp_path / "tiny" / "trials.csv").drop(columns=ignore)
    pd.testing.assert_frame_equal(before, after)


def test_an_existing_run_is_refused_without_resume_or_overwrite(finished, digits_npz, tiny_space):
    results, _ = finished
    with pytest.raises(ArchsearchError, match="--resume .* --overwrite"):
        run(tiny_space(digits_npz), results, log=lambda line: None)


def test_overrides_win_over_the_space_file(digits_npz, tiny_space):
    space = apply_overrides(
        tiny_space(digits_npz), tuner="bayesian", max_trials=7, epochs=3, top_k=1, retrain_epochs=4, seeds=5, seed=9
    )
    assert (space.search.tuner, space.search.max_trials, space.search.seed) == ("bayesian", 7, 9)
    assert space.declarations()["epochs"] == 3
    assert (space.retrain.top_k, space.retrain.epochs, space.retrain.seeds) == (1, 4, 5)
    assert space.declarations()["width"] == tiny_space(digits_npz).declarations()["width"]


def test_command_line_overrides_reach_the_run(digits_npz, tmp_path, capsys):
    space_file = tmp_path / "space.py"
    space_file.write_text(
        "from archsearch import *\n"
        f"space = Space(name='cli', data=Data({str(digits_npz)!r}), recipe=Recipe(width=choice(4, 8), resolution=8, "
        "stages=1, blocks_per_stage=1),\n"
        "    train=Train(epochs=5), search=Search(max_trials=10), retrain=Retrain(top_k=3, epochs=5, seeds=3))\n"
    )
    code = main(
        [
            "run",
            str(space_file),
            "--results",
            str(tmp_path / "out"),
            "--max-trials",
            "2",
            "--epochs",
            "1",
            "--top-k",
            "1",
            "--retrain-epochs",
            "1",
            "--seeds",
            "1",
        ]
    )
    assert code == 0
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(trials) == 2 and set(trials["epochs"].dropna()) == {1}
    assert (~board["baseline"]).sum() == 1 and board.loc[0, "seeds"] == 1
    assert "rank" in capsys.readouterr().out


def test_infeasible_samples_are_recorded_and_the_search_goes_on(digits_npz, tmp_path, tiny_space):
    # All 4 points: only vgg at width 4 (102 parameters) fits under 150.
    space = tiny_space(digits_npz, max_trials=4, max_params=150)
    run(space, tmp_path / "tiny", log=lambda line: None)
    trials = pd.read_csv(tmp_path / "tiny" / "trials.csv")
    infeasible = trials[trials["status"] == "infeasible"]
    assert len(infeasible) >= 1
    assert infeasible["reason"].str.contains("max_params").all()
    assert (trials["status"] == "completed").any()
    assert set(RECIPE + TRAIN) <= set(trials.columns)


def test_leaderboard_command_prints_table_csv_and_markdown(finished, capsys):
    results, board = finished
    assert main(["leaderboard", str(results), "--format", "csv"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(printed["trial_id"].astype(str)) == list(board["trial_id"].astype(str))
    assert main(["leaderboard", str(results), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("|")
    assert main(["leaderboard", str(results), "--format", "json"]) == 0
    assert [row["rank"] for row in json.loads(capsys.readouterr().out)] == list(
        board["rank"].astype(object).where(board["rank"].notna(), None)
    )
    assert main(["leaderboard", str(results)]) == 0
    table = capsys.readouterr().out
    assert "acc %" in table and "BER %" in table and "least" in table  # headers may wrap
    first = next(line for line in table.splitlines() if line.strip().startswith("1 "))
    assert first.split()[:2] == ["1", str(board.loc[0, "trial_id"])]  # integers as integers, not 1.0
    assert "nan" not in table.lower() and "<NA>" not in table


def test_leaderboard_of_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no complete run here" in capsys.readouterr().err


def test_export_command_writes_a_checked_saved_model(finished, tmp_path, capsys):
    import tensorflow as tf

    results, _ = finished
    assert main(["export", str(results), "--out", str(tmp_path / "exported"), "--rank", "2"]) == 0
    assert "exported rank 2" in capsys.readouterr().out
    served = tf.saved_model.load(str(tmp_path / "exported" / "saved_model")).signatures["serve"]
    assert served(image=tf.zeros((3, 8, 8, 1), tf.uint8))["probabilities"].shape == (3, 10)
    assert main(["export", str(results), "--out", str(tmp_path / "x"), "--rank", "9"]) == 2
    assert "no rank 9" in capsys.readouterr().err


def fits_of(monkeypatch):
    """Records the callbacks of every `keras.Model.fit` call, one list per call."""
    fits, real_fit = [], keras.Model.fit

    def fit(model, *args, **kwargs):
        fits.append(list(kwargs.get("callbacks") or []))
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    return fits


def step_blocking(callbacks):
    """The callbacks that make Keras wait for every training step on the host (as Keras decides it).

    A callback with a batch end of its own gets each step's logs as Python
    numbers, so the host waits for the step, unless it is `async_safe`:
    then Keras calls it on a thread of its own and goes on queueing steps.
    """
    base = keras.callbacks.Callback
    return [
        type(c).__name__
        for c in callbacks
        if not getattr(c, "async_safe", False)
        and (type(c).on_train_batch_end is not base.on_train_batch_end or type(c).on_batch_end is not base.on_batch_end)
    ]


def test_no_trial_or_retraining_waits_on_the_host_for_every_step(digits_npz, tmp_path, monkeypatch, tiny_space):
    fits = fits_of(monkeypatch)
    space = apply_overrides(tiny_space(digits_npz, max_trials=1), top_k=1, seeds=1)
    run(space, tmp_path / "run", log=lambda line: None)
    assert len(fits) == 3  # a trial, a retraining and the mlp baseline
    assert [step_blocking(callbacks) for callbacks in fits] == [[], [], []]


def test_hyperband_runs_with_its_own_epoch_schedule(digits_npz, tmp_path, monkeypatch, tiny_space):
    fits = fits_of(monkeypatch)
    space = tiny_space(digits_npz, max_trials=4)
    space = apply_overrides(space, tuner="hyperband", epochs=3, top_k=1)
    run(space, tmp_path / "hb", log=lambda line: None)
    trials = pd.read_csv(tmp_path / "hb" / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert set(trials["epochs"]) <= {1, 2, 3}
    assert len(fits) >= 6  # 4 trials, a retraining and the mlp baseline
    assert all(step_blocking(callbacks) == [] for callbacks in fits)  # Keras Tuner's own run_trial adds callbacks


def test_the_search_samples_the_same_points_for_the_same_seed_zero_included(digits_npz, tmp_path, tiny_space):
    from archsearch.data import load_data
    from archsearch.search.tuners import make_tuner

    space = apply_overrides(tiny_space(digits_npz), seed=0)
    dataset = load_data(space.data)

    def first_points(directory):
        oracle = make_tuner(space, dataset, directory, overwrite=True).oracle
        return [oracle.populate_space(str(i))["values"] for i in range(4)]

    assert first_points(tmp_path / "a") == first_points(tmp_path / "b")


def start_space(npz, tuner, start_from=("resnet20", "resnet32"), max_trials=3, epochs=3, **search):
    """A space around CIFAR's ResNets at 8x8: widths under the stem's 16 are infeasible (zero-padding shortcuts)."""
    from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice

    return Space(
        name="start",
        data=Data(str(npz), validation=0.25),
        recipe=Recipe.preset(
            "resnet20", resolution=8, width=choice(16, 4, 8), blocks_per_stage=choice((1, 1, 1), (3, 3, 3), (5, 5, 5))
        ),
        train=Train(epochs=epochs, batch_size=64),
        search=Search(tuner=tuner, max_trials=max_trials, seed=1, start_from=start_from, **search),
        retrain=Retrain(top_k=1, epochs=1, seeds=1),
    )


def searched_point(trial):
    return {name: trial.hyperparameters.values[name] for name in ("width", "blocks_per_stage")}


def end_trial(oracle, trial, score=None):
    """Ends a trial as a tuner would: completed with `score`, or failed without one."""
    from keras_tuner.engine.trial import Trial

    if score is None:
        ended = Trial(trial.hyperparameters, trial.trial_id, "FAILED")
        ended.message = "RuntimeError: failed"
    else:
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        ended = Trial(trial.hyperparameters, trial.trial_id, "COMPLETED")
    oracle.end_trial(ended)


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_a_search_starts_from_its_presets_in_order_and_a_resumed_one_repeats_none(digits_npz, tmp_path, tuner):
    from archsearch.data import load_data
    from archsearch.search.tuners import make_tuner

    space = start_space(digits_npz, tuner)
    dataset = load_data(space.data)
    starts = space.start_points()
    assert starts == [{"width": 16, "blocks_per_stage": "(3, 3, 3)"}, {"width": 16, "blocks_per_stage": "(5, 5, 5)"}]
    # Without start points, the same seed samples elsewhere first: the test could fail.
    plain = dataclasses.replace(space, search=dataclasses.replace(space.search, start_from=()))
    assert (
        searched_point(make_tuner(plain, dataset, tmp_path / "plain", overwrite=True).oracle.create_trial("t"))
        not in starts
    )

    tuned = make_tuner(space, dataset, tmp_path / "tuner", overwrite=True)
    oracle = tuned.oracle
    first = oracle.create_trial("t")
    assert searched_point(first) == starts[0]
    assert {k: v for k, v in first.hyperparameters.values.items() if not k.startswith("tuner/")} == {
        **oracle.get_space().values,
        **starts[0],
    }  # the others at their defaults: here, none
    end_trial(oracle, first)  # a failed start point was tried all the same
    second = oracle.create_trial("t")
    assert searched_point(second) == starts[1]
    if tuner == "hyperband":  # both in the first round of its first bracket (3 models of 1 epoch, then 1 of 3)
        hyperband = {k: second.hyperparameters.values[k] for k in ("tuner/bracket", "tuner/round", "tuner/epochs")}
        assert hyperband == {"tuner/bracket": 1, "tuner/round": 0, "tuner/epochs": 1}
    tuned.save()  # as the search does after every trial: the second is running when it stops

    resumed = make_tuner(space, dataset, tmp_path / "tuner", overwrite=False).oracle
    again = resumed.create_trial("t")
    assert again.trial_id == second.trial_id and searched_point(again) == starts[1]  # the interrupted trial
    end_trial(resumed, again, 0.5)
    assert searched_point(resumed.create_trial("t")) not in starts
    assert resumed.started_from() == {first.trial_id: "resnet20", second.trial_id: "resnet32"}


def test_bayesian_optimization_takes_every_start_point_before_its_gaussian_process(digits_npz, tmp_path):
    from archsearch.data import load_data
    from archsearch.search.tuners import make_tuner

    space = start_space(digits_npz, "bayesian")
    oracle = make_tuner(space, load_data(space.data), tmp_path / "tuner", overwrite=True).oracle
    oracle.num_initial_points = 1  # fewer random points than start points: Keras Tuner's would fit its process now
    end_trial(oracle, oracle.create_trial("t"), 0.9)
    assert searched_point(oracle.create_trial("t")) == space.start_points()[1]


def test_start_points_train_in_hyperbands_first_round_and_an_infeasible_one_is_recorded(digits_npz, tmp_path):
    from archsearch.data import load_data
    from archsearch.search.trials import trials_frame
    from archsearch.search.tuners import make_tuner

    # resnet32 has 466,138 parameters at 8x8, resnet20 270,810.
    space = start_space(digits_npz, "hyperband", start_from=("resnet32", "resnet20"), max_trials=2, max_params=300_000)
    dataset = load_data(space.data)
    tuner = make_tuner(space, dataset, tmp_path / "tuner", overwrite=True)
    tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
    trials = trials_frame(tuner)
    assert trials["start_from"].tolist()[:2] == ["resnet32", "resnet20"] and set(trials["start_from"][2:]) <= {""}
    infeasible, trained = trials.iloc[0], trials.iloc[1]
    assert infeasible["status"] == "infeasible" and infeasible["reason"].startswith("infeasible: max_params=300000")
    assert trained["status"] == "completed" and trained["epochs"] == 1 and trained["params"] == 270_810
    values = tuner.oracle.get_trial(trained["trial_id"]).hyperparameters.values
    assert (values["tuner/bracket"], values["tuner/round"]) == (1, 0)  # the first bracket's first round
    assert (trials["status"] == "completed").sum() == 2  # the infeasible start point used none of the budget


def test_a_space_whose_default_point_is_infeasible_is_searched_from_its_start_points(digits_npz, tmp_path):
    from archsearch import Data, Recipe, Search, Space, Train, choice
    from archsearch.data import load_data
    from archsearch.search.tuners import make_tuner

    # Width 4, its default, is under the stem's 16: zero-padding shortcuts cannot narrow. Keras Tuner built it.
    space = Space(
        name="narrow",
        data=Data(str(digits_npz), validation=0.25),
        recipe=Recipe.preset("resnet20", resolution=8, width=choice(4, 8, 16)),
        train=Train(epochs=1),
        search=Search(start_from=("resnet20",)),
    )
    oracle = make_tuner(space, load_data(space.data), tmp_path / "tuner", overwrite=True).oracle
    assert [hp.name for hp in oracle.get_space().space] == ["width"]
    assert oracle.create_trial("t").hyperparameters.values == {"width": 16}


def test_a_start_points_progress_line_names_its_preset():
    from archsearch.output.progress import TrialProgress

    lines = []
    row = dict(status="infeasible", reason="infeasible: max_params=9: too big", worker="", val_accuracy=None)
    trials = pd.DataFrame(
        [{**row, "trial_id": "0", "start_from": "resnet20"}, {**row, "trial_id": "1", "start_from": ""}]
    )
    progress = TrialProgress(2, lines.append)
    progress(trials, "0")
    progress(trials, "1")
    assert lines[0].startswith("trial 0/2 [0] resnet20 (a start point), infeasible: max_params=9: too big |")
    assert lines[1].startswith("trial 0/2 [1] infeasible: max_params=9: too big |")


def test_a_standard_deviation_over_one_seed_or_for_a_baseline_is_left_empty(finished):
    results, _ = finished
    board = pd.read_csv(results / "leaderboard.csv")
    assert list(board["seeds"]) == [1] * len(board)
    for column in ("test_accuracy_std", "test_balanced_error_rate_std"):
        assert board[column].isna().all(), board[column].tolist()


def test_standard_deviations_over_seeds_are_the_sample_ones():
    evaluations = [Evaluation(accuracy=a, balanced_error_rate=1 - a, recall=[a, a]) for a in (0.8, 0.9, 1.0)]
    stats = summarize(evaluations)
    assert stats["test_accuracy_std"] == pytest.approx(0.1) and stats["test_balanced_error_rate_std"] == pytest.approx(
        0.1
    )
    assert summarize(evaluations[:1])["test_accuracy_std"] is None


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_least_squares_baseline_counts_the_weights_it_fits(num_classes):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (60, 4, 5, 1), dtype=np.uint8), np.arange(60) % num_classes
    dataset = Dataset(
        x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:], [str(i) for i in range(num_classes)], "test", "f"
    )
    params, _, _ = least_squares(dataset)
    columns = 1 if num_classes == 2 else num_classes  # a binary problem is one decision function
    assert params == (4 * 5 + 1) * columns


def test_baselines_that_would_not_fit_in_memory_are_left_out_with_a_line(monkeypatch):
    from archsearch.pipeline import baselines

    x, y = np.zeros((60, 64, 64, 3), np.uint8), np.arange(60) % 2
    dataset = Dataset(x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:], ["a", "b"], "test", "f")
    # The MLP's first layer: 64 x 64 x 3 inputs x 1,000 units x 4 bytes, four times over.
    assert baselines.memory_needed(dataset) == 50 * 64 * 64 * 3 + 16 * 64 * 64 * 3 * 1000
    monkeypatch.setattr(runner.cost, "host_memory", lambda: 2**29)
    lines = []
    assert runner._baseline_rows(dataset, lines.append) == []
    assert lines == [
        "baselines: left out: fitting raw pixels would hold about 0.2 GiB in memory, "
        "more than 25% of this machine's 0.5 GiB"
    ]


def test_a_reference_the_data_is_too_small_for_is_refused_before_the_search(
    digits_npz, tmp_path, monkeypatch, tiny_space
):
    space = dataclasses.replace(tiny_space(digits_npz), retrain=Retrain(references=("resnet20", "vgg16")))
    monkeypatch.setattr(runner, "make_tuner", lambda *args, **kwargs: pytest.fail("the search started"))
    with pytest.raises(
        SpaceError, match=r"references: vgg16 does not fit this data's 8x8x1 images \(.*halved at most 3"
    ):
        run(space, tmp_path / "run", log=lambda line: None)
    assert not (tmp_path / "run" / "run.json").exists()
