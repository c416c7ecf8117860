"""Export: the winner as a product that takes the source's own images and needs nothing of archsearch.

An export folder (`best/` of a run) holds:

- `model.keras`: the inference model, standard Keras layers only (it loads
  with plain `keras.saving.load_model`): uint8 images as the data source
  stores them, of any size, in; class probabilities out. In front of the
  trained layers sit the data layer's own conversions (ITU-R 601 luma where
  a grayscale space reads color images, a resize to the training size,
  from the centred window of its aspect ratio where the data declares
  `crop_to_aspect_ratio`);
  training-only augmentation is left out. Where the point has `tta`, the
  probabilities are the mean of the network's on each image and on its
  horizontal mirror, as the leaderboard scored it (every file below too;
  `model.json` says `"tta": true`).
- `saved_model/`: the model as a TensorFlow SavedModel. Its signatures
  `serve` and `serving_default` take a uint8 batch at the training data's
  size, `[batch, height, width, source channels]`, and hold only ops that
  TFLite's builtins and tf2onnx/onnxruntime both have (luma, where needed,
  in integer arithmetic); `serve_any_size` (images of any size, resized
  inside with TensorFlow's antialiased resize) and `serve_bytes` (a batch of
  encoded image files) are for TensorFlow Serving. All return
  `probabilities`, `class_id` and `class_name`. It needs TensorFlow (Keras
  exports JAX models through jax2tf, which needs it too); without it only
  `model.keras` is written.
- `model.onnx` and `model.tflite`: the `serve` signature converted as a user
  would (`archsearch.output.convert`), for onnxruntime and LiteRT; on the
  TensorFlow backend only (jax2tf's graph is one `XlaCallModule` op, which
  tf2onnx cannot convert). With `quantize="int8"`, also `model_int8.tflite`.
- `model.json`: the class names, the input contract, the files' sizes and the
  export check.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np

from archsearch.data import load_data
from archsearch.errors import ArchsearchError
from archsearch.files import read_json
from archsearch.model.builder import with_mirror_mean
from archsearch.model.layers import inference_call
from archsearch.model.training import prediction_batch
from archsearch.output.convert import onnx_predictor, tflite_predictor, write_onnx, write_tflite
from archsearch.recipe.dimensions import point_of
from archsearch.records.directory import RunDir

MODEL_JSON = "model.json"
MODEL_KERAS = "model.keras"  # the inference model in Keras format, beside the SavedModel
SAVED_MODEL = "saved_model"
MODEL_ONNX = "model.onnx"
MODEL_TFLITE = "model.tflite"
MODEL_INT8_TFLITE = "model_int8.tflite"
QUANTIZATIONS = ("int8",)  # what `quantize` may ask for, besides None
CHECK_BATCH = 256  # test images per prediction call of the export check, at most (fewer large ones)
# Pillow's convert("L"): luma = (19595 R + 38470 G + 7471 B + 32768) >> 16, as the data layer computes it.
LUMA_WEIGHTS = (19595, 38470, 7471)


def stored_dataset(data, dataset, *, data_dir=None):
    """Returns the data as its source stores it: what an exported model takes.

    Only a space that converts color images to gray (`grayscale=True`)
    trains on something else than its source holds; its data is loaded again
    with the source's own channels (cached like any other load).

    Args:
        data: the space's `Data` declaration.
        dataset: the `Dataset` the model trained on.
        data_dir: as for `archsearch.data.load_data()`.

    Returns:
        A `Dataset` with the same images and labels, in the source's channels.
    """
    if not data.grayscale:
        return dataset
    return load_data(dataclasses.replace(data, grayscale=False), data_dir=data_dir)


def inference_model(model, source_channels, crop_to_aspect_ratio=False, tta=False):
    """Returns the exported inference model of a trained model.

    The trained layers (and their weights) are reused, less the training-only
    augmentation. In front of them, a small model `source_to_training` turns
    images as the source stores them into the images the model trained on:
    ITU-R 601 luma, rounded exactly as the data layer does, where the source
    has 3 channels and the model 1; then a bilinear (antialiased) resize to
    the training size, rounded to uint8. An image of the training size passes
    that resize unchanged.

    Args:
        model: a trained model from `archsearch.model.builder.build_model()`.
        source_channels: 1 or 3, the channels of the source's images.
        crop_to_aspect_ratio: resize from the largest centred window of the
            training size's aspect ratio, as the data did (its `Data`
            declaration's option of that name).
        tta: the point's test-time augmentation: the classifier's
            probabilities are the mean over each image and its mirror, as
            its scoring measured them (`classifier_model()`).

    Returns:
        A `keras.Model`: uint8 images `(batch, height, width, source_channels)`
        of any height and width in, float32 probabilities `(batch, classes)` out.

    Example:

    >>> from archsearch.recipe.architecture import plan
    >>> from archsearch.model.builder import build_model
    >>> trained = build_model(plan({"width": 8, "augment": True}, (32, 32, 1), 2))
    >>> inference_model(trained, 3).input_shape
    (None, None, None, 3)
    """
    height, width, channels = model.input_shape[1:]
    image = keras.Input((None, None, source_channels), dtype="uint8", name="image")
    pixels = _luma(image) if (source_channels, channels) == (3, 1) else image
    resized = keras.layers.Resizing(
        height, width, crop_to_aspect_ratio=crop_to_aspect_ratio, antialias=True, dtype="float32", name="resize"
    )(pixels)
    adapter = keras.Model(image, _round_to_uint8(resized, "round"), name="source_to_training")
    classifier = classifier_model(model, tta)
    return keras.Model(image, classifier(adapter(image)), name=f"{model.name}_inference")


def classifier_model(model, tta=False):
    """Returns the trained layers of a model (sharing its weights), less the training-only augmentation.

    Args:
        model: a trained model from `archsearch.model.builder.build_model()`,
            best loaded with `compile=False`: Keras compiles the clone of a
            compiled model, whose optimizer state a saved file then holds.
        tta: with the point's test-time augmentation: the mean of the
            probabilities of each image and of its mirror, in standard layers
            (`archsearch.model.builder.with_mirror_mean()`).

    Returns:
        A `keras.Model` with the trained model's input: uint8 images of the
        training size and channels.

    Example:

    >>> from archsearch.recipe.architecture import plan
    >>> from archsearch.model.builder import build_model
    >>> trained = build_model(plan({"width": 8, "augment": True}, (32, 32, 1), 2))
    >>> classifier_model(trained).input_shape
    (None, 32, 32, 1)
    """
    classifier = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=inference_call)
    return with_mirror_mean(classifier) if tta else classifier


def _luma(image):
    """ITU-R 601 luma of uint8 RGB images, in standard layers, exactly as Pillow's `convert("L")`.

    The weighted sum is computed in float32 as integers below 2**24, so it is
    exact; each weight is split into two parts of at most 10 significant bits
    (hence the doubled input), so it stays exact where a GPU multiplies
    float32 in TF32.
    """
    pixels = keras.layers.Rescaling(1.0, dtype="float32", name="to_float")(image)
    doubled = keras.layers.Concatenate(dtype="float32", name="luma_split")([pixels, pixels])
    weights = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, dtype="float32", name="luma")
    total = weights(doubled)
    high = [w - w % 1024 for w in LUMA_WEIGHTS]
    weights.set_weights([np.array([*high, *(w % 1024 for w in LUMA_WEIGHTS)], "float32").reshape(1, 1, 6, 1)])
    # (total + 32768) >> 16: the number of boundaries (2k - 1) * 32768 at or below the total.
    return keras.layers.Discretization(bin_boundaries=[(2 * k - 1) * 32768 for k in range(1, 256)], name="luma_round")(
        total
    )


def _round_to_uint8(tensor, name):
    """Rounds to the nearest integer in 0..255 (Keras has no rounding layer; half-integer bins are one)."""
    return keras.layers.Discretization(bin_boundaries=[k - 0.5 for k in range(1, 256)], name=name)(tensor)


def export_model(model, out, stored, expected_accuracy, *, crop_to_aspect_ratio=False, tta=False, quantize=None):
    """Writes `out/model.keras`, `out/saved_model/`, `out/model.onnx`, `out/model.tflite` and `out/model.json`.

    Each export is reloaded with its own runtime (Keras, TensorFlow,
    onnxruntime, the LiteRT interpreter) and predicts the whole test split,
    fed as the source stores it (`stored.x_test`); its accuracy must equal
    `expected_accuracy`, the leaderboard's figure for `model`. Without
    TensorFlow (say, on a JAX-only GPU machine) only `model.keras` is
    written, and on another backend than TensorFlow no ONNX or LiteRT file;
    `archsearch export` on a machine with TensorFlow adds them later.

    Args:
        model: a trained model from `archsearch.model.builder.build_model()`.
        out: the folder to write (replaced if present).
        stored: the data as the source stores it, from `stored_dataset()`.
        expected_accuracy: the test accuracy the leaderboard records for `model`.
        crop_to_aspect_ratio: as for `inference_model()`: the data's option.
        tta: as for `inference_model()`: the point's test-time augmentation,
            which its leaderboard figure was measured with.
        quantize: `None`, or `"int8"`: also write `model_int8.tflite`,
            full-integer quantized (calibrated on training images), whose
            test accuracy is measured but may differ from the float model's.

    Returns:
        The check's figures: `test_images`, `expected_test_accuracy`, and
        the test accuracy of each reloaded export.

    Raises:
        ArchsearchError: if a reloaded export's test accuracy differs, or
            `quantize` is not one of `QUANTIZATIONS`.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ArchsearchError(f"quantize={quantize!r}: expected None or one of {', '.join(QUANTIZATIONS)}")
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tf = _tensorflow()  # before Keras's saving, which imports it too
    inference = inference_model(model, stored.shape[-1], crop_to_aspect_ratio, tta)
    inference.save(staging / MODEL_KERAS)
    reloaded = keras.saving.load_model(staging / MODEL_KERAS)
    accuracies = {MODEL_KERAS: _accuracy(lambda x: reloaded.predict_on_batch(x), stored)}
    quantized = {}
    if tf is not None:
        saved_model = staging / SAVED_MODEL
        # The inference model's last layer is its classifier (`inference_model()`): the same layers, one mirror.
        _export_saved_model(inference, inference.layers[-1], saved_model, stored.class_names)
        serve = tf.saved_model.load(str(saved_model)).signatures["serve"]
        accuracies[SAVED_MODEL] = _accuracy(lambda x: serve(image=tf.constant(x))["probabilities"].numpy(), stored)
        if keras.backend.backend() == "tensorflow":  # elsewhere `serve` is jax2tf's XlaCallModule: no ONNX of it
            write_onnx(saved_model, staging / MODEL_ONNX)
            accuracies[MODEL_ONNX] = _accuracy(onnx_predictor(staging / MODEL_ONNX), stored)
            write_tflite(saved_model, staging / MODEL_TFLITE)
            accuracies[MODEL_TFLITE] = _accuracy(tflite_predictor(staging / MODEL_TFLITE), stored)
            if quantize == "int8":
                write_tflite(saved_model, staging / MODEL_INT8_TFLITE, representative=stored.x_train)
                quantized[MODEL_INT8_TFLITE] = _accuracy(tflite_predictor(staging / MODEL_INT8_TFLITE), stored)
    check = {
        "test_images": len(stored.y_test),
        "expected_test_accuracy": expected_accuracy,
        **{_check_key(name): accuracy for name, accuracy in {**accuracies, **quantized}.items()},
    }
    for name, accuracy in accuracies.items():
        if abs(accuracy - expected_accuracy) * len(stored.y_test) >= 0.5:  # not the same number of images right
            raise ArchsearchError(
                f"export check failed: the reloaded {name} classifies {accuracy:.4%} of the {len(stored.y_test)} test "
                f"images right, fed as the source stores them; the leaderboard says {expected_accuracy:.4%}"
            )
    contract = _contract(inference, model, stored, check, _sizes(staging), tta)
    (staging / MODEL_JSON).write_text(json.dumps(contract, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return check


def _check_key(name):
    """The check's figure of one export file: `model.onnx` -> `model_onnx_test_accuracy`."""
    return f"{name.replace('.', '_')}_test_accuracy"


def _sizes(folder):
    """Bytes of each export in `folder` (a folder's files summed), by name (`saved_model/` for the folder)."""
    sizes = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            sizes[f"{path.name}/"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        else:
            sizes[path.name] = path.stat().st_size
    return sizes


def export_retrained(run_dir, rank, out, *, data_dir=None, dataset=None, quantize=None):
    """Exports the retrained model (seed 0) of one rank of a run's leaderboard, checked as `export_model()` does.

    The data is the run's own: its `run.json` declares it, and the export
    check feeds the test split as that source stores it.

    Args:
        run_dir: the run directory (a `RunDir` or a path) of a run with a leaderboard.
        rank: the leaderboard rank to export (1: the winner).
        out: the folder to write (replaced if present).
        data_dir: a local copy of the data, as for `archsearch run --data-dir`.
        dataset: the run's data already loaded (a run exporting its winner),
            instead of loading it again.
        quantize: as for `export_model()`.

    Returns:
        A tuple `(trial_id, check, stored)`: the trial exported, the check's
        figures, and the data as the source stores it (`stored_dataset()`).

    Raises:
        ArchsearchError: the rank is not in the leaderboard, its retrained
            model is missing, or the export check fails.
    """
    run_dir = RunDir(run_dir)
    frame = run_dir.read_leaderboard()
    ranked = frame[frame["rank"] == rank]
    if ranked.empty:
        raise ArchsearchError(f"{run_dir}: no rank {rank} in the leaderboard (ranks 1 to {int(frame['rank'].max())})")
    trial_id = ranked.iloc[0]["trial_id"]
    saved = run_dir.retrained_model(trial_id, 0)
    if not saved.exists():
        raise ArchsearchError(f"{saved}: the retrained model of rank {rank} is missing; rerun with --resume")
    # Uncompiled: `classifier_model()`'s clone of a compiled model is compiled too, and model.keras
    # would then carry the optimizer's slots (Adam: twice the weights) that no inference needs.
    model = keras.saving.load_model(saved, compile=False)
    data = run_dir.data()
    if dataset is None:
        dataset = load_data(data, data_dir=data_dir)
    stored = stored_dataset(data, dataset, data_dir=data_dir)
    expected = read_json(run_dir.retrained_result(trial_id, 0))["accuracy"]
    check = export_model(
        model,
        out,
        stored,
        expected,
        crop_to_aspect_ratio=data.crop_to_aspect_ratio,
        tta=point_of(ranked.iloc[0])["tta"],
        quantize=quantize,
    )
    return trial_id, check, stored


def _accuracy(predict, stored):
    batch = prediction_batch(stored.x_test, CHECK_BATCH)
    predicted = np.concatenate(
        [np.argmax(predict(stored.x_test[i : i + batch]), axis=1) for i in range(0, len(stored.x_test), batch)]
    )
    return float(np.mean(predicted == stored.y_test))


def _contract(inference, model, stored, check, sizes, tta):
    """The content of `model.json`: what a caller needs to feed the model and read its outputs."""
    adapter = inference.get_layer("source_to_training")
    height, width, channels = model.input_shape[1:]
    window = (
        " from their centred window of that aspect ratio" if adapter.get_layer("resize").crop_to_aspect_ratio else ""
    )
    source_channels = stored.shape[-1]
    luma = (source_channels, channels) == (3, 1)
    fixed = f"uint8 [batch, {height}, {width}, {source_channels}]"
    any_size = f"uint8 [batch, height, width, {source_channels}]"
    classes = len(stored.class_names)
    return {
        "class_names": list(stored.class_names),
        "input": {
            "dtype": "uint8",
            "channels": source_channels,
            "color": "RGB" if source_channels == 3 else "gray",
            "size": [height, width],
            "conversion": ("to ITU-R 601 luma inside the model (as Pillow's convert('L')); " if luma else "")
            + f"{SAVED_MODEL}'s serve, {MODEL_ONNX} and the .tflite files take {height}x{width} images only; "
            f"{MODEL_KERAS}, serve_any_size and serve_bytes resize images of another size to "
            f"{height}x{width}{window} inside (bilinear, antialiased)",
            "source": stored.source,
        },
        "signatures": {
            "serve": {"image": fixed},
            "serving_default": {"image": fixed},
            "serve_any_size": {"image": any_size},
            "serve_bytes": {"image_bytes": "string [batch]: encoded JPEG, PNG, GIF or BMP files"},
            "outputs": {
                "probabilities": f"float32 [batch, {classes}]",
                "class_id": "int64 [batch]",
                "class_name": "string [batch]",
            },
        },
        MODEL_KERAS: f"{any_size} in, float32 probabilities [batch, {classes}] out",
        "tta": bool(tta),
        "converted": f"{MODEL_ONNX} and the .tflite files: the serve signature, its inputs and outputs",
        "files": sizes,
        "check": check,
    }


def export_summary(out, check):
    """What `export_model()` wrote to `out` and what its check found, for the user, in lines of at most 120 columns.

    The figure checked is the test accuracy of the model exported, which
    `export_retrained()` takes from seed 0's retraining: not the leaderboard's
    mean over the seeds.

    Args:
        out: the export folder.
        check: `export_model()`'s figures.

    Returns:
        The folder, then indented lines: the files and their sizes, and
        the check (e.g. `seed 0's model: reloaded, each file classifies 99.72% of the 360
        test images right, as its retraining measured`).
    """
    sizes = read_json(Path(out) / MODEL_JSON)["files"]
    if f"{SAVED_MODEL}/" not in sizes:
        files = [
            f"{MODEL_KERAS} only (a SavedModel needs TensorFlow, as do {MODEL_ONNX} and {MODEL_TFLITE}:",
            "run `archsearch export` where it is installed)",
        ]
    else:
        written = [name for name in (MODEL_KERAS, f"{SAVED_MODEL}/", MODEL_ONNX, MODEL_TFLITE) if name in sizes]
        files = [", ".join(f"{name} ({_kilobytes(sizes[name])})" for name in written)]
        if MODEL_ONNX not in sizes:
            files.append(
                f"({MODEL_ONNX} and {MODEL_TFLITE} need the TensorFlow backend: "
                "run `KERAS_BACKEND=tensorflow archsearch export`)"
            )
    lines = [
        str(out),
        *files,
        f"seed 0's model: reloaded, each file classifies {check['expected_test_accuracy']:.2%} of the "
        f"{check['test_images']:,} test images right, as its retraining measured",
    ]
    int8 = check.get(_check_key(MODEL_INT8_TFLITE))
    if int8 is not None:
        change = (int8 - check["expected_test_accuracy"]) * 100
        lines.append(
            f"{MODEL_INT8_TFLITE} ({_kilobytes(sizes[MODEL_INT8_TFLITE])}) {int8:.2%}, "
            f"{change:+.2f} points from the float model"
        )
    return "\n  ".join(lines)


def _kilobytes(size):
    return f"{size / 1024:,.1f} KiB"


def _tensorflow():
    """Returns TensorFlow, or `None` where it is not installed (a SavedModel needs it).

    On JAX or PyTorch, TensorFlow sees no GPU: the training backend holds the
    device's memory, and TensorFlow would reserve most of the rest at its first
    op. The export's few predictions run on the CPU.
    """
    try:
        import tensorflow as tf
    except ImportError:
        return None
    if keras.backend.backend() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already ran an op (a tfds source, say): too late, and it has its devices
            pass
    return tf


def _export_saved_model(inference, classifier, path, class_names):
    """Writes the SavedModel: signatures `serve` and `serving_default` (uint8 images at the training size),
    `serve_any_size` (uint8 images of any size) and `serve_bytes` (encoded files)."""
    import tensorflow as tf

    source_channels = inference.input_shape[-1]
    height, width, channels = classifier.input_shape[1:]
    image_spec = tf.TensorSpec((None, None, None, source_channels), tf.uint8, name="image")
    fixed_spec = tf.TensorSpec((None, height, width, source_channels), tf.uint8, name="image")
    names = tf.constant(class_names)
    archive = keras.export.ExportArchive()
    archive.track(inference)  # the classifier's layers are the inference model's: tracked with it
    # Keras's way to put TensorFlow ops around a model on every backend (JAX's goes through
    # jax2tf): a model alone is an endpoint, which the serving functions wrap. Explicit
    # training=False: after Keras's image preprocessing layers, a call without it runs
    # batch norm in training mode inside the traced graph.
    # Named with a leading underscore, which tf2onnx passes over: without `--signature_def` it converts
    # the first signature it lists, which must then be `serve`, not one of these any-size wrappers.
    probabilities = archive.add_endpoint(
        "_probabilities", lambda image: inference(image, training=False), input_signature=[image_spec]
    )
    trained = archive.add_endpoint(
        "_classifier",
        lambda image: classifier(image, training=False),
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.uint8, name="image")],
    )

    def outputs(probabilities):
        class_id = tf.argmax(probabilities, axis=1)
        return {
            "probabilities": tf.cast(probabilities, tf.float32),
            "class_id": class_id,
            "class_name": tf.gather(names, class_id),
        }

    def luma(image):
        # Pillow's (19595 R + 38470 G + 7471 B + 32768) >> 16 in int32 arithmetic, exact on any device
        # (no float, so no TF32), in ops TFLite and ONNX have (the Keras model's Discretization is Bucketize).
        total = tf.reduce_sum(tf.cast(image, tf.int32) * tf.constant(LUMA_WEIGHTS, tf.int32), axis=-1, keepdims=True)
        return tf.cast((total + 32768) // 65536, tf.uint8)

    def classify_file(data):
        # One file at a time: files may differ in size until the model resizes them. JPEGs with
        # libjpeg's accurate integer DCT, as Pillow (so the data layer) decodes them, to the same pixels.
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=source_channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=source_channels, expand_animations=False),
        )
        return probabilities(image[None])[0]

    @tf.function(input_signature=[fixed_spec])
    def serve(image):
        return outputs(trained(luma(image) if (source_channels, channels) == (3, 1) else image))

    @tf.function(input_signature=[image_spec])
    def serve_any_size(image):
        return outputs(probabilities(image))

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        spec = tf.TensorSpec((len(class_names),), tf.float32)
        return outputs(tf.map_fn(classify_file, image_bytes, fn_output_signature=spec))

    signatures = {
        "serve": serve,
        "serving_default": serve,
        "serve_any_size": serve_any_size,
        "serve_bytes": serve_bytes,
    }
    for name, function in signatures.items():
        function.get_concrete_function()  # traced, as add_endpoint() wants
        archive.add_endpoint(name, function)
    archive.write_out(str(path), verbose=False)
