"""Keras's private names that archsearch uses, in one place.

Written against Keras 3.6 to 3.15 (`PINNED`, as in pyproject.toml);
`tests/test_compat.py` checks each touch point and fails when Keras changes
under one. Imported only by modules that already import Keras.

- `async_safe`: archsearch's callbacks set this class attribute, which
  Keras's `CallbackList` reads (undocumented, since Keras 3.6): when every
  callback with batch-end hooks has it, Keras runs those hooks on threads of
  its own, on backends that allow it (JAX, PyTorch, NumPy), and the training
  loop goes on queueing steps instead of waiting for each step's numbers.
- `without_tensorflow()`: see there.
"""

import contextlib
from unittest import mock

PINNED = ("3.6", "4")  # the versions this module was written against: at least the first, under the second


def without_tensorflow():
    """A context in which Keras's shared handle on TensorFlow reads "not available".

    Keras imports TensorFlow, where installed, on any backend, to seed it
    (`keras.utils.set_random_seed`) and to recognise its shapes when saving:
    seconds of start-up, and on a GPU a second framework. The handle is
    `keras.src.utils.module_utils.tensorflow`, whose `available` reads its
    `_available`. Should a later Keras rename either, this context changes
    nothing (TensorFlow is then imported, and the run goes on).

    Written against Keras 3.6-3.15.
    """
    from keras.src.utils import module_utils

    handle = getattr(module_utils, "tensorflow", None)
    if handle is None:
        return contextlib.nullcontext()
    return mock.patch.object(handle, "_available", False, create=True)
