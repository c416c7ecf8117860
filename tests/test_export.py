"""The exported winner: source images in, named outputs, no archsearch needed to load it, and `archsearch predict`."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from archsearch import Data, Recipe, Retrain, Search, Space, Train
from archsearch.cli.main import main
from archsearch.data import decode
from archsearch.model.builder import build_model, with_mirror_mean
from archsearch.output.export import inference_model
from archsearch.pipeline.runner import run
from archsearch.recipe.architecture import plan

CLASSES = ("bars", "rings")


def write_rgb_folder(root, train=16, test=6, size=12):
    """Writes <root>/{train,test}/{bars,rings}/*.jpg: colored RGB JPEGs whose class shows in luma too."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    shapes = {"bars": (cols // 3) % 2, "rings": (np.hypot(rows - size / 2, cols - size / 2) // 2) % 2}
    for split, count in (("train", train), ("test", test)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                color = rng.integers(60, 256, 3)
                pixels = shapes[name][..., None] * color + rng.integers(0, 30, (size, size, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                    root / split / name / f"{i:02d}.jpg", quality=90
                )
    return root


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    """A finished run of a grayscale, augmented space on an RGB JPEG folder, trained and scored with the new recipe.

    Label smoothing and a one-cycle schedule change its training; `tta` makes every export (model.keras, the
    SavedModel, ONNX, LiteRT) the mean over each image and its mirror, which each export check must match.
    """
    folder = write_rgb_folder(tmp_path_factory.mktemp("rgb") / "shapes")
    space = Space(
        name="gray",
        data=Data(str(folder), grayscale=True, validation=0.25),
        recipe=Recipe(family="vgg", resolution=12, width=4, stages=1, blocks_per_stage=1),
        train=Train(epochs=1, batch_size=8, augment=True, label_smoothing=0.1, schedule="onecycle", tta=True),
        search=Search(tuner="random", max_trials=1, seed=0),
        retrain=Retrain(top_k=1, epochs=1, seeds=1),
    )
    results = tmp_path_factory.mktemp("run") / "gray"
    run(space, results, log=lambda line: None)
    return results, folder


def jpeg_files(folder, split="test"):
    """The test JPEGs in order, with their labels."""
    files = [
        (path, label) for label, name in enumerate(CLASSES) for path in sorted((folder / split / name).glob("*.jpg"))
    ]
    return [path for path, _ in files], np.array([label for _, label in files])


def rgb(paths):
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])


def test_a_grayscale_space_on_rgb_images_exports_a_model_that_takes_rgb(gray_run):
    results, folder = gray_run
    paths, _ = jpeg_files(folder)
    exported = keras.saving.load_model(results / "best" / "model.keras")
    assert exported.input_shape == (None, None, None, 3)
    trained = keras.saving.load_model(next((results / "retrain").glob("*_seed0.keras")))
    assert trained.input_shape == (None, 12, 12, 1)
    converted = np.stack([np.asarray(Image.open(path).convert("L"))[..., None] for path in paths])
    expected = with_mirror_mean(trained).predict(converted, verbose=0)  # the run's tta, as it scored the model
    served = exported.predict(rgb(paths), verbose=0)
    np.testing.assert_array_equal(served.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(served, expected, atol=1e-6)
    contract = json.loads((results / "best" / "model.json").read_text())
    assert contract["class_names"] == list(CLASSES)
    assert (contract["input"]["dtype"], contract["input"]["channels"], contract["input"]["color"]) == (
        "uint8",
        3,
        "RGB",
    )


def test_the_export_check_figure_is_the_leaderboards_accuracy_and_is_recorded(gray_run):
    results, _ = gray_run
    check = json.loads((results / "run.json").read_text())["export_check"]
    seed0 = json.loads(next((results / "retrain").glob("*_seed0.json")).read_text())
    assert check["test_images"] == 2 * 6
    assert check["expected_test_accuracy"] == seed0["accuracy"]
    for name in ("model_keras", "saved_model", "model_onnx", "model_tflite"):
        assert check[f"{name}_test_accuracy"] == seed0["accuracy"], name
    contract = json.loads((results / "best" / "model.json").read_text())
    assert contract["check"] == check and contract["input"]["size"] == [12, 12]
    files = {path.name for path in (results / "best").iterdir()} - {"model.json"}
    assert {name.rstrip("/") for name in contract["files"]} == files
    assert all(size > 0 for size in contract["files"].values())


def test_a_tta_export_gives_the_same_probabilities_for_an_image_and_its_mirror(gray_run):
    import tensorflow as tf

    results, folder = gray_run
    assert json.loads((results / "best" / "model.json").read_text())["tta"] is True
    images = rgb(jpeg_files(folder)[0])
    mirrors = images[:, :, ::-1].copy()
    model = keras.saving.load_model(results / "best" / "model.keras")
    np.testing.assert_allclose(model.predict(images, verbose=0), model.predict(mirrors, verbose=0), atol=1e-6)
    serve = tf.saved_model.load(str(results / "best" / "saved_model")).signatures["serve"]
    np.testing.assert_allclose(
        serve(image=tf.constant(images))["probabilities"], serve(image=tf.constant(mirrors))["probabilities"], atol=1e-6
    )


def test_luma_and_resize_inside_the_model_match_the_data_layer():
    model = build_model(plan({"width": 4, "resolution": 8}, (10, 14, 1), 2))
    adapter = inference_model(model, 3).get_layer("source_to_training")
    images = np.random.default_rng(1).integers(0, 256, (3, 10, 14, 3), dtype=np.uint8)
    luma = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in images])[..., None]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(adapter(images)), luma)  # exact, as Pillow's convert("L")
    large = np.random.default_rng(2).integers(0, 256, (1, 31, 23, 3), dtype=np.uint8)
    pillow = np.asarray(Image.fromarray(large[0]).convert("L").resize((14, 10), Image.BILINEAR))
    resized = keras.ops.convert_to_numpy(adapter(large))[0, ..., 0]
    assert np.abs(resized.astype(int) - pillow).max() <= 1  # the data layer's bilinear resize, within one level


def test_the_exported_model_crops_to_the_aspect_ratio_where_the_data_did():
    model = build_model(plan({"width": 4, "resolution": 8}, (10, 14, 3), 2))
    adapter = inference_model(model, 3, crop_to_aspect_ratio=True).get_layer("source_to_training")
    tall = np.random.default_rng(3).integers(0, 256, (31, 23, 3), dtype=np.uint8)
    loaded = decode.resize(tall, (10, 14), crop=True)  # what the data layer makes of it
    assert np.abs(keras.ops.convert_to_numpy(adapter(tall[None]))[0].astype(int) - loaded).max() <= 1
    stretched = keras.ops.convert_to_numpy(inference_model(model, 3).get_layer("source_to_training")(tall[None]))[0]
    assert np.abs(stretched.astype(int) - loaded).max() > 50  # without the option the window is another one


def test_saved_model_cli_lists_the_named_inputs_and_outputs(gray_run):
    results, _ = gray_run
    cli = shutil.which("saved_model_cli", path=str(Path(sys.executable).parent)) or shutil.which("saved_model_cli")
    if cli is None:
        pytest.skip("TensorFlow's saved_model_cli is not installed")
    shown = subprocess.run(
        [cli, "show", "--all", "--dir", str(results / "best" / "saved_model")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    signatures = {}
    for block in shown.split("signature_def[")[1:]:
        name = block.split("'")[1]
        entries = block.split("Method name is")[0].split("tensor_info:")
        tensors = [entry.rsplit("[", 1)[-1].split("]")[0].strip("'") for entry in entries[:-1]]
        dtypes = [entry.split("dtype: ")[1].split()[0] for entry in entries[1:]]
        shapes = [entry.split("shape: ")[1].splitlines()[0] for entry in entries[1:]]
        signatures[name] = {tensor: (dtype, shape) for tensor, dtype, shape in zip(tensors, dtypes, shapes)}
    outputs = {
        "probabilities": ("DT_FLOAT", "(-1, 2)"),
        "class_id": ("DT_INT64", "(-1)"),
        "class_name": ("DT_STRING", "(-1)"),
    }
    assert signatures["serve"] == {"image": ("DT_UINT8", "(-1, 12, 12, 3)"), **outputs}  # the training size
    assert signatures["serve_any_size"] == {"image": ("DT_UINT8", "(-1, -1, -1, 3)"), **outputs}
    assert signatures["serve_bytes"] == {"image_bytes": ("DT_STRING", "(-1)"), **outputs}
    assert signatures["serving_default"] == signatures["serve"]
    assert signatures["_probabilities"] == {
        "image": ("DT_UINT8", "(-1, -1, -1, 3)"),
        "output_0": ("DT_FLOAT", "(-1, 2)"),
    }
    assert signatures["_classifier"] == {"image": ("DT_UINT8", "(-1, 12, 12, 1)"), "output_0": ("DT_FLOAT", "(-1, 2)")}
    assert set(signatures) == {
        "__saved_model_init_op",
        "serve",
        "serving_default",
        "serve_any_size",
        "serve_bytes",
        "_probabilities",
        "_classifier",
    }


def test_the_bytes_signature_agrees_with_the_array_signature_on_jpeg_files(gray_run, tmp_path):
    import tensorflow as tf

    results, folder = gray_run
    paths, labels = jpeg_files(folder)
    model = tf.saved_model.load(str(results / "best" / "saved_model"))
    from_arrays = model.signatures["serve"](image=tf.constant(rgb(paths)))
    from_files = model.signatures["serve_bytes"](image_bytes=tf.constant([path.read_bytes() for path in paths]))
    np.testing.assert_array_equal(from_files["class_id"].numpy(), from_arrays["class_id"].numpy())
    # The same pixels as Pillow decodes (libjpeg's accurate DCT), so the same probabilities.
    np.testing.assert_allclose(from_files["probabilities"].numpy(), from_arrays["probabilities"].numpy(), atol=1e-6)
    assert [name.decode() for name in from_files["class_name"].numpy()] == [
        CLASSES[i] for i in from_files["class_id"].numpy()
    ]
    # Files of another size in one batch: each is resized inside, as the array signature does it for a batch of one.
    large = tmp_path / "large.png"
    Image.open(paths[0]).resize((30, 20), Image.BILINEAR).save(large)
    mixed = model.signatures["serve_bytes"](image_bytes=tf.constant([large.read_bytes(), paths[1].read_bytes()]))
    alone = model.signatures["serve_any_size"](image=tf.constant(rgb([large])))
    np.testing.assert_allclose(mixed["probabilities"].numpy()[0], alone["probabilities"].numpy()[0], atol=1e-6)


def test_serve_any_size_takes_images_of_another_size_as_model_keras_does(gray_run):
    import tensorflow as tf

    results, _ = gray_run
    large = np.random.default_rng(4).integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    served = tf.saved_model.load(str(results / "best" / "saved_model")).signatures["serve_any_size"]
    probabilities = served(image=tf.constant(large))["probabilities"].numpy()
    expected = keras.saving.load_model(results / "best" / "model.keras").predict(large, verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def test_the_deployment_graphs_luma_is_pillows_exactly(gray_run):
    import tensorflow as tf

    results, _ = gray_run
    model = tf.saved_model.load(str(results / "best" / "saved_model"))
    images = np.random.default_rng(5).integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    luma = np.stack([np.asarray(Image.fromarray(image).convert("L")) for image in images])[..., None]
    served = model.signatures["serve"](image=tf.constant(images))["probabilities"].numpy()
    # `_classifier` is the trained layers alone: fed Pillow's luma, the same numbers to the last bit.
    np.testing.assert_array_equal(served, model.signatures["_classifier"](image=tf.constant(luma))["output_0"].numpy())


_RUNTIMES_ONLY = """
import sys
import zipfile
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("archsearch", "keras", "tensorflow", "tf2onnx"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
import numpy as np
import onnxruntime
from ai_edge_litert.interpreter import Interpreter
folder, images, labels = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
session = onnxruntime.InferenceSession(f"{folder}/model.onnx")
onnx = session.run(["class_id"], {"image": images})[0]
serve = Interpreter(model_path=f"{folder}/model.tflite").get_signature_runner("serve")
tflite = serve(image=images)["class_id"]
print(np.mean(onnx == labels), np.mean(tflite == labels))
"""


def test_model_onnx_and_model_tflite_score_the_leaderboards_accuracy_with_their_runtimes_alone(gray_run, tmp_path):
    results, folder = gray_run
    paths, labels = jpeg_files(folder)
    np.save(tmp_path / "images.npy", rgb(paths))
    np.save(tmp_path / "labels.npy", labels)
    command = [sys.executable, "-c", _RUNTIMES_ONLY, str(results / "best")]
    command += [str(tmp_path / "images.npy"), str(tmp_path / "labels.npy")]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    seed0 = json.loads(next((results / "retrain").glob("*_seed0.json")).read_text())
    assert [float(a) for a in result.stdout.split()] == [seed0["accuracy"]] * 2


def test_standard_converters_accept_the_serve_signature_with_their_defaults(gray_run, tmp_path):
    import onnxruntime
    import tensorflow as tf

    results, folder = gray_run
    saved_model = results / "best" / "saved_model"
    images = rgb(jpeg_files(folder)[0])
    expected = tf.saved_model.load(str(saved_model)).signatures["serve"](image=tf.constant(images))
    # What a user types: no select TF ops, no custom ops, no options; the signature named, or not at all.
    from ai_edge_litert.interpreter import Interpreter

    for keys in (["serve"], None):
        converted = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=keys).convert()
        (tmp_path / "user.tflite").write_bytes(converted)
        runner = Interpreter(model_path=str(tmp_path / "user.tflite")).get_signature_runner()
        np.testing.assert_allclose(runner(image=images)["probabilities"], expected["probabilities"], atol=1e-5)
    for named in (["--signature_def", "serve"], []):
        onnx = tmp_path / "user.onnx"
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), *named]
        result = subprocess.run([*command, "--output", str(onnx)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        probabilities = onnxruntime.InferenceSession(str(onnx)).run(["probabilities"], {"image": images})[0]
        np.testing.assert_allclose(probabilities, expected["probabilities"].numpy(), atol=1e-5)


def test_export_quantize_int8_records_the_quantized_models_accuracy_and_size(gray_run, tmp_path, capsys):
    results, folder = gray_run
    out = tmp_path / "exported"
    assert main(["export", str(results), "--out", str(out), "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    contract = json.loads((out / "model.json").read_text())
    accuracy, size = contract["check"]["model_int8_tflite_test_accuracy"], contract["files"]["model_int8.tflite"]
    # Not smaller than model.tflite here: a network of a few hundred weights is mostly the file's own overhead.
    assert 0 <= accuracy <= 1 and size == (out / "model_int8.tflite").stat().st_size
    assert f"model_int8.tflite ({size / 1024:,.1f} KiB) {accuracy:.2%}" in printed
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(out / "model_int8.tflite")).get_signature_runner("serve")
    assert runner.get_input_details()["image"]["dtype"] == np.uint8
    paths, labels = jpeg_files(folder)  # the recorded accuracy is the quantized model's own, measured here again
    assert np.mean(runner(image=rgb(paths))["class_id"] == labels) == accuracy
    weights = {
        detail["dtype"] for detail in Interpreter(model_path=str(out / "model_int8.tflite")).get_tensor_details()
    }
    assert np.int8 in weights  # quantized, not the float model again


_WITHOUT_ARCHSEARCH = """
import sys
import zipfile
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "archsearch":
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
assert not [m for m in sys.modules if m.startswith("archsearch")]
"""


def test_model_keras_of_an_augmented_space_loads_without_archsearch(gray_run, tmp_path):
    results, folder = gray_run
    paths, _ = jpeg_files(folder)
    np.save(tmp_path / "images.npy", rgb(paths))
    command = [
        sys.executable,
        "-c",
        _WITHOUT_ARCHSEARCH,
        str(results / "best" / "model.keras"),
        str(tmp_path / "images.npy"),
        str(tmp_path / "out.npy"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    expected = keras.saving.load_model(results / "best" / "model.keras").predict(rgb(paths), verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_predict_classifies_a_folder_and_names_the_one_corrupt_file(gray_run, tmp_path, capsys):
    results, folder = gray_run
    shutil.copytree(folder / "test", tmp_path / "images")
    corrupt = tmp_path / "images" / "rings" / "03.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    assert main(["predict", str(results), str(tmp_path / "images"), "--batch-size", "5"]) == 1
    captured = capsys.readouterr()
    assert str(corrupt) in captured.err and "skipped 1 unreadable" in captured.err
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert list(rows[0]) == ["path", "class_name", "class_id", "probability_bars", "probability_rings"]
    paths = [path for path in sorted((tmp_path / "images").rglob("*.jpg")) if path != corrupt]
    assert [row["path"] for row in rows] == [str(path) for path in paths]
    expected = keras.saving.load_model(results / "best" / "model.keras").predict(rgb(paths), verbose=0)
    assert [int(row["class_id"]) for row in rows] == list(expected.argmax(axis=1))
    assert [row["class_name"] for row in rows] == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose([[float(row[f"probability_{c}"]) for c in CLASSES] for row in rows], expected, atol=1e-5)


def test_predict_reads_archives_and_writes_a_file(gray_run, tmp_path, capsys):
    results, folder = gray_run
    archive = shutil.make_archive(str(tmp_path / "shapes"), "gztar", folder.parent, folder.name)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(results / "best"), archive, "--out", str(out)]) == 0
    assert "classified 44 image(s)" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 44 and rows[0]["path"].startswith(f"{archive}:shapes/")
    assert main(["predict", str(tmp_path), archive]) == 2
    assert "no exported model" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["digits", "car_truck"])
def test_a_digits_and_a_car_versus_truck_run_write_files_their_runtimes_alone_score_as_the_leaderboard_says(
    source, request, tmp_path
):
    """The issue's check on the two spaces users start from: digits (8x8 gray, resized to 16 inside the
    classifier) and car versus truck (CIFAR-10's RGB JPEGs, luma inside the deployment graph)."""
    from archsearch.data import load_data
    from archsearch.output.export import stored_dataset

    if source == "digits":
        data, data_dir, resolution = Data("digits", validation=0.2), None, 16
    else:
        folder = request.getfixturevalue("data_cifar_car_truck_folder")
        classes = ["automobile", "truck"]
        data = Data("cifar10", classes=classes, grayscale=True, validation=0.2, per_class=150, test_per_class=150)
        data_dir, resolution = str(folder), 32
    space = Space(
        name=source,
        data=data,
        recipe=Recipe(family="resnet", resolution=resolution, width=8, stages=2, blocks_per_stage=1),
        train=Train(epochs=1, batch_size=32),
        search=Search(tuner="random", max_trials=1, seed=0),
        retrain=Retrain(top_k=1, epochs=2, seeds=1),
    )
    results = tmp_path / source
    run(space, results, data_dir=data_dir, log=lambda line: None)
    stored = stored_dataset(data, load_data(data, data_dir=data_dir), data_dir=data_dir)
    np.save(tmp_path / "images.npy", stored.x_test)
    np.save(tmp_path / "labels.npy", stored.y_test)
    command = [sys.executable, "-c", _RUNTIMES_ONLY, str(results / "best")]
    command += [str(tmp_path / "images.npy"), str(tmp_path / "labels.npy")]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    seed0 = json.loads(next((results / "retrain").glob("trial_*_seed0.json")).read_text())  # top_k=1: the winner's
    assert [float(a) for a in result.stdout.split()] == [seed0["accuracy"]] * 2
    assert stored.x_test.shape[1:] == ((8, 8, 1) if source == "digits" else (32, 32, 3))


def test_model_keras_holds_the_weights_only_no_optimizer_state(gray_run, tmp_path):
    """An inference file has no use for the optimizer's slots (Adam's would triple its size)."""
    import h5py

    results, _ = gray_run
    with zipfile.ZipFile(results / "best" / "model.keras") as archive:
        (tmp_path / "weights.h5").write_bytes(archive.read("model.weights.h5"))
    names = []
    with h5py.File(tmp_path / "weights.h5") as weights:
        weights.visit(names.append)
    assert names and not [name for name in names if "optimizer" in name]
