"""The report, the per-epoch history and the TensorBoard logs of a run, on tiny data."""

import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from archsearch.cli.main import main
from archsearch.pipeline.runner import apply_overrides, run
from archsearch.records.history import COLUMNS, EpochHistory, read_history

from chromium import IMAGES, Chromium, find_chromium

EPOCHS = 2
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
def finished(digits_npz, tmp_path_factory, tiny_space):
    """A finished tiny run with two epochs per training, two seeds and TensorBoard logs."""
    results = tmp_path_factory.mktemp("report") / "tiny"
    space = apply_overrides(tiny_space(digits_npz), epochs=EPOCHS, retrain_epochs=EPOCHS, seeds=2)
    # --tensorboard is the TensorFlow backend's (Keras Tuner writes hyperparameters only there).
    run(space, results, tensorboard=keras.backend.backend() == "tensorflow", log=lambda line: None)
    return results


def test_history_has_one_row_per_epoch_of_every_trial_and_retraining_seed(finished):
    history = read_history(finished)
    assert list(history.columns) == COLUMNS
    trials = pd.read_csv(finished / "trials.csv", dtype={"trial_id": str})
    board = pd.read_csv(finished / "leaderboard.csv", dtype={"trial_id": str})
    expected = {(t, "search", -1) for t in trials.loc[trials["status"] == "completed", "trial_id"]}  # -1: no seed
    expected |= {(t, "retrain", s) for t in board.loc[~board["baseline"], "trial_id"] for s in (0, 1)}
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
        # cost, what mattered, progress, curves, confusion matrix, recall, misclassified (a tiny model errs)
        assert len(images) == 7, [image["alt"] for image in images]
        assert all(image["complete"] and image["width"] > 0 for image in images), images
        assert browser.errors == []
        browser.open(page, width=375, height=800)
        assert browser.evaluate("document.body.scrollWidth <= window.innerWidth")
        assert browser.errors == []
