"""A concrete point of a space, planned layer by layer before anything is built.

`plan()` turns a point (a dict from dimension name to value) into an
`Architecture`: the list of layers the builder will create, each with its
output shape, parameter count and forward FLOPs. Every impossible combination
is rejected here, with the field at fault, so that no training starts on it.

FLOPs are counted as 2 x multiply-accumulates of the conv and dense layers, per
image; batch norm, ReLU, pooling and additions are left out (under 1% here).
"""

import dataclasses
import math

from archsearch.errors import InfeasibleArchitecture, SpaceError
from archsearch.recipe import dimensions

#: `stages="auto"` stacks stages until the feature map is smaller than this.
AUTO_STOP = 7


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a planned architecture.

    Args:
        name: the Keras layer name.
        kind: what the builder creates: `input`, `preprocess`, `augment`,
            `conv`, `batch_norm`, `relu`, `max_pool`, `add`,
            `global_avg_pool`, `flatten`, `dropout` or `dense`.
        inputs: names of the layers feeding this one.
        shape: output shape per image, `(H, W, C)` or `(units,)`.
        params: number of weights, trainable or not (as `count_params()`).
        flops: forward FLOPs per image.
        config: what the builder needs besides, e.g. `filters`, `kernel`.
    """

    name: str
    kind: str
    inputs: tuple
    shape: tuple
    params: int = 0
    flops: int = 0
    config: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A planned network: the point it comes from and its layers.

    Args:
        point: every dimension's value, with `stages` resolved to an int.
        input_shape: the raw image shape `(H, W, C)` the model takes.
        num_classes: number of output classes.
        layers: the layers, in an order where inputs come first.
    """

    point: dict
    input_shape: tuple
    num_classes: int
    layers: tuple

    @property
    def params(self):
        """Total weights, as Keras's `count_params()` counts them."""
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self):
        """Forward FLOPs per image (2 x multiply-accumulates of conv and dense layers)."""
        return sum(layer.flops for layer in self.layers)

    def summary(self):
        """Returns the layer table: a list of dicts with `layer`, `kind`, `output_shape`, `params`, `flops`."""
        return [
            {
                "layer": layer.name,
                "kind": layer.kind,
                "output_shape": layer.shape,
                "params": layer.params,
                "flops": layer.flops,
            }
            for layer in self.layers
        ]


class _Planner:
    """Appends layers, working out shapes, parameters and FLOPs as it goes."""

    def __init__(self, input_shape):
        self.layers = [Layer("image", "input", (), tuple(input_shape))]
        self.shapes = {"image": tuple(input_shape)}

    @property
    def last(self):
        return self.layers[-1].name

    @property
    def shape(self):
        return self.layers[-1].shape

    def add(self, name, kind, inputs=None, **config):
        inputs = tuple(inputs or (self.last,))
        shape_in = self.shapes[inputs[0]]
        shape, params, flops = _SHAPE_RULES[kind](shape_in, **config)
        self.layers.append(Layer(name, kind, inputs, shape, params, flops, config))
        self.shapes[name] = shape
        return name

    def conv_bn_relu(self, name, filters, kernel, stride, batch_norm):
        self.add(name, "conv", filters=filters, kernel=kernel, stride=stride, bias=not batch_norm)
        if batch_norm:
            self.add(f"{name}_bn", "batch_norm")
        return self.add(f"{name}_relu", "relu")


def _conv(shape, filters, kernel, stride, bias):
    h, w, c = shape
    h, w = math.ceil(h / stride), math.ceil(w / stride)
    macs = kernel * kernel * c * filters * h * w
    return (h, w, filters), kernel * kernel * c * filters + (filters if bias else 0), 2 * macs


def _dense(shape, units, activation=None, bias=True):
    (n,) = shape
    return (units,), n * units + (units if bias else 0), 2 * n * units


_SHAPE_RULES = {
    "preprocess": lambda s, resolution: ((resolution, resolution, s[2]), 0, 0),
    "augment": lambda s, shift: (s, 0, 0),
    "conv": _conv,
    "batch_norm": lambda s: (s, 4 * s[-1], 0),  # gamma, beta, moving mean, moving variance
    "relu": lambda s: (s, 0, 0),
    "max_pool": lambda s: ((math.ceil(s[0] / 2), math.ceil(s[1] / 2), s[2]), 0, 0),
    "add": lambda s: (s, 0, 0),
    "global_avg_pool": lambda s: ((s[2],), 0, 0),
    "flatten": lambda s: ((math.prod(s),), 0, 0),
    "dropout": lambda s, rate: (s, 0, 0),
    "dense": _dense,
}


def stage_widths(point, stages):
    """Returns the feature maps of each stage: `min(width * growth**s, max_width)`."""
    return [min(round(point["width"] * point["growth"] ** s), point["max_width"]) for s in range(stages)]


def resolve_stages(point):
    """Returns the number of stages, resolving `"auto"`, or raises if R cannot be halved that often.

    Every stage ends by halving the map (rounding up); `"auto"` stacks stages
    until the map is smaller than 7 x 7, and at least one.
    """
    size = point["resolution"]
    if point["stem"] == "conv7":
        size = math.ceil(math.ceil(size / 2) / 2)
    halvings = 0  # how often `size` can still be halved (a 1 x 1 map cannot)
    sizes = [size]
    while sizes[-1] > 1:
        sizes.append(math.ceil(sizes[-1] / 2))
        halvings += 1
    if point["stages"] == "auto":
        if halvings == 0:
            raise InfeasibleArchitecture("resolution", point["resolution"], "too small for even one stage")
        return max(1, next(i for i, s in enumerate(sizes) if s < AUTO_STOP))
    if point["stages"] > halvings:
        stem = " after the conv7 stem" if point["stem"] == "conv7" else ""
        raise InfeasibleArchitecture(
            "stages",
            point["stages"],
            f"resolution {point['resolution']}{stem} ({size} x {size}) can be halved at most {halvings} times",
        )
    return point["stages"]


def _check_combinations(point):
    if point["bottleneck"] and point["family"] != "resnet":
        raise InfeasibleArchitecture("bottleneck", True, "bottleneck blocks exist only for family='resnet'")
    if point["width"] > point["max_width"]:
        raise InfeasibleArchitecture("width", point["width"], f"above max_width={point['max_width']}")
    if point["bottleneck"] and point["width"] < 4:
        raise InfeasibleArchitecture(
            "width", point["width"], "bottleneck blocks reduce to width/4, so width must be >= 4"
        )


def plan(point, input_shape, num_classes):
    """Plans the network for one point of a space.

    Args:
        point: a dict from dimension name to value; missing dimensions take
            their defaults.
        input_shape: the raw image shape `(H, W, C)`, e.g. `(32, 32, 3)`.
        num_classes: number of classes, at least 2.

    Returns:
        An `Architecture`.

    Raises:
        InfeasibleArchitecture: naming the field and value at fault.

    Example:

    >>> arch = plan({"family": "vgg", "width": 16, "stages": 2}, (32, 32, 3), 10)
    >>> arch.layers[-1].shape
    (10,)
    """
    point = {**dimensions.defaults(), **point}
    for name, value in point.items():
        if name not in dimensions.BY_NAME:
            raise InfeasibleArchitecture(name, value, "not a dimension of the recipe")
        dimension = dimensions.BY_NAME[name]
        try:
            point[name] = dimension.check(value)
        except SpaceError:
            raise InfeasibleArchitecture(name, value, f"expected {dimension.expected()}") from None
    if num_classes < 2:
        raise InfeasibleArchitecture("num_classes", num_classes, "a classifier needs at least 2 classes")
    _check_combinations(point)
    point["stages"] = resolve_stages(point)

    net = _Planner(input_shape)
    bn = point["batch_norm"]
    net.add("preprocess", "preprocess", resolution=point["resolution"])
    if point["augment"]:
        net.add("augment", "augment", shift=max(1, round(point["resolution"] / 8)))
    if point["stem"] == "conv7":
        net.conv_bn_relu("stem_conv", point["width"], 7, 2, bn)
        net.add("stem_pool", "max_pool")
    for s, width in enumerate(stage_widths(point, point["stages"]), start=1):
        for b in range(1, point["blocks_per_stage"] + 1):
            if point["family"] == "vgg":
                net.conv_bn_relu(f"stage{s}_conv{b}", width, 3, 1, bn)
            else:
                _residual_block(net, f"stage{s}_block{b}", width, point["bottleneck"], bn)
        if point["downsample"] == "maxpool":
            net.add(f"stage{s}_pool", "max_pool")
        else:
            net.conv_bn_relu(f"stage{s}_down", width, 3, 2, bn)
    if point["head"] == "gap":
        net.add("head_pool", "global_avg_pool")
    else:
        net.add("head_flatten", "flatten")
        # Batch norm here too: without it, most hidden units die in the first steps.
        net.add("head_hidden", "dense", units=point["head_units"], activation=None if bn else "relu", bias=not bn)
        if bn:
            net.add("head_hidden_bn", "batch_norm")
            net.add("head_hidden_relu", "relu")
    if point["dropout"] > 0:
        net.add("head_dropout", "dropout", rate=point["dropout"])
    net.add("predictions", "dense", units=num_classes, activation="softmax", bias=True)
    return Architecture(point, tuple(input_shape), num_classes, tuple(net.layers))


def _residual_block(net, name, width, bottleneck, bn):
    """Adds one residual block; a 1x1 projection shortcut where the width changes."""
    block_input = net.last
    if bottleneck:
        net.conv_bn_relu(f"{name}_reduce", width // 4, 1, 1, bn)
        net.conv_bn_relu(f"{name}_conv", width // 4, 3, 1, bn)
        net.add(f"{name}_expand", "conv", filters=width, kernel=1, stride=1, bias=not bn)
    else:
        net.conv_bn_relu(f"{name}_conv1", width, 3, 1, bn)
        net.add(f"{name}_conv2", "conv", filters=width, kernel=3, stride=1, bias=not bn)
    if bn:
        net.add(f"{name}_bn", "batch_norm")
    main = net.last
    shortcut = block_input
    if net.shapes[block_input][-1] != width:
        shortcut = net.add(
            f"{name}_shortcut", "conv", inputs=[block_input], filters=width, kernel=1, stride=1, bias=not bn
        )
        if bn:
            shortcut = net.add(f"{name}_shortcut_bn", "batch_norm")
    net.add(f"{name}_add", "add", inputs=[main, shortcut])
    net.add(f"{name}_out", "relu")


def check_constraints(architecture, max_params=None, max_flops=None):
    """Raises `InfeasibleArchitecture` if the architecture breaks a budget.

    Args:
        architecture: a planned `Architecture`.
        max_params: largest allowed parameter count, or `None`.
        max_flops: largest allowed forward FLOPs per image, or `None`.
    """
    if max_params is not None and architecture.params > max_params:
        raise InfeasibleArchitecture(
            "max_params", max_params, f"the architecture has {architecture.params:,} parameters", architecture
        )
    if max_flops is not None and architecture.flops > max_flops:
        raise InfeasibleArchitecture(
            "max_flops", max_flops, f"the architecture needs {architecture.flops:,} FLOPs per image", architecture
        )
