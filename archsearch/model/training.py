"""Training and prediction in batches of one shape, so that each step compiles once.

Under XLA (JAX, or TensorFlow on a GPU) a batch of a new shape compiles the
step again: Keras's last, partial batch of an epoch costs a second
compilation of the training step, and another of the prediction step. So
training leaves out the remainder of each freshly shuffled epoch (each image
is still seen, in other epochs), and prediction pads its last batch.
"""

import time

import keras
import numpy as np

from archsearch.model.builder import compile_model
from archsearch.model.transfer import base_of, set_trainable

PREDICT_BATCH = 512
BATCH_BYTES = 32 << 20  # the most uint8 images of one prediction batch hold: large images come fewer at a time


def prediction_batch(images, most=PREDICT_BATCH):
    """Images per prediction batch: `most`, or fewer where that many large images would exceed `BATCH_BYTES`.

    Example:

    >>> import numpy as np
    >>> prediction_batch(np.zeros((10, 32, 32, 3), "uint8")), prediction_batch(np.zeros((10, 512, 512, 3), "uint8"))
    (512, 42)
    """
    return max(1, min(most, BATCH_BYTES // max(1, int(np.prod(images.shape[1:])))))


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled full batches of `(x, y)`: a new order every epoch, the remainder left out.

    Args:
        x: images.
        y: integer labels.
        batch_size: images per batch (at most `len(x)`).
        seed: seeds the order; `None` draws it from NumPy's global generator,
            which `archsearch.model.backend.set_random_seed()` seeds.
        num_classes: where given, the labels come out one-hot, float32, of
            that many classes (what a smoothed loss takes).

    Example:

    >>> import numpy as np
    >>> batches = TrainingBatches(np.zeros((10, 8, 8, 1)), np.zeros(10), batch_size=4)
    >>> len(batches), batches[0][0].shape
    (2, (4, 8, 8, 1))
    """

    def __init__(self, x, y, batch_size, seed=None, num_classes=None):
        super().__init__()
        self.x, self.y = x, y
        self.one_hot = None if num_classes is None else np.eye(num_classes, dtype="float32")
        self.batch_size = min(batch_size, len(x))
        self.rng = np.random.default_rng(np.random.randint(2**31) if seed is None else seed)
        self.order = self.rng.permutation(len(x))

    def __len__(self):
        return len(self.x) // self.batch_size

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        labels = self.y[rows]
        return self.x[rows], labels if self.one_hot is None else self.one_hot[labels]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))


def train(model, point, x, y, epochs, *, initial_epoch=0, callbacks=()):
    """Compiles `model` with the point's optimizer and trains it on full shuffled batches.

    A model with a transferred base (`archsearch.model.transfer`) trains as
    the point's `transfer` says: `fine_tune`, every layer; `frozen`, the new
    head alone; `two_phase`, the head alone for `head_fraction` of the epochs,
    then, recompiled with a fresh optimizer at `fine_tune_learning_rate` (its
    schedule and warmup over the second phase's steps), with the base's top
    `unfreeze_layers` layers too.

    Args:
        model: from `archsearch.model.builder.build_model()`.
        point: the architecture's point (`batch_size`, optimizer, schedule...).
        x: training images.
        y: training labels.
        epochs: the epoch to train up to.
        initial_epoch: the epoch to start from (Hyperband continues trials
            from their weights, with a fresh optimizer, as Keras Tuner's
            checkpoints hold no optimizer state: the schedule, its warmup
            included, runs again over the epochs from `initial_epoch` to
            `epochs`, and so do `two_phase`'s two phases).
        callbacks: Keras callbacks.

    Returns:
        The training time in seconds.
    """
    num_classes = model.output_shape[-1] if point["label_smoothing"] else None  # one-hot labels to smooth
    batches = TrainingBatches(x, y, point["batch_size"], num_classes=num_classes)
    start = time.perf_counter()
    for phase_point, (first, last), unfrozen in _phases(model, point, initial_epoch, epochs):
        if unfrozen is not None:
            set_trainable(base_of(model), unfrozen)
        compile_model(model, phase_point, len(batches) * (last - first))
        model.fit(batches, epochs=last, initial_epoch=first, callbacks=list(callbacks), verbose=0)
    return time.perf_counter() - start


def _phases(model, point, initial_epoch, epochs):
    """Yields each phase of a training: its point, its `(first, last)` epochs, and its unfrozen layers.

    The unfrozen layers are `None` for a model of the recipe (no base), `0`
    for a frozen base, or a count (`"auto"`: all) of the base's layers with
    weights, from the top.
    """
    mode = point["transfer"] if base_of(model) is not None else None
    if mode is None or mode == "fine_tune":
        yield point, (initial_epoch, epochs), None if mode is None else "auto"
        return
    if mode == "frozen" or epochs - initial_epoch < 2:
        yield point, (initial_epoch, epochs), 0
        return
    head = initial_epoch + min(
        epochs - initial_epoch - 1, max(1, round(point["head_fraction"] * (epochs - initial_epoch)))
    )
    yield point, (initial_epoch, head), 0
    yield {**point, "learning_rate": point["fine_tune_learning_rate"]}, (head, epochs), point["unfreeze_layers"]


class PredictionBatches(keras.utils.PyDataset):
    """Images in order, in batches of one size: the last one padded with zeros.

    Read a batch at a time, so that images on disk
    (`archsearch.data.images.DiskImages`) are never all in memory.

    Args:
        images: images, an array or `DiskImages`.
        batch_size: images per batch (at most `len(images)`).
    """

    def __init__(self, images, batch_size):
        super().__init__()
        self.images, self.batch_size = images, min(batch_size, len(images))

    def __len__(self):
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index):
        batch = self.images[index * self.batch_size : (index + 1) * self.batch_size]
        missing = self.batch_size - len(batch)
        return np.concatenate([batch, np.zeros((missing, *batch.shape[1:]), batch.dtype)]) if missing else batch


def predict_probabilities(model, images, batch_size=None):
    """`model.predict()` in batches of one size (the last padded), so prediction compiles once.

    Args:
        model: a Keras model.
        images: an array or `DiskImages`.
        batch_size: images per batch (default: `prediction_batch()`).
    """
    batches = PredictionBatches(images, batch_size or prediction_batch(images))
    return model.predict(batches, verbose=0)[: len(images)]


def predict_classes(model, images):
    """Returns the most probable class of each image.

    A trained model is scored through `archsearch.model.builder.scoring_model()`,
    which adds its point's test-time augmentation.
    """
    return np.argmax(predict_probabilities(model, images), axis=1)
