"""The report, the per-epoch history, a reference and the TensorBoard logs of a run, on tiny data."""

import dataclasses
import itertools
import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from archsearch.cli.main import main
from archsearch.files import read_json
from archsearch.output.plots import cost_figure, latency_figure, recall_figure
from archsearch.pipeline import runner
from archsearch.pipeline.retrain import Evaluation
from archsearch.pipeline.runner import apply_overrides, run
from archsearch.recipe.dimensions import RECIPE, TRAIN, point_of
from archsearch.recipe.presets import preset
from archsearch.records.directory import RunDir, read_leaderboard
from archsearch.records.history import COLUMNS, EpochHistory, read_history

from chromium import IMAGES, Chromium, find_chromium

EPOCHS = 2
COMMITTED_RUN = Path(__file__).resolve().parents[1] / "results" / "digits" / "2026-12-01_18-44-11"
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CHROMIUM_VARIABLE = "ARCHSEARCH_TEST_CHROMIUM"  # .ci/run sets it, so that in CI the browser test runs, never skips


@pytest.fixture(scope="session")
def chromium():
    """The Chromium binary: `ARCHSEARCH_TEST_CHROMIUM`, else the one on the PATH; skips where there is none."""
    value = os.environ.get(CHROMIUM_VARIABLE)
    if value and not Path(value).is_file():
        pytest.fail(f"{CHROMIUM_VARIABLE}={value}: no such file")
    binary = value or find_chromium()
    if not binary:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    return binary


@pytest.fixture(scope="module")
def finished_run(digits_npz, tmp_path_factory, tiny_space):
    """A finished tiny run with two epochs per training, two seeds, resnet20 as a reference and TensorBoard logs.

    Returns its space, its folder and the lines it printed.
    """
    results = tmp_path_factory.mktemp("report") / "tiny"
    space = apply_overrides(tiny_space(digits_npz), epochs=EPOCHS, retrain_epochs=EPOCHS, seeds=2)
    space = dataclasses.replace(space, retrain=dataclasses.replace(space.retrain, references=("resnet20",)))
    lines = []
    # --tensorboard is the TensorFlow backend's (Keras Tuner writes hyperparameters only there).
    run(space, results, tensorboard=keras.backend.backend() == "tensorflow", log=lines.append)
    return space, results, lines


@pytest.fixture(scope="module")
def finished(finished_run):
    """The folder of `finished_run`."""
    return finished_run[1]


def test_history_has_one_row_per_epoch_of_every_trial_and_retraining_seed(finished):
    history = read_history(finished)
    assert list(history.columns) == COLUMNS
    trials = pd.read_csv(finished / "trials.csv", dtype={"trial_id": str})
    board = pd.read_csv(finished / "leaderboard.csv", dtype={"trial_id": str})
    expected = {(t, "search", -1) for t in trials.loc[trials["status"] == "completed", "trial_id"]}  # -1: no seed
    retrained = [*board.loc[~board["baseline"], "trial_id"], "reference:resnet20"]
    expected |= {(t, "retrain", s) for t in retrained for s in (0, 1)}
    found = history.groupby(["trial_id", "phase", history["seed"].fillna(-1)])["epoch"].apply(list)
    assert {key: [int(e) for e in epochs] for key, epochs in found.items()} == {key: [1, 2] for key in expected}
    assert (history["seconds"] > 0).all() and history["loss"].notna().all()


def _fit(run_dir, epochs, initial_epoch=0, key=("7", "retrain", 0)):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        np.zeros((8, 2)),
        np.zeros(8),
        epochs=epochs,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[EpochHistory(run_dir, key[0], key[1], seed=key[2])],
    )


def test_a_training_run_again_replaces_its_epochs_and_keeps_the_others(tmp_path):
    _fit(tmp_path, 3, key=("7", "search", None))
    _fit(tmp_path, 3)
    _fit(tmp_path, 2)  # a resumed run repeats an interrupted retraining, here stopped after 2 epochs
    _fit(tmp_path, 3)
    _fit(tmp_path, 5, initial_epoch=3)  # Hyperband continues a trial from epoch 3
    history = read_history(tmp_path)
    assert list(history.loc[history["phase"] == "search", "epoch"]) == [1, 2, 3]
    assert list(history.loc[history["phase"] == "retrain", "epoch"]) == [1, 2, 3, 4, 5]


def test_a_reference_is_an_unranked_row_of_the_preset_fitted_and_trained_as_the_winner_is(finished, digits_npz):
    board = read_leaderboard(finished)
    fitted = preset("resnet20").architecture(np.load(digits_npz)["x_train"].shape[1:], 10)
    assert list(board["trial_id"].iloc[-3:]) == ["reference:resnet20", "baseline:least_squares", "baseline:mlp"]
    reference, winner = board.iloc[-3], board.iloc[0]
    assert reference["baseline"] and pd.isna(reference["rank"]) and pd.isna(reference["val_accuracy"])
    assert (reference["params"], reference["flops"]) == (fitted.params, fitted.flops)
    assert {n: point_of(reference)[n] for n in RECIPE} == {n: fitted.point[n] for n in RECIPE}  # R=8, the data's
    assert {n: reference[n] for n in TRAIN} == {n: winner[n] for n in TRAIN}  # resnet20 fixes no training knob
    seeds = [read_json(finished / "retrain" / f"reference_resnet20_seed{seed}.json")["accuracy"] for seed in (0, 1)]
    assert reference["seeds"] == 2 and reference["test_accuracy"] == pytest.approx(np.mean(seeds))
    assert reference["test_accuracy_std"] == pytest.approx(np.std(seeds, ddof=1))
    assert not any(":" in path.name for path in finished.rglob("*"))
    assert list(board.loc[~board["baseline"], "rank"]) == [1, 2]
    exported = read_json(finished / "run.json")["export_check"]["expected_test_accuracy"]
    assert exported == read_json(finished / "retrain" / f"trial_{winner['trial_id']}_seed0.json")["accuracy"]


def test_a_reference_prints_its_seeds_and_the_headline_report_and_figure_compare_the_winner_with_it(finished_run):
    _, results, lines = finished_run
    for seed in (0, 1):
        progress = rf"reference resnet20 seed {seed}: test \d\.\d{{4}} \(\d+ s\) \| retraining .* left"
        assert any(re.fullmatch(progress, line) for line in lines)
    points, spread = r"(\+\d+\.\d points over|\d+\.\d points under)", r"\d+\.\d\d% ± \d+\.\d\d"
    assert re.search(rf"^  {points} resnet20 \({spread} vs {spread}\) with \S+ (of )?its parameters$", lines[-1], re.M)
    assert "reference" in lines[-2] and "resnet20" in lines[-2]  # the printed leaderboard
    page = (results / "report.html").read_text()
    assert "Against the references: " in page and re.search(r"<td[^>]*>reference resnet20</td>", page)
    figure = cost_figure(pd.read_csv(results / "trials.csv"), read_leaderboard(results))
    assert [[text.get_text() for text in axis.texts].count("resnet20") for axis in figure.axes] == [1, 1]


def test_a_resumed_run_trains_only_the_reference_seeds_it_lacks(finished_run, tmp_path, monkeypatch):
    space, results, _ = finished_run
    shutil.copytree(results, tmp_path / "run", ignore=shutil.ignore_patterns(".lock"))
    (tmp_path / "run" / "retrain" / "reference_resnet20_seed1.json").unlink()
    trained = []

    def retrain(point, dataset, seed, epochs, callbacks=(), base=None):
        trained.append((point["blocks_per_stage"], seed))
        return None, Evaluation(accuracy=0.5, balanced_error_rate=0.5, recall=[0.5] * 10)

    monkeypatch.setattr(runner, "retrain", retrain)
    board = run(space, tmp_path / "run", resume=True, log=lambda line: None)
    assert trained == [((3, 3, 3), 1)]  # the trials' retrainings and seed 0 of the reference were read back
    seed0 = read_json(tmp_path / "run" / "retrain" / "reference_resnet20_seed0.json")["accuracy"]
    assert board.iloc[-3]["test_accuracy"] == pytest.approx((seed0 + 0.5) / 2)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="--tensorboard needs the TensorFlow backend")
def test_tensorboard_logs_one_run_per_trial_with_its_hyperparameters_and_val_accuracy(finished):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trials = pd.read_csv(finished / "trials.csv", dtype={"trial_id": str})
    completed = trials[trials["status"] == "completed"]
    for _, trial in completed.iterrows():
        logs = finished / "tensorboard" / trial["trial_id"] / "execution0"
        hparams = EventAccumulator(str(logs), size_guidance={"tensors": 0}).Reload()
        start = plugin_data_pb2.HParamsPluginData.FromString(
            hparams.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        )
        recorded = {
            name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for name, value in start.session_start_info.hparams.items()
        }
        assert recorded["family"] == trial["family"] and recorded["width"] == trial["width"]
        scores = EventAccumulator(str(logs / "validation"), size_guidance={"tensors": 0}).Reload()
        value = float(tf.make_ndarray(scores.Tensors("val_accuracy")[-1].tensor_proto))
        assert value == pytest.approx(trial["val_accuracy"])


def test_report_command_accepts_a_space_folder(finished, capsys):
    assert main(["report", str(finished.parent)]) == 0
    assert f"report: {finished / 'report.html'}" in capsys.readouterr().out


def test_report_opens_in_chromium_with_every_image_loaded_no_console_errors_and_fits_a_phone(finished, chromium):
    page = (finished / "report.html").as_uri()
    with Chromium(chromium) as browser:
        browser.open(page, width=1280)
        images = browser.evaluate(IMAGES)
        # cost, latency, what mattered, progress, curves, confusion matrix, recall, misclassified (a tiny model errs)
        assert len(images) == 8, [image["alt"] for image in images]
        assert all(image["complete"] and image["width"] > 0 for image in images), images
        assert browser.errors == []
        browser.open(page, width=375, height=800)
        assert browser.evaluate("document.body.scrollWidth <= window.innerWidth")
        assert browser.errors == []


def _number_format(text):
    """How a CSV cell writes a value: `int` (`2`), `float` (`2.0`, `3e-06`), or `None` for text and blanks."""
    if re.fullmatch(r"-?\d+", text):
        return "int"
    try:
        float(text)
    except ValueError:
        return None
    return "float" if text.lower() not in ("nan", "inf", "-inf") else None


def test_every_number_column_has_one_format_across_the_csvs_and_reads_back_alike(finished, tmp_path):
    formats = {}
    for name in ("trials.csv", "leaderboard.csv", "history.csv"):
        table = pd.read_csv(finished / name, dtype=str, keep_default_na=False)
        for column in table.columns:
            found = {_number_format(value) for value in table[column]} - {None}
            formats.setdefault(column, set()).update(found)
    mixed = {column: found for column, found in formats.items() if len(found) > 1}
    assert mixed == {}, f"columns written both as integers and as floats: {mixed}"
    assert formats["growth"] == formats["test_recall_0"] == formats["learning_rate"] == {"float"}
    assert formats["params"] == formats["seeds"] == formats["width"] == {"int"}
    board = read_leaderboard(finished)
    assert {str(board[c].dtype) for c in ("rank", "params", "seeds", "width")} == {"Int64"}
    assert {str(board[c].dtype) for c in ("test_accuracy", "growth", "test_recall_0")} == {"Float64"}
    assert str(board["baseline"].dtype) == "boolean"
    again = RunDir(tmp_path)
    again.write_leaderboard(board)  # what a resumed run writes after reading it back
    again.write_trials(RunDir(finished).read_trials())
    for name in ("leaderboard.csv", "trials.csv"):
        assert (again.path / name).read_text() == (finished / name).read_text(), name


def _documented_columns(file):
    """The columns README's table of a run directory's files names for `file` (a row's `code` spans)."""
    row = next(line for line in README.splitlines() if line.startswith(f"| `{file}` |"))
    names = set(re.findall(r"`([a-z_<>0-9]+)`", row))
    if re.search(r"every dimension|the dimensions", row):
        names |= set(RECIPE + TRAIN)
    return names


def test_readme_documents_every_column_a_run_writes(finished):
    for file in ("trials.csv", "leaderboard.csv", "history.csv"):
        documented = _documented_columns(file)
        written = pd.read_csv(finished / file, nrows=0).columns
        undocumented = [
            c
            for c in written
            if c not in documented and re.sub(r"^test_recall_.*", "test_recall_<class>", c) not in documented
        ]
        assert undocumented == [], f"README's {file} row lacks {undocumented}"


def _label_clashes(figure):
    """What the labels and legends inside a figure's axes cover: each other, or drawn data, in pixels.

    Data is whatever the axes draw but their grid: the figure is drawn again
    without its labels, legends and grid, and a label clashes where that drawing
    has ink inside the label's box (less a pixel each side: its edges may touch).
    A legend of the figure's must lie outside every axis.
    """
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    figure.set_layout_engine("none")  # the boxes measured are the ones drawn without the labels
    renderer = canvas.get_renderer()
    labels = [(repr(text.get_text()), text) for axis in figure.axes for text in axis.texts]
    labels += [("the legend", axis.get_legend()) for axis in figure.axes if axis.get_legend()]
    boxes = [artist.get_window_extent(renderer) for _, artist in labels]
    clashes = [
        f"{a} over {b}"
        for (a, one), (b, other) in itertools.combinations(zip([n for n, _ in labels], boxes), 2)
        if one.overlaps(other)
    ]
    clashes += [
        "a figure legend over an axis"
        for legend in figure.legends
        for axis in figure.axes
        if legend.get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
    ]
    for _, artist in labels:
        artist.set_visible(False)
    for axis in figure.axes:
        axis.grid(False)
    canvas.draw()
    ink = (np.asarray(canvas.buffer_rgba())[..., :3] < 240).any(axis=-1)
    height = ink.shape[0]
    for (name, _), box in zip(labels, boxes):
        rows = slice(int(height - box.y1) + 1, int(height - box.y0) - 1)
        covered = int(ink[rows, int(box.x0) + 1 : int(box.x1) - 1].sum())
        if covered:
            clashes.append(f"{name} over {covered} pixels of data")
    return clashes


@pytest.mark.parametrize("which", ["committed", "tiny"])
def test_figure_labels_cover_no_point_line_bar_or_other_label_and_legends_sit_outside_the_axes(which, request):
    run_dir = RunDir(COMMITTED_RUN if which == "committed" else request.getfixturevalue("finished"))
    trials, board = run_dir.read_trials(), run_dir.read_leaderboard()
    classes = [str(name) for name in run_dir.read_run()["data"]["classes"]]
    for figure in (cost_figure(trials, board), latency_figure(trials, board), recall_figure(board, classes)):
        assert sum(len(axis.texts) for axis in figure.axes) >= 2  # the ranks at least
        assert _label_clashes(figure) == []


def test_figures_of_models_retrained_with_one_seed_draw_them_without_error_bars():
    run_dir = RunDir(COMMITTED_RUN)
    trials, board = run_dir.read_trials(), run_dir.read_leaderboard()
    board["test_accuracy_std"] = float("nan")  # one seed: no standard deviation
    for figure in (cost_figure(trials, board), latency_figure(trials, board)):
        assert _label_clashes(figure) == []


FITS = """(() => {
  const page = document.documentElement.scrollWidth <= window.innerWidth;
  const tables = Array.from(document.querySelectorAll('table'));
  const overflowing = tables.filter(t => t.scrollWidth > t.parentElement.clientWidth).length;
  return {page, tables: tables.length, overflowing};
})()"""


@pytest.mark.parametrize("width", [1280, 1900])
def test_report_leaderboard_fits_a_desktop_window_without_scrolling(finished, chromium, width):
    with Chromium(chromium) as browser:
        browser.open((finished / "report.html").as_uri(), width=width, height=900)
        assert browser.evaluate(FITS) == {"page": True, "tables": 1, "overflowing": 0}
        headers = browser.evaluate("Array.from(document.querySelectorAll('table th')).map(h => h.textContent)")
    assert {"trial", "val accuracy", "accuracy", "balanced error rate", "params", "FLOPs", "train s"} <= set(headers)


def test_report_facts_are_rounded_for_a_person_and_leave_unset_settings_out(finished):
    page = (finished / "report.html").read_text()
    facts = page[page.index("<dl>") : page.index("</dl>")]
    assert "None" not in facts and not re.search(r"\d\.\d{5,}", facts), facts
    check = read_json(finished / "run.json")["export_check"]
    assert f"seed 0&#x27;s model {check['expected_test_accuracy']:.2%}" in facts
    assert re.search(r"<dt>started</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", facts)
