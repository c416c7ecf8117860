"""What archsearch sets on the Keras backend before training.

- `mixed_precision`: Keras's `mixed_bfloat16` policy (bfloat16 compute,
  float32 weights; the model's probabilities stay float32).
- On JAX, a persistent compilation cache under archsearch's cache folder:
  retraining seeds of one architecture, and a resumed search, reuse the
  compiled steps instead of compiling them again.
- On TensorFlow, its Python warnings are kept to errors: a search builds a
  new model per trial, and TensorFlow warns about "retracing" at every one.
- `set_random_seed` and `keras_without_tensorflow`: seeding a trial and
  saving a retrained model import no TensorFlow on the other backends.
"""

import contextlib
import logging

import keras

from archsearch.compat.keras import without_tensorflow
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


@contextlib.contextmanager
def keras_without_tensorflow():
    """Within it, Keras on JAX or PyTorch treats TensorFlow as not installed.

    Keras imports TensorFlow wherever it is installed, on any backend, to seed
    it (`keras.utils.set_random_seed`, for `tf.data` pipelines) and to
    recognise its shapes when saving a `.keras` file: seconds of start-up in
    a JAX run, and on a GPU a second framework beside JAX. archsearch has no
    TensorFlow objects there to seed or save, so Keras's shared handle on the
    module reads "not available" for the duration; nothing else changes.

    Example:

    >>> with keras_without_tensorflow():
    ...     set_random_seed(7)
    """
    if keras.backend.backend() == "tensorflow":
        yield
        return
    # Private to Keras (archsearch.compat.keras): should a later Keras rename it, the run goes on
    # (importing TensorFlow), and tests/test_backends.py says so.
    with without_tensorflow():
        yield


def set_random_seed(seed):
    """Seeds Python, NumPy and Keras with Keras's own function, importing no TensorFlow on JAX or PyTorch.

    Args:
        seed: an integer.

    Example:

    >>> set_random_seed(7)
    """
    with keras_without_tensorflow():
        keras.utils.set_random_seed(seed)
