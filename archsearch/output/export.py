"""Export: the winner as a product that takes the source's own images and needs nothing of archsearch.

An export folder (`best/` of a run) holds:

- `model.keras`: the inference model, standard Keras layers only (it loads
  with plain `keras.saving.load_model`): uint8 images as the data source
  stores them, of any size, in; class probabilities out. In front of the
  trained layers sit the data layer's own conversions (ITU-R 601 luma where
  a grayscale space reads color images, a resize to the training size,
  from the centred window of its aspect ratio where the data declares
  `crop_to_aspect_ratio`);
  training-only augmentation is left out.
- `saved_model/`: the same model as a TensorFlow SavedModel with two
  signatures, `serve` (a uint8 image batch) and `serve_bytes` (a batch of
  encoded image files), both returning `probabilities`, `class_id` and
  `class_name`. It needs TensorFlow (Keras exports JAX models through
  jax2tf, which needs it too); without it only `model.keras` is written.
- `model.json`: the class names, the input contract and the export check.
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
from archsearch.model.builder import TRAINING_ONLY_LAYERS
from archsearch.records.directory import RunDir

MODEL_JSON = "model.json"
MODEL_KERAS = "model.keras"  # the inference model in Keras format, beside the SavedModel
CHECK_BATCH = 256  # test images per prediction call of the export check
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


def inference_model(model, source_channels, crop_to_aspect_ratio=False):
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
    classifier = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=_inference_call)
    return keras.Model(image, classifier(adapter(image)), name=f"{model.name}_inference")


def _inference_call(layer, *args, **kwargs):
    """Calls a layer of the trained graph, passing images through the training-only ones."""
    return args[0] if isinstance(layer, TRAINING_ONLY_LAYERS) else layer(*args, **kwargs)


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


def export_model(model, out, stored, expected_accuracy, *, crop_to_aspect_ratio=False):
    """Writes `out/model.keras`, `out/saved_model/` and `out/model.json`, and checks them.

    Each export is reloaded and predicts the whole test split, fed as the
    source stores it (`stored.x_test`); its accuracy must equal
    `expected_accuracy`, the leaderboard's figure for `model`. Without
    TensorFlow (say, on a JAX-only GPU machine) only `model.keras` is
    written; `archsearch export` on a machine with TensorFlow adds the
    SavedModel later.

    Args:
        model: a trained model from `archsearch.model.builder.build_model()`.
        out: the folder to write (replaced if present).
        stored: the data as the source stores it, from `stored_dataset()`.
        expected_accuracy: the test accuracy the leaderboard records for `model`.
        crop_to_aspect_ratio: as for `inference_model()`: the data's option.

    Returns:
        The check's figures: `test_images`, `expected_test_accuracy`, and
        the test accuracy of each reloaded export.

    Raises:
        ArchsearchError: if a reloaded export's test accuracy differs.
    """
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tf = _tensorflow()  # before Keras's saving, which imports it too
    inference = inference_model(model, stored.shape[-1], crop_to_aspect_ratio)
    inference.save(staging / MODEL_KERAS)
    reloaded = keras.saving.load_model(staging / MODEL_KERAS)
    accuracies = {MODEL_KERAS: _accuracy(lambda x: reloaded.predict_on_batch(x), stored)}
    if tf is not None:
        _export_saved_model(inference, staging / "saved_model", stored.class_names)
        serve = tf.saved_model.load(str(staging / "saved_model")).signatures["serve"]
        accuracies["saved_model"] = _accuracy(lambda x: serve(image=tf.constant(x))["probabilities"].numpy(), stored)
    check = {
        "test_images": len(stored.y_test),
        "expected_test_accuracy": expected_accuracy,
        **{f"{name.replace('.', '_')}_test_accuracy": accuracy for name, accuracy in accuracies.items()},
    }
    for name, accuracy in accuracies.items():
        if abs(accuracy - expected_accuracy) * len(stored.y_test) >= 0.5:  # not the same number of images right
            raise ArchsearchError(
                f"export check failed: the reloaded {name} classifies {accuracy:.4%} of the {len(stored.y_test)} test "
                f"images right, fed as the source stores them; the leaderboard says {expected_accuracy:.4%}"
            )
    (staging / MODEL_JSON).write_text(json.dumps(_contract(inference, stored, check), indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return check


def export_retrained(run_dir, rank, out, *, data_dir=None, dataset=None):
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
    model = keras.saving.load_model(saved)
    data = run_dir.data()
    if dataset is None:
        dataset = load_data(data, data_dir=data_dir)
    stored = stored_dataset(data, dataset, data_dir=data_dir)
    expected = read_json(run_dir.retrained_result(trial_id, 0))["accuracy"]
    check = export_model(model, out, stored, expected, crop_to_aspect_ratio=data.crop_to_aspect_ratio)
    return trial_id, check, stored


def _accuracy(predict, stored):
    predicted = np.concatenate(
        [
            np.argmax(predict(stored.x_test[i : i + CHECK_BATCH]), axis=1)
            for i in range(0, len(stored.x_test), CHECK_BATCH)
        ]
    )
    return float(np.mean(predicted == stored.y_test))


def _contract(inference, stored, check):
    """The content of `model.json`: what a caller needs to feed the model and read its outputs."""
    adapter = inference.get_layer("source_to_training")
    height, width, channels = adapter.output_shape[1:]
    window = (
        " from their centred window of that aspect ratio" if adapter.get_layer("resize").crop_to_aspect_ratio else ""
    )
    source_channels = stored.shape[-1]
    batch = f"uint8 [batch, height, width, {source_channels}]"
    return {
        "class_names": list(stored.class_names),
        "input": {
            "dtype": "uint8",
            "channels": source_channels,
            "color": "RGB" if source_channels == 3 else "gray",
            "size": [height, width],
            "conversion": ("to ITU-R 601 luma inside the model; " if (source_channels, channels) == (3, 1) else "")
            + f"images of another size are resized to {height}x{width}{window} inside the model "
            "(bilinear, antialiased)",
            "source": stored.source,
        },
        "signatures": {
            "serve": {"image": batch},
            "serve_bytes": {"image_bytes": "string [batch]: encoded JPEG, PNG, GIF or BMP files"},
            "outputs": {
                "probabilities": f"float32 [batch, {len(stored.class_names)}]",
                "class_id": "int64 [batch]",
                "class_name": "string [batch]",
            },
        },
        MODEL_KERAS: f"{batch} in, float32 probabilities [batch, {len(stored.class_names)}] out",
        "check": check,
    }


def export_summary(out, check):
    """One line on what `export_model()` wrote to `out` and what its check found, for the user."""
    written = (
        "model.keras and saved_model/"
        if (Path(out) / "saved_model").exists()
        else ("model.keras only (a SavedModel needs TensorFlow: run `archsearch export` where it is installed)")
    )
    return (
        f"{written} in {out}; reloaded, they classify {check['expected_test_accuracy']:.2%} of the "
        f"{check['test_images']:,} test images right, as the leaderboard says"
    )


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


def _export_saved_model(inference, path, class_names):
    """Writes the SavedModel: signatures `serve` (uint8 images) and `serve_bytes` (encoded files)."""
    import tensorflow as tf

    source_channels = inference.input_shape[-1]
    image_spec = tf.TensorSpec((None, None, None, source_channels), tf.uint8, name="image")
    names = tf.constant(class_names)
    archive = keras.export.ExportArchive()
    archive.track(inference)
    # Keras's way to put TensorFlow ops around a model on every backend (JAX's goes through
    # jax2tf): the model alone is an endpoint, which the serving functions wrap. Explicit
    # training=False: after Keras's image preprocessing layers, a call without it runs
    # batch norm in training mode inside the traced graph.
    probabilities = archive.add_endpoint(
        "probabilities", lambda image: inference(image, training=False), input_signature=[image_spec]
    )

    def outputs(probabilities):
        class_id = tf.argmax(probabilities, axis=1)
        return {
            "probabilities": tf.cast(probabilities, tf.float32),
            "class_id": class_id,
            "class_name": tf.gather(names, class_id),
        }

    def classify_file(data):
        # One file at a time: files may differ in size until the model resizes them. JPEGs with
        # libjpeg's accurate integer DCT, as Pillow (so the data layer) decodes them, to the same pixels.
        image = tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=source_channels, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=source_channels, expand_animations=False),
        )
        return probabilities(image[None])[0]

    @tf.function(input_signature=[image_spec])
    def serve(image):
        return outputs(probabilities(image))

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        spec = tf.TensorSpec((len(class_names),), tf.float32)
        return outputs(tf.map_fn(classify_file, image_bytes, fn_output_signature=spec))

    for name, function in (("serve", serve), ("serving_default", serve), ("serve_bytes", serve_bytes)):
        function.get_concrete_function()  # traced, as add_endpoint() wants
        archive.add_endpoint(name, function)
    archive.write_out(str(path), verbose=False)
