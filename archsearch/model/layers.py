"""The one Keras layer archsearch adds: a random shift that compiles.

`keras.layers.RandomTranslation` (and `RandomCrop`) set `supports_jit = False`,
and one such layer makes Keras train the whole model without XLA: on the JAX
backend every training step then runs op by op. `RandomShift` does the CIFAR
recipe's pad-and-crop with gathers only, so augmentation runs inside the
compiled training step, on the device.

Importing this module (or reading `archsearch.RandomShift`) registers it, which loading a training-time
`model.keras` needs.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="archsearch")
class RandomShift(keras.layers.Layer):
    """Shifts each image by its own random offset of up to `pad` pixels, filling with zeros.

    The same as padding by `pad` pixels and cropping a random window of the
    original size, per image. Active in training only; inference passes
    images through.

    Args:
        pad: the largest shift in pixels, in each direction.
        seed: seed of the shifts (`None`: from Keras's global seed).

    Example:

    >>> import numpy as np
    >>> shift = RandomShift(4, seed=0)
    >>> images = np.ones((2, 32, 32, 3), "float32")
    >>> tuple(shift(images, training=True).shape)
    (2, 32, 32, 3)
    """

    def __init__(self, pad, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or self.pad == 0:
            return images
        pad = self.pad
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        padded = ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        offsets = keras.random.randint((batch, 2), 0, 2 * pad + 1, seed=self.seed_generator)
        rows = offsets[:, :1] + ops.arange(height)[None, :]  # (batch, height): which padded rows to keep
        cols = offsets[:, 1:] + ops.arange(width)[None, :]
        # One gather per axis; the index arrays broadcast over the other axes.
        padded = ops.take_along_axis(
            padded, ops.broadcast_to(rows[:, :, None, None], (batch, height, width + 2 * pad, images.shape[3])), axis=1
        )
        return ops.take_along_axis(
            padded, ops.broadcast_to(cols[:, None, :, None], (batch, height, width, images.shape[3])), axis=2
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "pad": self.pad, "seed": self.seed}


#: Layers that are random in training and the identity at inference: an export, and a transferred base,
#: pass images through them (archsearch's augmentation, and Keras's own a source model may hold).
TRAINING_ONLY_LAYERS = (
    RandomShift,
    keras.layers.RandomFlip,
    keras.layers.RandomTranslation,
    keras.layers.RandomCrop,
    keras.layers.RandomRotation,
    keras.layers.RandomZoom,
    keras.layers.RandomContrast,
    keras.layers.RandomBrightness,
)


def inference_call(layer, *args, **kwargs):
    """Calls a layer of a graph rebuilt by `keras.models.clone_model(call_function=...)`, training-only ones aside.

    A layer of `TRAINING_ONLY_LAYERS` passes its input through; every other is called as it was.
    """
    return args[0] if isinstance(layer, TRAINING_ONLY_LAYERS) else layer(*args, **kwargs)
