"""What archsearch sets on the Keras backend before training.

- `mixed_precision`: Keras's `mixed_bfloat16` policy (bfloat16 compute,
  float32 weights; the model's probabilities stay float32).
- On JAX, a persistent compilation cache under archsearch's cache folder:
  retraining seeds of one architecture, and a resumed search, reuse the
  compiled steps instead of compiling them again.
- On TensorFlow, its Python warnings are kept to errors: a search builds a
  new model per trial, and TensorFlow warns about "retracing" at every one.
"""

import logging

import keras

from archsearch.data import cache_folder


def configure_backend(mixed_precision=False):
    """Sets the precision policy and, on JAX, the compilation cache.

    Args:
        mixed_precision: compute in bfloat16 (for GPUs with bfloat16 units).

    Returns:
        The compilation cache folder, or `None` (not JAX, or no cache folder).

    Example:

    >>> configure_backend()  # doctest: +SKIP
    """
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16" if mixed_precision else "float32")
    if keras.backend.backend() == "tensorflow":
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if keras.backend.backend() != "jax":
        return None
    root = cache_folder()
    if root is None:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(root / "jax"))
    return root / "jax"
