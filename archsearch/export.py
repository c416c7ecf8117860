"""Export: the Keras model and a TensorFlow SavedModel that serves raw uint8 images.

The SavedModel needs TensorFlow (Keras exports JAX models through jax2tf,
which needs it too); without it only `model.keras` is written.
"""

import shutil
from pathlib import Path

import keras
import numpy as np

from archsearch.errors import ArchsearchError

TOLERANCE = 1e-4  # largest difference in probability between the two models


def export_model(model, out, check_images):
    """Saves `model` as `out/model.keras` and `out/saved_model/`, and checks the export.

    Without TensorFlow (say, on a JAX-only GPU machine) only `model.keras` is
    written; `archsearch export` on a machine with TensorFlow adds the
    SavedModel later.

    The SavedModel's `serve` signature takes uint8 images of the data's native
    shape (any batch size) and returns class probabilities.

    Args:
        model: a trained model from `archsearch.builder.build_model()`.
        out: the folder to write (replaced if present).
        check_images: a few uint8 images to compare the reloaded models on.

    Returns:
        The largest difference in probabilities between the reloaded exports
        and `model`.

    Raises:
        ArchsearchError: if a reloaded export does not predict what `model` does.
    """
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    expected = model.predict(check_images, verbose=0)
    model.save(staging / "model.keras")
    worst = _difference(keras.saving.load_model(staging / "model.keras").predict(check_images, verbose=0), expected, "model.keras")
    if saved_model_supported():
        worst = max(worst, _export_saved_model(model, staging / "saved_model", check_images, expected))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return worst


def export_summary(out, difference):
    """One line on what `export_model()` wrote to `out`, for the user."""
    written = "model.keras and saved_model/" if (Path(out) / "saved_model").exists() else (
        "model.keras only (a SavedModel needs TensorFlow: run `archsearch export` where it is installed)"
    )
    return f"{written} in {out}; the reloaded exports agree within {difference:.1g}"


def saved_model_supported():
    """Whether TensorFlow can be imported here, which writing a SavedModel needs."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def _export_saved_model(model, path, images, expected):
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    # Explicit training=False: after Keras's image preprocessing layers, a call
    # without it runs batch norm in training mode inside the traced graph.
    archive.add_endpoint(
        "serve",
        lambda image: model(image, training=False),
        input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.uint8, name="image")],
    )
    archive.write_out(str(path), verbose=False)
    served = tf.saved_model.load(str(path)).signatures["serve"](image=tf.constant(images))
    return _difference(next(iter(served.values())).numpy(), expected, "saved_model")


def _difference(predicted, expected, what):
    worst = float(np.max(np.abs(predicted - expected)))
    if not worst <= TOLERANCE:
        raise ArchsearchError(f"export check failed: {what} predicts up to {worst:.2g} away from the trained model")
    return worst
