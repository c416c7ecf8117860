"""Builds and compiles the Keras model of a planned `Architecture`.

Backend-agnostic: `keras.layers` and `keras.ops` only, so the same model runs
under TensorFlow, JAX and PyTorch.
"""

import keras
import numpy as np

from archsearch.model.layers import RandomShift
from archsearch.model.schedules import learning_rate as scheduled_learning_rate
from archsearch.model.transfer import base_network
from archsearch.recipe.architecture import Architecture


def _preprocess(layer, shape_in):
    """Scales uint8 to [0, 1], then resizes the smaller side to R and center-crops R x R."""
    resolution = layer.config["resolution"]
    stack = [keras.layers.Rescaling(1 / 255, name=f"{layer.name}_scale")]
    if tuple(shape_in[:2]) != (resolution, resolution):
        stack.append(
            keras.layers.Resizing(resolution, resolution, crop_to_aspect_ratio=True, name=f"{layer.name}_resize")
        )
    return stack


# Keras's `steps_per_execution`: training steps between the host's turns at the loop (callbacks,
# and on JAX the trainer's bookkeeping of every variable). Keras's default, 1, until the GPU
# measurement (issue 17) shows whether more pays; `benchmarks/resnet9.py --steps-per-execution`
# sets it for that comparison. The updates are the same whatever its value.
STEPS_PER_EXECUTION = 1


def _augment(layer, shape_in):
    """Random shift with zero fill (pad-and-crop) and horizontal flip, per image, in training only.

    `RandomShift`, not `keras.layers.RandomTranslation`: that one cannot be
    compiled, and would make Keras train the whole model without XLA.
    """
    return [
        RandomShift(layer.config["shift"], name=f"{layer.name}_shift"),
        keras.layers.RandomFlip("horizontal", name=f"{layer.name}_flip"),
    ]


_INIT = "he_normal"  # He (MSRA) initialization, for ReLU networks


def _torch_padding(layer, kernel, stride):
    """PyTorch's `padding=kernel // 2` as a `ZeroPadding2D` before a `valid` layer, where Keras's `same` differs.

    At stride 1 an odd kernel's `same` padding is PyTorch's; at stride 2 Keras
    puts the odd pixel of padding at the bottom and right only, PyTorch on every
    side (and drops what the stride leaves over).
    """
    if layer.config["padding"] != "torch":
        return [], layer.config["padding"]
    if stride == 1 and kernel % 2 == 1:
        return [], "same"
    pad = kernel // 2
    return ([keras.layers.ZeroPadding2D(pad, name=f"{layer.name}_pad")] if pad else []), "valid"


def _conv(layer, _):
    kernel, stride = layer.config["kernel"], layer.config["stride"]
    stack, padding = _torch_padding(layer, kernel, stride)
    conv = keras.layers.Conv2D(
        layer.config["filters"],
        kernel,
        strides=stride,
        padding=padding,
        use_bias=layer.config["bias"],
        kernel_initializer=_INIT,
        name=layer.name,
    )
    return stack + [conv]


def _max_pool(layer, _):
    pool = layer.config["pool"]
    # Zeros pad as well as PyTorch's minus infinity here: every pool follows a ReLU.
    stack, padding = _torch_padding(layer, pool, 2) if pool == 3 else ([], layer.config["padding"])
    padding = "valid" if padding == "torch" else padding  # PyTorch's 2x2/2 pools have no padding
    return stack + [keras.layers.MaxPooling2D(pool, strides=2, padding=padding, name=layer.name)]


def _zero_pad_shortcut(layer, _):
    """He et al.'s option A: subsample by the stride, then append zero maps, in standard layers.

    Standard layers, not a layer of archsearch's own, so that `model.keras`
    loads without archsearch: Keras has no layer that pads channels, but
    `ZeroPadding3D` pads the last axis of a map reshaped to `(H, W, C, 1)`.
    """
    stride, (h, w, filters) = layer.config["stride"], layer.shape
    stack = [keras.layers.MaxPooling2D(1, strides=stride, name=f"{layer.name}_subsample")] if stride > 1 else []
    channels = layer.config["channels"]
    return stack + [
        keras.layers.Reshape((h, w, channels, 1), name=f"{layer.name}_maps"),
        keras.layers.ZeroPadding3D(((0, 0), (0, 0), (0, filters - channels)), name=f"{layer.name}_zeros"),
        keras.layers.Reshape((h, w, filters), name=layer.name),
    ]


_LAYERS = {
    "preprocess": _preprocess,
    "augment": _augment,
    "conv": _conv,
    # PyTorch's momentum (0.9 in Keras terms): short searches need warm moving statistics.
    "batch_norm": lambda layer, _: keras.layers.BatchNormalization(momentum=0.9, name=layer.name),
    "relu": lambda layer, _: keras.layers.ReLU(name=layer.name),
    "max_pool": _max_pool,
    "zero_pad_shortcut": _zero_pad_shortcut,
    "add": lambda layer, _: keras.layers.Add(name=layer.name),
    "global_avg_pool": lambda layer, _: keras.layers.GlobalAveragePooling2D(name=layer.name),
    "flatten": lambda layer, _: keras.layers.Flatten(name=layer.name),
    "dropout": lambda layer, _: keras.layers.Dropout(layer.config["rate"], name=layer.name),
    "dense": lambda layer, _: keras.layers.Dense(
        layer.config["units"],
        activation=layer.config["activation"],
        use_bias=layer.config["bias"],
        kernel_initializer="glorot_uniform" if layer.name == "predictions" else _INIT,
        # The probabilities stay float32 under a mixed-precision policy.
        dtype="float32" if layer.name == "predictions" else None,
        name=layer.name,
    ),
    "transferred": lambda layer, _: base_network(layer.config["base"]),
}


def build_model(architecture: Architecture):
    """Builds the Keras model of a planned architecture.

    The model takes raw uint8 images of the data's native shape and returns
    class probabilities; preprocessing (and augmentation, in training) is
    inside it. A transferred base (`archsearch.model.transfer`) is loaded
    with its source's trained weights, its batch norms frozen.

    Args:
        architecture: from `archsearch.recipe.architecture.plan()`.

    Returns:
        A functional `keras.Model`, not compiled.

    Example:

    >>> from archsearch.recipe.architecture import plan
    >>> model = build_model(plan({"width": 16}, (32, 32, 3), 10))
    >>> model.output_shape
    (None, 10)
    """
    tensors = {}
    for layer in architecture.layers:
        if layer.kind == "input":
            tensors[layer.name] = keras.Input(shape=layer.shape, dtype="uint8", name=layer.name)
            continue
        inputs = [tensors[name] for name in layer.inputs]
        made = _LAYERS[layer.kind](layer, architecture.layers[0].shape)
        if isinstance(made, list):  # preprocessing and augmentation are short stacks
            tensor = inputs[0]
            for keras_layer in made:
                tensor = keras_layer(tensor)
            tensors[layer.name] = tensor
        else:
            tensors[layer.name] = made(inputs if layer.kind == "add" else inputs[0])
    point = architecture.point
    bases = [layer.config["base"] for layer in architecture.layers if layer.kind == "transferred"]
    if bases:
        return keras.Model(tensors["image"], tensors["predictions"], name=f"{bases[0].name}_transferred")
    blocks = point["blocks_per_stage"]
    blocks = "-".join(map(str, blocks)) if isinstance(blocks, tuple) else f"{point['stages']}x{blocks}"
    name = f"{point['family']}_{blocks}"
    return keras.Model(tensors["image"], tensors["predictions"], name=name)


def mirrored(images, name="mirror"):
    """Mirrors images left to right, in standard layers, exactly.

    Keras has no layer that flips deterministically (`RandomFlip` draws), and
    a layer of archsearch's own would keep an exported `model.keras` from
    loading without archsearch. So the width axis is moved last and
    multiplied by the reversed identity, in float32: each output pixel is one
    input pixel times 1, plus zeros, which stays exact for pixel values (at
    most 255, exact in TF32 and bfloat16 too, where a GPU multiplies in them).

    Args:
        images: a symbolic tensor of images `(batch, height, width, channels)`.
        name: the prefix of the layers' names.

    Returns:
        The mirrored images, float32.
    """
    width = images.shape[2]
    pixels = keras.layers.Rescaling(1.0, dtype="float32", name=f"{name}_float")(images)
    columns = keras.layers.Permute((1, 3, 2), name=f"{name}_columns_last")(pixels)
    reverse = keras.layers.Dense(width, use_bias=False, trainable=False, dtype="float32", name=f"{name}_reverse")
    flipped = reverse(columns)
    reverse.set_weights([np.eye(width, dtype="float32")[::-1]])
    return keras.layers.Permute((1, 3, 2), name=f"{name}_columns_back")(flipped)


def with_mirror_mean(model):
    """Returns a model whose probabilities are the mean of `model`'s on each image and on its mirror (`tta`).

    It shares `model`'s layers and weights; called in inference, as every
    scoring is, its training-only augmentation passes images through.

    Args:
        model: a model from `build_model()` (or one that takes the same images).

    Returns:
        A `keras.Model` with the same input and output shapes.

    Example:

    >>> from archsearch.recipe.architecture import plan
    >>> model = build_model(plan({"width": 8}, (8, 8, 1), 3))
    >>> with_mirror_mean(model).output_shape
    (None, 3)
    """
    image = keras.Input(model.input_shape[1:], dtype=model.input.dtype, name="image")
    mean = keras.layers.Average(dtype="float32", name="mirror_mean")([model(image), model(mirrored(image))])
    return keras.Model(image, mean, name=f"{model.name}_tta")


def scoring_model(model, point):
    """Returns the model a point's trained model is scored with: itself, or with `tta` its mirror mean."""
    return with_mirror_mean(model) if point["tta"] else model


def make_optimizer(point, steps):
    """Returns the optimizer of a point, with its learning-rate schedule over `steps` updates."""
    learning_rate = scheduled_learning_rate(point, steps)
    decay = point["weight_decay"] or None
    if point["optimizer"] == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if point["optimizer"] == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=point["weight_decay"])
    return keras.optimizers.Adam(learning_rate, weight_decay=decay)


def loss(point):
    """Returns a point's loss: the cross-entropy, on integer labels, or with `label_smoothing` on one-hot ones.

    Keras's sparse cross-entropy has no label smoothing; its categorical one
    smooths one-hot targets to `(1 - s) * one_hot + s / classes`, so a point
    that smooths trains on one-hot labels (`archsearch.model.training.train()`
    makes them).
    """
    if point["label_smoothing"]:
        return keras.losses.CategoricalCrossentropy(label_smoothing=point["label_smoothing"])
    return "sparse_categorical_crossentropy"


def compile_model(model, point, steps):
    """Compiles `model` for training.

    Args:
        model: from `build_model()`.
        point: the architecture's point (its training knobs are used).
        steps: total optimizer updates of the training to come (for the schedule).

    Returns:
        The same model, compiled with accuracy as its metric: on integer
        labels, or on one-hot ones where the point smooths them (`loss()`).
    """
    model.compile(
        optimizer=make_optimizer(point, steps),
        loss=loss(point),
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model
