"""Transfer learning (issue 28): a space starts from a run, a .keras file or a keras.applications network."""

import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

import archsearch
from archsearch import Data, Recipe, Retrain, Search, Space, Train, Transfer, choice
from archsearch.errors import ArchsearchError, SpaceError
from archsearch.model.builder import build_model
from archsearch.model.training import train
from archsearch.model.transfer import base_network, base_of, describe_base, set_trainable, weight_layers
from archsearch.pipeline.transfer import resolve_transfer
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan

SOURCE_CLASSES = ["0", "1", "2", "3", "4"]
TARGET_CLASSES = ["5", "6", "7", "8", "9"]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """scikit-learn's digits as an image folder of 8x8 RGB PNGs: train/ the first 1,000, test/ the rest."""
    digits = load_digits()
    root = tmp_path_factory.mktemp("digits_folder")
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / ("train" if i < 1000 else "test") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image * 16).clip(0, 255).astype(np.uint8)
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def source_run(digits_folder, tmp_path_factory):
    """A finished run on digits 0 to 4 that trained on the folder's test split (its own test: train/)."""
    space = Space(
        name="source",
        data=Data(str(digits_folder), classes=SOURCE_CLASSES, train_split="test", test_split="train"),
        recipe=Recipe(family="vgg", resolution=8, width=8, stages=1, blocks_per_stage=2),
        train=Train(epochs=1, batch_size=32, learning_rate=5e-3),
        search=Search(max_trials=1),
        retrain=Retrain(top_k=1, epochs=4, seeds=1),
    )
    return archsearch.run(space, results=tmp_path_factory.mktemp("runs") / "source", log=lambda line: None)


def _target(digits_folder, source, classes=TARGET_CLASSES, **train):
    return Space(
        name="target",
        data=Data(str(digits_folder), classes=classes, validation=0.25),
        transfer=source,
        recipe=Recipe(head=choice("gap", "mlp"), head_units=16),
        train=Train(epochs=2, batch_size=32, learning_rate=5e-3, **train),
        search=Search(max_trials=3, seed=2),
        retrain=Retrain(top_k=1, epochs=2, seeds=1),
    )


def _loads_without_archsearch(path):
    """Loads a model.keras in a fresh Python that imports only Keras: it needs none of archsearch's layers."""
    code = f"import keras; print(keras.saving.load_model({str(path)!r}).output_shape)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def target_run(digits_folder, source_run, tmp_path_factory):
    """A run on digits 5 to 9 that transfers from `source_run`, searching the three modes; and what it printed."""
    space = _target(
        digits_folder,
        Transfer(str(source_run.path)),
        transfer=choice("frozen", "fine_tune", "two_phase"),
        augment=True,
    )
    lines = []
    run = archsearch.run(space, results=tmp_path_factory.mktemp("runs") / "target", log=lines.append)
    return run, lines


def test_a_space_transfers_from_a_run_searching_the_modes_and_exports_the_same_product(source_run, target_run):
    run, lines = target_run
    meta = json.loads((run.path / "run.json").read_text())
    assert meta["status"] == "complete"
    provenance = meta["transfer"]
    assert provenance["kind"] == "run" and provenance["run"] == str(source_run.path)
    source_meta = json.loads((source_run.path / "run.json").read_text())
    assert provenance["data"]["fingerprint"] == source_meta["data"]["fingerprint"]
    assert provenance["data"]["classes"] == SOURCE_CLASSES
    assert provenance["splits"] == {"train_split": "test", "test_split": "train"}
    winner = pd.read_csv(source_run.path / "leaderboard.csv", dtype={"trial_id": str}).query("rank == 1")
    assert provenance["trial_id"] == winner["trial_id"].iloc[0]
    assert provenance["features"] == "stage1_pool" and provenance["base"] == "vgg_1x2"
    assert provenance["digest"] == hashlib.sha256(Path(provenance["file"]).read_bytes()).hexdigest()
    assert meta["space"]["transfer"] == {"source": str(source_run.path)}

    trials = pd.read_csv(run.path / "trials.csv")
    assert set(trials["transfer"]) == {"frozen", "fine_tune", "two_phase"}
    assert (trials["status"] == "completed").all()
    # Every trial's network is the source's base and a new head: the plan counts the base's weights, and
    # the recipe's dimensions but the head's are blank, as they do not apply.
    assert (trials["params"] > provenance["base_params"]).all()
    assert trials["family"].isna().all() and trials["width"].isna().all() and trials["head"].notna().all()
    leaderboard = pd.read_csv(run.path / "leaderboard.csv")
    assert leaderboard.loc[0, "transfer"] in ("frozen", "fine_tune", "two_phase") and pd.isna(
        leaderboard.loc[0, "family"]
    )
    # A run without transfer leaves the transfer knobs blank.
    assert pd.read_csv(source_run.path / "trials.csv")["transfer"].isna().all()
    assert any(line.startswith("best: vgg_1x2 base (") for line in lines), lines
    assert "vgg_1x2 base (" in (run.path / "report.html").read_text()

    check = meta["export_check"]
    keras_accuracy = check["model_keras_test_accuracy"]
    assert keras_accuracy == check["expected_test_accuracy"] == check["saved_model_test_accuracy"]
    assert check["model_onnx_test_accuracy"] == check["model_tflite_test_accuracy"] == keras_accuracy
    loaded = _loads_without_archsearch(run.path / "best" / "model.keras")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "(None, 5)" in loaded.stdout


def test_a_source_run_that_trained_on_the_target_test_split_is_refused(digits_folder, source_run, tmp_path):
    # The source trained on test/ of digits 0 to 4: a target testing on test/ with those classes would score
    # images its features have seen.
    space = _target(digits_folder, Transfer(str(source_run.path)), classes=["3", "4", "5"])
    with pytest.raises(ArchsearchError, match=r"trained on .*'test' split.*classes 3, 4"):
        archsearch.run(space, results=tmp_path / "leak", log=lambda line: None)
    # Its other classes share no test image with it.
    base, provenance = resolve_transfer(_target(digits_folder, Transfer(str(source_run.path))), _dataset(digits_folder))
    assert base.features == "stage1_pool" and provenance["kind"] == "run"


def test_the_leak_is_refused_through_a_run_model_file_and_through_a_run_that_transferred(
    digits_folder, source_run, target_run
):
    dataset = _dataset(digits_folder, ["3", "4", "5"])
    model_file = next((source_run.path / "retrain").glob("*_seed0.keras"))
    for source in (str(model_file), str(target_run[0].path)):  # the target run's features come from source_run's
        with pytest.raises(ArchsearchError, match=r"trained on .*'test' split.*classes 3, 4"):
            resolve_transfer(_target(digits_folder, Transfer(source), classes=["3", "4", "5"]), dataset)


def test_an_export_is_refused_as_a_source_with_the_run_to_give_instead(digits_folder, target_run):
    exported = target_run[0].path / "best" / "model.keras"
    with pytest.raises(ArchsearchError, match=r"is an archsearch export .*give its run's folder"):
        resolve_transfer(_target(digits_folder, Transfer(str(exported))), _dataset(digits_folder))


def test_a_resumed_run_and_a_worker_refuse_another_source(digits_folder, source_run, target_run, tmp_path):
    from archsearch.pipeline.transfer import check_same_source
    from archsearch.search.leases import fingerprint

    space = _target(digits_folder, Transfer(str(source_run.path)))
    dataset = _dataset(digits_folder)
    base, provenance = resolve_transfer(space, dataset)
    check_same_source(provenance, dict(provenance))  # the same source resumes
    with pytest.raises(ArchsearchError, match="the source changed since this run started"):
        check_same_source(provenance, {**provenance, "digest": "0" * 64})
    other = dataclasses.replace(base, digest="0" * 64)
    assert fingerprint(space, dataset, base) != fingerprint(space, dataset, other)
    assert fingerprint(space, dataset, base) == fingerprint(space, dataset, dataclasses.replace(base, load={}))
    # A space's folder names its most recent complete run; a resumed run keeps the one it started from.
    folder = tmp_path / "source_space"
    first, newer = folder / "2026-01-01_00-00-00", folder / "2026-01-02_00-00-00"
    shutil.copytree(source_run.path, first)
    started = resolve_transfer(_target(digits_folder, Transfer(str(folder))), dataset)[1]
    shutil.copytree(source_run.path, newer)
    assert resolve_transfer(_target(digits_folder, Transfer(str(folder))), dataset)[1]["run"] == str(newer)
    resumed = resolve_transfer(_target(digits_folder, Transfer(str(folder))), dataset, previous=started)[1]
    assert resumed["run"] == str(first)
    check_same_source(started, resumed)
    check_same_source({key: started[key] for key in ("base", "features")}, resumed)  # a run.json without a digest


def _dataset(digits_folder, classes=TARGET_CLASSES):
    return archsearch.data.load_data(Data(str(digits_folder), classes=classes, validation=0.25))


def _source_file(tmp_path, channels=3):
    """A user's own model.keras: its preprocessing inside, two convs with batch norm, a classifier."""
    image = keras.Input((8, 8, channels))
    x = keras.layers.Rescaling(1 / 255)(image)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(image, keras.layers.Dense(4, activation="softmax", name="old_head")(x))
    for layer in model.layers:  # trained weights, as far as the test can tell: not a fresh initialization
        layer.set_weights([np.random.default_rng(0).normal(size=w.shape).astype("float32") for w in layer.weights])
    model.get_layer("bn1").set_weights([np.ones(8), np.zeros(8), np.full(8, 0.5), np.full(8, 2.0)])
    path = tmp_path / f"mine_{channels}.keras"
    model.save(path)
    return path, model


def _layers(model):
    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, keras.Model) else [layer]


def _weights(base, names):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in _layers(base) if layer.name in names}


def test_a_keras_file_gives_its_layers_up_to_the_last_feature_map_with_its_trained_weights(tmp_path):
    path, source = _source_file(tmp_path)
    base = describe_base({"keras_file": str(path)}, None, (8, 8, 3), "mine.keras")
    assert base.features == "features" and base.shape == (8, 8, 16)
    assert base.params == source.count_params() - source.get_layer("old_head").count_params()
    assert base.non_trainable_params == 4 * 8  # the batch norm, frozen: its scale, offset and statistics
    assert base.flops == 2 * 64 * (9 * 3 * 8 + 9 * 8 * 16)
    assert base.weight_layers == 2  # the convs; the batch norm stays frozen
    architecture = plan({"head": "gap"}, (8, 8, 3), 2, base)
    assert [layer.kind for layer in architecture.layers] == ["input", "transferred", "global_avg_pool", "dense"]
    assert architecture.params == base.params + 16 * 2 + 2
    model = build_model(architecture)
    for name in ("conv1", "bn1", "conv2"):
        for got, want in zip(_weights(base_of(model), [name])[name], source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3)).astype("uint8")
    features = keras.Model(source.input, source.get_layer("features").output)
    np.testing.assert_allclose(base_of(model).predict(images, verbose=0), features.predict(images, verbose=0), 1e-5)


def test_a_source_of_other_channels_or_layers_is_refused_with_what_to_do(tmp_path):
    path, _ = _source_file(tmp_path)
    with pytest.raises(SpaceError, match=r"takes images of 3 channel\(s\), the data has 1: it needs color images"):
        describe_base({"keras_file": str(path)}, None, (8, 8, 1), "mine.keras")
    gray, _ = _source_file(tmp_path, channels=1)
    with pytest.raises(
        SpaceError, match=r"takes images of 1 channel\(s\), the data has 3: declare Data\(grayscale=True\)"
    ):
        describe_base({"keras_file": str(gray)}, None, (8, 8, 3), "mine.keras")
    with pytest.raises(SpaceError, match=r"features='old_head': its output \(None, 4\) is not a feature map"):
        describe_base({"keras_file": str(path)}, "old_head", (8, 8, 3), "mine.keras")
    with pytest.raises(SpaceError, match="features='nope': mine.keras has no such layer; its layers: .*conv1"):
        describe_base({"keras_file": str(path)}, "nope", (8, 8, 3), "mine.keras")
    assert describe_base({"keras_file": str(path)}, "conv1", (8, 8, 3), "mine.keras").shape == (8, 8, 8)


@pytest.mark.parametrize("mode", ["frozen", "fine_tune", "two_phase"])
def test_each_mode_trains_what_it_says_with_batch_norm_statistics_kept(tmp_path, mode):
    path, _ = _source_file(tmp_path)
    base = describe_base({"keras_file": str(path)}, None, (8, 8, 3), "mine.keras")
    point = {**dimensions.defaults(), "transfer": mode, "unfreeze_layers": 1, "epochs": 2, "batch_size": 8}
    model = build_model(plan(point, (8, 8, 3), 2, base))
    before = _weights(base_of(model), ["conv1", "bn1", "conv2"])
    head_before = model.get_layer("predictions").get_weights()[0].copy()
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 256, (32, 8, 8, 3)).astype("uint8"), rng.integers(0, 2, 32)
    train(model, plan(point, (8, 8, 3), 2, base).point, x, y, 2)
    after = _weights(base_of(model), ["conv1", "bn1", "conv2"])
    changed = {name for name in before if not np.allclose(before[name][0], after[name][0])}
    # two_phase unfreezes only the top layer with weights (unfreeze_layers=1) for its second epoch.
    assert changed == {"frozen": set(), "fine_tune": {"conv1", "conv2"}, "two_phase": {"conv2"}}[mode]
    for got, want in zip(after["bn1"], before["bn1"]):  # frozen, in inference mode: the source's statistics
        np.testing.assert_array_equal(got, want)
    assert not np.allclose(head_before, model.get_layer("predictions").get_weights()[0])


def test_a_keras_applications_network_loads_a_local_weights_file_behind_its_own_preprocessing(tmp_path):
    network = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35)
    weights = tmp_path / "mobilenet_v2_notop.weights.h5"
    network.save_weights(weights)
    space = Space(
        name="app",
        data=Data("digits"),
        transfer=Transfer("MobileNetV2", weights=str(weights), arguments={"alpha": 0.35}),
        recipe=Recipe(resolution=32),
    )
    load = {"application": "MobileNetV2", "weights": str(weights), "arguments": {"alpha": 0.35}, "resolution": 32}
    base = describe_base(load, None, (8, 8, 3), "MobileNetV2")
    assert base.name == "MobileNetV2" and base.shape == (1, 1, 1280)
    assert base.params == network.count_params() + 3 * 3 + 3  # and preprocess_input, as a frozen 3 x 3 Dense
    loaded = base_of(build_model(plan(dimensions.defaults(), (8, 8, 3), 3, base)))
    inner = next(layer for layer in loaded.layers if isinstance(layer, keras.Model))
    application = next(layer for layer in inner.layers if isinstance(layer, keras.Model))
    for got, want in zip(application.get_weights(), network.get_weights()):
        np.testing.assert_array_equal(got, want)
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    preprocess = inner.get_layer("preprocess_input")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(preprocess(pixels)),
        keras.applications.mobilenet_v2.preprocess_input(pixels.copy()),
        atol=1e-5,
    )
    assert space.to_dict()["transfer"]["arguments"] == {"alpha": 0.35}
    # Its preprocessing stays frozen whatever trains, and unfreeze_layers does not count it.
    set_trainable(loaded, "auto")
    assert not preprocess.trainable and preprocess not in weight_layers(loaded)
    assert len(weight_layers(loaded)) == base.weight_layers
    # features= names a layer inside the network.
    cut = describe_base(load, "block_3_expand_relu", (8, 8, 3), "MobileNetV2")
    assert cut.features == "block_3_expand_relu" and len(cut.shape) == 3 and cut.params < base.params
    assert base_network(cut).output_shape[1:] == cut.shape


def test_a_transfer_from_an_application_runs_and_exports(digits_folder, tmp_path):
    network = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.35)
    weights = tmp_path / "notop.weights.h5"
    network.save_weights(weights)
    space = Space(
        name="app",
        data=Data(str(digits_folder), classes=["0", "1"], validation=0.25),
        transfer=Transfer("MobileNetV2", weights=str(weights), arguments={"alpha": 0.35}),
        recipe=Recipe(resolution=32),
        train=Train(epochs=2, batch_size=32, transfer="two_phase"),
        search=Search(max_trials=1),
        retrain=Retrain(top_k=1, epochs=2, seeds=1),
    )
    run = archsearch.run(space, results=tmp_path / "app", log=lambda line: None)
    meta = json.loads((run.path / "run.json").read_text())
    assert meta["transfer"]["base"] == "MobileNetV2" and meta["transfer"]["load"]["weights"] == str(weights)
    check = meta["export_check"]
    assert check["model_keras_test_accuracy"] == check["expected_test_accuracy"] == check["model_tflite_test_accuracy"]
    loaded = _loads_without_archsearch(run.path / "best" / "model.keras")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    # Both phases trained (the second every layer but the batch norms), and preprocess_input still maps
    # pixels as the application's function does.
    trained = keras.saving.load_model(next((run.path / "retrain").glob("*_seed0.keras")))
    preprocess = next(layer for layer in _layers(base_of(trained)) if layer.name == "preprocess_input")
    pixels = np.random.default_rng(4).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(preprocess(pixels)),
        keras.applications.mobilenet_v2.preprocess_input(pixels.copy()),
        atol=1e-5,
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Space(name="s", transfer=Transfer("results/x"), recipe=Recipe(width=16)),
            r"recipe: width: a transferred network keeps its source's layers .*only its new head's dimensions "
            r"apply: head, head_units, head_layers, batch_norm$",
        ),
        (
            lambda: Space(name="s", train=Train(transfer="frozen")),
            r"train: transfer: only a space that starts from a trained network has it",
        ),
        (
            lambda: Space(name="s", transfer=Transfer("MobileNetV2"), recipe=Recipe(resolution=choice(32, 64))),
            r"recipe: resolution: a keras.applications base is built once, at one resolution",
        ),
        (
            lambda: Space(name="s", transfer=Transfer("results/x"), search=Search(start_from=("resnet20",))),
            r"search: start_from: presets are networks trained from random weights",
        ),
        (lambda: Transfer("results/x", weights="w.h5"), r"only a keras.applications source takes weights"),
        (lambda: Transfer("MobileNetV2", arguments={"include_top": True}), r"'include_top' is archsearch's to set"),
        (lambda: Transfer(""), r"transfer: source='': expected a run's folder, a .keras file"),
    ],
)
def test_a_space_that_cannot_transfer_says_why(build, message):
    with pytest.raises(SpaceError, match=message):
        build()


def test_a_source_that_cannot_be_found_says_so(digits_folder, tmp_path):
    dataset = _dataset(digits_folder)
    for transfer, message in [
        (Transfer(str(tmp_path / "missing.keras")), r"transfer: source=.*missing.keras': no such file"),
        (Transfer("MobileNetV2"), r"weights=None would start from random weights"),
        (Transfer("MobileNetV2", weights=str(tmp_path / "none.h5")), r"transfer: weights=.*none.h5': no such file"),
        (Transfer("NoSuchNet", weights="imagenet"), r"'NoSuchNet': not a keras.applications network"),
        (Transfer(str(tmp_path)), r"no complete run here"),
    ]:
        with pytest.raises(ArchsearchError, match=message):
            resolve_transfer(_target(digits_folder, transfer), dataset)


def test_describe_shows_a_transferred_space_with_its_base_and_only_the_dimensions_it_has(
    digits_folder, source_run, tmp_path, capsys
):
    from archsearch.cli.main import main

    path = tmp_path / "target.py"
    path.write_text(
        "from archsearch import *\n"
        f"space = Space(name='t', data=Data({str(digits_folder)!r}, classes={TARGET_CLASSES!r}),\n"
        f"    transfer=Transfer({str(source_run.path)!r}), recipe=Recipe(head=choice('gap', 'mlp')),\n"
        "    train=Train(transfer=choice('frozen', 'two_phase')))\n"
    )
    assert main(["describe", str(path), "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert f"transfer: from {str(source_run.path)!r} (run), its base and a new head" in out
    assert " family " not in out and " head " in out
    dataset = _dataset(digits_folder)
    base, _ = resolve_transfer(archsearch.recipe.space.load_space(path), dataset)
    for head in ("gap", "mlp"):  # each sample's parameters are its plan's: the base's, then its new head's
        params = plan({"head": head}, dataset.shape, 5, base).params
        assert (f"{head} " in out) == (f" {params:,} " in out)
