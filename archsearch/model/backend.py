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
- `devices()`: what the backend trains on, queried once per process; run.json's
  `device` (`device_description()`) and `cost_device`
  (`archsearch.model.cost.cost_device()`) are both read from it.
"""

import contextlib
import dataclasses
import functools
import logging
import platform

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


@dataclasses.dataclass(frozen=True)
class Device:
    """One device the backend may train on.

    Args:
        name: the backend's name for it, e.g. `"cuda:0"` (JAX) or
            `"/physical_device:GPU:0"` (TensorFlow).
        kind: what it is, e.g. `"NVIDIA H200"`; `""` where the backend does not say.
        accelerator: `False` for a CPU.
        memory: its memory in bytes, or `None` where the backend does not tell
            (JAX's `bytes_limit`, the share JAX may take; PyTorch's total;
            TensorFlow tells none).
    """

    name: str
    kind: str
    accelerator: bool
    memory: int = None


@functools.cache
def devices():
    """The backend's devices, queried once per process: a tuple of `Device`.

    JAX lists its CPU device too where it has no accelerator; TensorFlow and
    PyTorch list their GPUs only (empty on a CPU).

    Example:

    >>> all(isinstance(d, Device) for d in devices())
    True
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return tuple(
            Device(
                f"{d.platform}:{d.id}",
                d.device_kind,
                d.platform != "cpu",
                (d.memory_stats() or {}).get("bytes_limit") if d.platform != "cpu" else None,
            )
            for d in jax.devices()
        )
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return ()
        return tuple(
            Device(f"cuda:{i}", p.name, True, p.total_memory)
            for i, p in enumerate(map(torch.cuda.get_device_properties, range(torch.cuda.device_count())))
        )
    if backend == "tensorflow":
        import tensorflow as tf

        return tuple(
            Device(g.name, tf.config.experimental.get_device_details(g).get("device_name", ""), True)
            for g in tf.config.list_physical_devices("GPU")
        )
    return ()


def device_description():
    """What the model trains on, as run.json's `device` gives it.

    Returns:
        The backend's devices, e.g. `"cuda:0 NVIDIA H100 80GB HBM3"` (JAX) or
        `"cpu:0 cpu"` (JAX on a CPU), else `"cpu (<machine>)"`.
    """
    listed = devices()
    if listed:
        return ", ".join(f"{d.name} {d.kind}".strip() for d in listed)
    return f"cpu ({platform.processor() or platform.machine()})"
