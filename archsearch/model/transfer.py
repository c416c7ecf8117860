"""Transfer learning's Keras side: a trained source's base, loaded with its weights, and what of it trains.

A base is one nested `keras.Model` named `BASE` inside the model
`archsearch.model.builder.build_model()` makes of a transferred plan: from the
target's images (0..255, float) to the source's feature map, resized to the
source's input size where it differs. Every build loads the source again,
so each trial and each retraining starts from the source's trained weights.
Its batch norms stay frozen whatever else trains, so they run in inference
mode and keep the source's statistics, as the keras.io transfer-learning
guide has them: a frozen Keras 3 batch norm runs in inference mode, while
calling the base with `training=False` would not hold (a functional model
passes its own call's `training` down to every layer).
"""

import hashlib
from pathlib import Path

import keras
import numpy as np

from archsearch.errors import SpaceError
from archsearch.model.layers import inference_call  # and registers archsearch's layer, which its models hold
from archsearch.recipe.transfer import Base

BASE = "base"  # the transferred base's name in a model
PREPROCESS_INPUT = "preprocess_input"  # a keras.applications base's preprocessing layer, always frozen
EXPORTED = "source_to_training"  # a layer of archsearch's exported models (`archsearch.output.export`)

# Keras layers whose FLOPs `describe_base()` counts (2 x multiply-accumulates, as `plan()` counts its own).
_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.Dense)


def _application(name, weights, arguments, resolution, features):
    """A keras.applications network without its top, at R x R, cut at `features`, behind its `preprocess_input`."""
    build = getattr(keras.applications, name, None)
    if not callable(build) or name[:1].islower():
        raise SpaceError(
            f"transfer: source={name!r}: not a keras.applications network (nor a folder or a .keras file); "
            "expected a name such as 'MobileNetV2', 'ResNet50' or 'EfficientNetB0'"
        )
    try:
        network = build(include_top=False, weights=weights, input_shape=(resolution, resolution, 3), **arguments)
    except (ValueError, TypeError) as error:
        raise SpaceError(f"transfer: source={name!r}: {str(error).splitlines()[0]}") from None
    if features is not None:  # the network's own graph: its layers' outputs are its own
        network = keras.Model(network.input, _features_layer(network, features, name).output, name=network.name)
    image = keras.Input((resolution, resolution, 3), name="pixels")
    return keras.Model(image, network(_preprocess_input(name)(image)), name=f"{name}_features")


def _preprocess_input(name):
    """The application's `preprocess_input` as a frozen `Dense` over channels, in standard layers.

    Every `keras.applications` preprocessing is one affine map per pixel
    (scaling, mean and standard deviation per channel, RGB to BGR, or none),
    but a function, which a saved model cannot hold without a `Lambda` (which
    Keras refuses to load safely). So the map is read off the function on
    probe pixels, checked on random ones, and written as a 3 x 3 kernel and a
    bias: the saved model stays standard Keras.
    """
    module = getattr(keras.applications, getattr(keras.applications, name).__module__.rsplit(".", 1)[-1])
    apply = lambda pixels: keras.ops.convert_to_numpy(module.preprocess_input(pixels.copy())).reshape(-1, 3)  # noqa: E731
    probes = np.concatenate([np.zeros((1, 3)), np.eye(3)]).astype("float32").reshape(4, 1, 1, 3) * 255
    mapped = apply(probes)
    bias, kernel = mapped[0], (mapped[1:] - mapped[0]) / 255
    pixels = np.random.default_rng(0).uniform(0, 255, (16, 1, 1, 3)).astype("float32")
    if not np.allclose(pixels.reshape(-1, 3) @ kernel + bias, apply(pixels), atol=1e-3):
        raise SpaceError(f"transfer: source={name!r}: its preprocess_input is not a per-pixel affine map")
    layer = keras.layers.Dense(3, trainable=False, name=PREPROCESS_INPUT)
    layer.build((None, None, None, 3))
    layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return layer


def _keras_file(path):
    """Loads a `.keras` source; refuses an archsearch export, whose run is the source to give."""
    try:
        model = keras.saving.load_model(path, compile=False)
    except (OSError, ValueError) as error:
        raise SpaceError(f"transfer: {path}: cannot be loaded: {str(error).splitlines()[0]}") from None
    if any(layer.name == EXPORTED for layer in model.layers):
        raise SpaceError(
            f"transfer: {path} is an archsearch export (its layers convert images for serving): give its run's "
            "folder, Transfer('results/<space>/<run id>'), whose winner's trained model it was exported from"
        )
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def _features_layer(model, features, where):
    """The layer whose output the head takes: `features`, or the last whose output is a feature map."""
    if features is not None:
        names = [layer.name for layer in model.layers]
        if features not in names:
            raise SpaceError(
                f"transfer: features={features!r}: {where} has no such layer; its layers: {', '.join(names)}"
            )
        return model.get_layer(features)
    maps = [layer for layer in model.layers[1:] if len(layer.output.shape) == 4]
    if not maps:
        raise SpaceError(f"transfer: {where} has no layer whose output is a feature map (batch, H, W, C)")
    return maps[-1]


def _features_model(load, features, where):
    """The source's layers up to `features` (default: its last feature map), training-only ones passed through.

    A `.keras` source's graph is called again, layer by layer
    (`keras.models.clone_model()` reusing each layer and its weights), so
    that the output taken is the layer's own in the source, a nested model's
    too, and its augmentation is left out: the base needs none of
    archsearch's layers. A keras.applications network is cut in its own graph.
    """
    if "application" in load:
        return _application(load["application"], load["weights"], load["arguments"], load["resolution"], features)
    source = _keras_file(load["keras_file"])
    chosen, outputs = _features_layer(source, features, where).name, {}

    def call(layer, *args, **kwargs):
        output = inference_call(layer, *args, **kwargs)
        if layer.name == chosen:
            outputs[chosen] = output
        return output

    graph = keras.models.clone_model(source, clone_function=lambda layer: layer, call_function=call)
    return keras.Model(graph.input, outputs[chosen], name=f"{source.name}_features")


def base_network(base):
    """Builds a base with its source's trained weights: a `keras.Model` named `BASE`.

    Args:
        base: from `describe_base()`.

    Returns:
        A model from float images `base.input_shape` (0..255) to the
        source's feature map, every layer trainable but those that stay
        frozen (`set_trainable()`).
    """
    return _fitted(_features_model(base.load, base.features, base.name), base.input_shape)


def _fitted(features, input_shape):
    """The base: the target's images, resized to the source's input size where it differs, then `features`."""
    image = keras.Input(input_shape, name="base_image")
    pixels = image
    height, width = features.input_shape[1:3]
    if height is not None and (height, width) != tuple(input_shape[:2]):
        pixels = keras.layers.Resizing(height, width, crop_to_aspect_ratio=True, name="base_resize")(image)
    model = keras.Model(image, features(pixels), name=BASE)
    set_trainable(model, "auto")  # a source saved with frozen layers trains as the point's `transfer` says
    return model


def describe_base(load, features, input_shape, where):
    """Loads a source and describes its base fitted to the target's images.

    Args:
        load: how to load it: `{"keras_file": path}`, or `{"application":
            name, "weights": ..., "arguments": {...}, "resolution": R}`.
        features: the layer whose output the head takes, or `None` for the
            last feature map.
        input_shape: the target's images `(H, W, C)`.
        where: what error messages call the source.

    Returns:
        A `Base`.

    Raises:
        SpaceError: for a source that cannot be loaded, has no feature map,
            or takes images of other channels than the target's.
    """
    cut = _features_model(load, features, where)
    channels = cut.input_shape[-1]
    if channels != input_shape[-1]:
        advice = (
            "declare Data(grayscale=True) to match it"
            if channels == 1
            else "it needs color images: leave out Data(grayscale=True), or transfer from a network of gray images"
        )
        raise SpaceError(
            f"transfer: {where} takes images of {channels} channel(s), the data has {input_shape[-1]}: {advice}"
        )
    if len(cut.output_shape) != 4:
        raise SpaceError(
            f"transfer: features={features!r}: its output {cut.output_shape} is not a feature map (batch, H, W, C), "
            "which the new head takes"
        )
    network = _fitted(cut, input_shape)
    flattened = list(_flat_layers(network))
    return Base(
        load=load,
        features=_layer_cut_at(cut, load),
        input_shape=tuple(input_shape),
        shape=tuple(network.output_shape[1:]),
        params=network.count_params(),
        non_trainable_params=sum(int(np.prod(w.shape)) for w in network.non_trainable_weights),
        flops=sum(_flops(layer) for layer in flattened),
        activations=sum(int(np.prod(layer.output.shape[1:])) for layer in flattened),
        weight_layers=len(weight_layers(network)),
        name=cut.name.removesuffix("_features"),
        digest=_digest(load.get("keras_file") or load.get("weights")),
    )


def _layer_cut_at(cut, load):
    """The name of the layer a base ends with: in an application's own graph, or at the source's top level."""
    last = cut.layers[-1]
    return last.layers[-1].name if "application" in load else last.name


def _digest(path):
    """The sha256 of the file the trained weights come from (`None` for Keras's download of `"imagenet"`)."""
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _flat_layers(model):
    """Every layer of a model, nested models' own layers in place of them, less the inputs."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _flops(layer):
    """Forward FLOPs per image of a conv or dense layer, from its output shape (0 for the others)."""
    if not isinstance(layer, _CONVS):
        return 0
    out = layer.output.shape[1:]
    positions, channels_in = int(np.prod(out[:-1])), layer.input.shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return 2 * positions * channels_in * layer.units
    kernel = int(np.prod(layer.kernel_size))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * positions * kernel * out[-1]
    if isinstance(layer, keras.layers.SeparableConv2D):
        return 2 * positions * channels_in * layer.depth_multiplier * (kernel + out[-1])
    return 2 * positions * kernel * channels_in // layer.groups * out[-1]


def weight_layers(base):
    """The base's layers that can train, nested ones in place, input first.

    Those with weights, but batch norms and a keras.applications network's
    `preprocess_input`, which stay frozen.
    """
    return [layer for layer in _flat_layers(base) if layer.weights and not _always_frozen(layer)]


def _always_frozen(layer):
    return isinstance(layer, keras.layers.BatchNormalization) or layer.name == PREPROCESS_INPUT


def base_of(model):
    """Returns the model's transferred base, or `None` for a model of the recipe."""
    return next((layer for layer in model.layers if layer.name == BASE), None)


def set_trainable(base, layers):
    """Makes the top `layers` of the base's layers that can train (`weight_layers()`) trainable, the others frozen.

    Batch norms stay frozen, in inference mode, with the source's statistics;
    so does a keras.applications network's `preprocess_input`.

    Args:
        base: from `base_of()`.
        layers: how many, from the output down: `0` freezes the base,
            `"auto"` trains all of it.
    """
    _unfreeze(base)
    for layer in _flat_layers(base):
        if _always_frozen(layer):
            layer.trainable = False
    weighted = weight_layers(base)
    for layer in weighted[: 0 if layers == "auto" else max(0, len(weighted) - layers)]:
        layer.trainable = False


def _unfreeze(model):
    """Makes a model and every layer in it, nested models' own, trainable (Keras's setter stops at a nested model)."""
    model.trainable = True
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _unfreeze(layer)
        else:
            layer.trainable = True
