"""A concrete point of a space, planned layer by layer before anything is built.

`plan()` turns a point (a dict from dimension name to value) into an
`Architecture`: the list of layers the builder will create, each with its
output shape, parameter count and forward FLOPs. Every impossible combination
is rejected here, with the field at fault, so that no training starts on it.

FLOPs are counted as 2 x multiply-accumulates of the conv and dense layers, per
image; batch norm, ReLU, pooling and additions are left out (under 1% here).

`Architecture.memory_estimate()` estimates a training step's peak memory from
the plan alone, so that `Search(max_memory=...)` refuses a point before its
model is built; `benchmarks/memory_estimate.py` checks it against measured peaks.
"""

import dataclasses
import math

from archsearch.errors import InfeasibleArchitecture, SpaceError
from archsearch.recipe import dimensions

#: `stages="auto"` stacks stages until the feature map is smaller than this.
AUTO_STOP = 7

WEIGHT_BYTES = 4  # weights, their gradients and the optimizer's slots are float32, mixed precision or not
#: Slots the optimizer keeps per trainable weight: Adam's (and AdamW's) two moments, SGD's momentum.
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of a planned architecture.

    Args:
        name: the Keras layer name.
        kind: what the builder creates: `input`, `preprocess`, `augment`,
            `conv`, `batch_norm`, `relu`, `max_pool`, `zero_pad_shortcut`,
            `add`, `global_avg_pool`, `flatten`, `dropout` or `dense`; or
            `transferred`, a trained source's base (`config["base"]`, an
            `archsearch.recipe.transfer.Base`).
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
    def trainable_params(self):
        """Trainable weights: all but batch norm's moving means and variances (a transferred base's too)."""
        return sum(layer.params - _non_trainable(layer) for layer in self.layers)

    @property
    def flops(self):
        """Forward FLOPs per image (2 x multiply-accumulates of conv and dense layers)."""
        return sum(layer.flops for layer in self.layers)

    def memory_estimate(self, batch_size=None, activation_bytes=4):
        """Estimates the peak memory of one training step, in bytes, from the plan alone.

        The sum of: the weights (`params` x 4 bytes); their gradients and the
        optimizer's slots (`trainable_params` x 4 bytes, x 1 for the gradient
        and x `OPTIMIZER_SLOTS[optimizer]`: 2 for Adam and AdamW, 1 for SGD's
        momentum); and the activations the backward pass keeps, `batch_size` x
        their per-image size x `activation_bytes`: the tensor that feeds the
        first layer with weights (a conv's weight gradient needs its input:
        the preprocessed, or augmented, image) and the output of every planned
        layer from that one on. What comes before it is not kept, since no
        gradient flows there: the raw uint8 image, and the preprocessed one
        where augmentation follows. What the framework itself holds (its code,
        compiled steps, workspace, the data) is left out.

        Args:
            batch_size: images per step; `None` takes the point's `batch_size`.
            activation_bytes: bytes per activation: 4 for float32, 2 under
                mixed precision (bfloat16).

        Returns:
            The estimate in bytes, an int.

        Example:

        >>> arch = plan({"width": 4, "stages": 1, "batch_norm": False}, (8, 8, 1), 10)
        >>> arch.memory_estimate(batch_size=1) == 4 * arch.params * 4 + 4 * sum(
        ...     math.prod(layer.shape) for layer in arch.layers[1:])  # all but the uint8 image
        True
        """
        batch_size = self.point["batch_size"] if batch_size is None else batch_size
        slots = OPTIMIZER_SLOTS[self.point["optimizer"]]
        weights = WEIGHT_BYTES * (self.params + (1 + slots) * self.trainable_params)
        first = next(i for i, layer in enumerate(self.layers) if layer.params)  # the first conv
        kept = self.layers[first - 1 :]  # its input, then every output from it on
        return weights + batch_size * activation_bytes * sum(_activations(layer) for layer in kept)

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


def _non_trainable(layer):
    if layer.kind == "batch_norm":
        return 2 * layer.shape[-1]
    return layer.config["base"].non_trainable_params if layer.kind == "transferred" else 0


def _activations(layer):
    """The values per image a layer outputs: a transferred base's, those of all its own layers."""
    return layer.config["base"].activations if layer.kind == "transferred" else math.prod(layer.shape)


class _Planner:
    """Appends layers, working out shapes, parameters and FLOPs as it goes.

    Args:
        input_shape: the raw image shape.
        padding: the convs' padding (`"same"`, `"valid"` or `"torch"`).
        bn: whether convs are followed by batch normalization (and have no bias).
    """

    def __init__(self, input_shape, padding, bn):
        self.layers = [Layer("image", "input", (), tuple(input_shape))]
        self.shapes = {"image": tuple(input_shape)}
        self.padding, self.bn = padding, bn

    @property
    def last(self):
        return self.layers[-1].name

    def add(self, name, kind, inputs=None, **config):
        inputs = tuple(inputs or (self.last,))
        shape_in = self.shapes[inputs[0]]
        shape, params, flops = _SHAPE_RULES[kind](shape_in, **config)
        if len(shape) == 3 and min(shape[:2]) < 1:
            raise InfeasibleArchitecture(
                "padding",
                self.padding,
                f"the map ({shape_in[0]} x {shape_in[1]}) is too small for {name}: use a larger resolution, "
                "fewer stages or blocks, or padding='same'",
            )
        self.layers.append(Layer(name, kind, inputs, shape, params, flops, config))
        self.shapes[name] = shape
        return name

    def conv(self, name, filters, kernel, stride):
        return self.add(
            name, "conv", filters=filters, kernel=kernel, stride=stride, bias=not self.bn, padding=self.padding
        )

    def conv_bn_relu(self, name, filters, kernel, stride):
        self.conv(name, filters, kernel, stride)
        if self.bn:
            self.add(f"{name}_bn", "batch_norm")
        return self.add(f"{name}_relu", "relu")


def _size(n, kernel, stride, padding):
    """A map side after a conv or pool: Keras's `same` rounds up; `valid` and `torch` (kernel // 2 each side) floor."""
    if padding == "same":
        return math.ceil(n / stride)
    pad = kernel // 2 if padding == "torch" else 0
    return (n + 2 * pad - kernel) // stride + 1


def _conv(shape, filters, kernel, stride, bias, padding):
    h, w, c = shape
    h, w = _size(h, kernel, stride, padding), _size(w, kernel, stride, padding)
    macs = kernel * kernel * c * filters * max(h, 0) * max(w, 0)
    return (h, w, filters), kernel * kernel * c * filters + (filters if bias else 0), 2 * macs


def _max_pool(shape, pool, padding):
    # PyTorch pads a pool by `padding` it is given: torchvision gives 1 to its 3x3/2 pools, none to 2x2/2 ones.
    padding = "valid" if padding == "torch" and pool == 2 else padding
    return (_size(shape[0], pool, 2, padding), _size(shape[1], pool, 2, padding), shape[2]), 0, 0


def _dense(shape, units, activation=None, bias=True):
    (n,) = shape
    return (units,), n * units + (units if bias else 0), 2 * n * units


_SHAPE_RULES = {
    "preprocess": lambda s, resolution: ((resolution, resolution, s[2]), 0, 0),
    "augment": lambda s, shift: (s, 0, 0),
    "conv": _conv,
    "batch_norm": lambda s: (s, 4 * s[-1], 0),  # gamma, beta, moving mean, moving variance
    "relu": lambda s: (s, 0, 0),
    "max_pool": _max_pool,
    "zero_pad_shortcut": lambda s, stride, channels, filters: (
        (math.ceil(s[0] / stride), math.ceil(s[1] / stride), filters),
        0,
        0,
    ),
    "add": lambda s: (s, 0, 0),
    "global_avg_pool": lambda s: ((s[2],), 0, 0),
    "flatten": lambda s: ((math.prod(s),), 0, 0),
    "dropout": lambda s, rate: (s, 0, 0),
    "dense": _dense,
    "transferred": lambda s, base: (base.shape, base.params, base.flops),
}


def stage_widths(point, stages):
    """Returns the feature maps of each stage: `min(round(width * growth**s), max_width)`, Python's `round()`."""
    return [min(round(point["width"] * point["growth"] ** s), point["max_width"]) for s in range(stages)]


def stage_blocks(point):
    """Returns the blocks of each stage, a tuple with one entry per stage (`stages` resolved)."""
    blocks = point["blocks_per_stage"]
    return blocks if isinstance(blocks, tuple) else (blocks,) * point["stages"]


def stem_size(point):
    """Returns the side of the map the stem hands to the first stage."""
    size, padding = point["resolution"], point["padding"]
    if point["stem"] == "conv3":
        size = _size(size, 3, 1, padding)
    elif point["stem"] in ("conv7", "conv7_pool3"):
        size = _size(size, 7, 2, padding)
        size = _max_pool((size, size, 1), 3 if point["stem"] == "conv7_pool3" else 2, padding)[0][0]
    return size


def halves_last(point):
    """Whether the last stage halves the map too: S stages then halve S times, else S - 1 times."""
    return point["downsample"] != "block" and point["halve_last"]


def halved(size, point):
    """Returns a map's side after one halving of the point's kind: a 2x2/2 max-pool or a 3x3/2 conv.

    Keras's `same` rounds up. Without padding, both round down and the conv
    takes a pixel more (`(n - 3) // 2 + 1`); PyTorch's padding of 1 makes the
    conv round up, as `same` does, while its 2x2 pools have none and round down.
    """
    if point["downsample"] == "maxpool":
        return _max_pool((size, size, 1), 2, point["padding"])[0][0]
    return _size(size, 3, 2, point["padding"])


def resolve_stages(point):
    """Returns the number of stages, resolving `"auto"`, or raises if the map cannot be halved that often.

    A tuple `blocks_per_stage` fixes the number of stages. Each halving gives
    the map the side its layer gives it (`halved()`); `"auto"` stacks stages
    until the map is smaller than 7 x 7, and at least one. Under `padding="valid"`
    the stages' other convs shrink the map too: `"auto"` then stops before a stage
    would leave no map, and `plan()` names `padding` where a fixed count does.
    """
    blocks = point["blocks_per_stage"]
    stages = point["stages"]
    if isinstance(blocks, tuple):
        if stages not in ("auto", len(blocks)):
            raise InfeasibleArchitecture(
                "blocks_per_stage", blocks, f"gives blocks for {len(blocks)} stages, but stages={stages}"
            )
        stages = len(blocks)
    size = stem_size(point)
    if size < 1:
        raise InfeasibleArchitecture("resolution", point["resolution"], f"too small for the stem {point['stem']!r}")
    sizes = [size]
    while sizes[-1] > 1 and halved(sizes[-1], point) >= 1:
        sizes.append(halved(sizes[-1], point))
    possible = len(sizes) - 1  # how often the map can be halved (a 1 x 1 map cannot)
    if stages == "auto" and point["padding"] == "valid":
        return _valid_auto_stages(point, size)
    if stages == "auto":
        first_small = next(i for i, s in enumerate(sizes) if s < AUTO_STOP)
        if not halves_last(point):
            return first_small + 1
        if possible == 0:
            raise InfeasibleArchitecture("resolution", point["resolution"], "too small for even one stage")
        return max(1, first_small)
    needed = stages if halves_last(point) else stages - 1
    if needed > possible:
        stem = f" after the {point['stem']} stem" if point["stem"] != "none" else ""
        field = "blocks_per_stage" if isinstance(blocks, tuple) else "stages"
        raise InfeasibleArchitecture(
            field,
            point[field],
            f"resolution {point['resolution']}{stem} ({size} x {size}) can be halved at most {possible} times"
            + ("" if halves_last(point) else f", and {stages} stages halve it {needed} times"),
        )
    return stages


def _valid_auto_stages(point, size):
    """`stages="auto"` under `padding="valid"`, where every 3x3 conv takes 2 pixels off as well."""
    stages = 1
    while True:
        side = _side_after_stages(point, size, stages)
        if side < 1:
            if stages == 1:
                raise InfeasibleArchitecture("resolution", point["resolution"], "too small for even one stage")
            return stages - 1
        if side < AUTO_STOP:
            return stages
        stages += 1


def _side_after_stages(point, size, stages):
    """The map's side after `stages` stages of 3x3 convs and halvings (0 where it vanished)."""
    for s in range(1, stages + 1):
        for b in range(point["blocks_per_stage"]):
            stride = 2 if point["downsample"] == "block" and s > 1 and b == 0 else 1
            size = _size(size, 3, stride, point["padding"])
        if point["downsample"] != "block" and (s < stages or point["halve_last"]):
            size = halved(size, point)
        if size < 1:
            return 0
    return size


def _check_combinations(point):
    resnet = point["family"] == "resnet"
    if point["bottleneck"] and not resnet:
        raise InfeasibleArchitecture("bottleneck", True, "bottleneck blocks exist only for family='resnet'")
    if point["shortcut"] != "projection" and not resnet:
        raise InfeasibleArchitecture("shortcut", point["shortcut"], "shortcuts exist only for family='resnet'")
    if point["padding"] == "valid" and resnet:
        raise InfeasibleArchitecture(
            "padding", "valid", "a residual block adds its input to its output, so its convs must keep the map's size"
        )
    if point["width"] > point["max_width"]:
        raise InfeasibleArchitecture("width", point["width"], f"above max_width={point['max_width']}")
    if point["bottleneck"] and point["width"] < 4:
        raise InfeasibleArchitecture(
            "width", point["width"], "bottleneck blocks reduce to width/4, so width must be >= 4"
        )


def plan(point, input_shape, num_classes, base=None):
    """Plans the network for one point of a space.

    Args:
        point: a dict from dimension name to value; missing dimensions take
            their defaults.
        input_shape: the raw image shape `(H, W, C)`, e.g. `(32, 32, 3)`.
        num_classes: number of classes, at least 2.
        base: a transferred source's base (`archsearch.recipe.transfer.Base`),
            which then takes the place of the preprocessing, stem and stages:
            the network is the augmentation (where the point has it), the
            base and a new head; the recipe's other dimensions are unused.

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
    net = _Planner(input_shape, point["padding"], point["batch_norm"])
    if base is not None:
        if point["augment"]:
            net.add("augment", "augment", shift=max(1, round(min(input_shape[:2]) / 8)))
        net.add("base", "transferred", base=base)
        _head(net, point, num_classes)
        return Architecture(point, tuple(input_shape), num_classes, tuple(net.layers))
    _check_combinations(point)
    point["stages"] = resolve_stages(point)
    net.add("preprocess", "preprocess", resolution=point["resolution"])
    if point["augment"]:
        net.add("augment", "augment", shift=max(1, round(point["resolution"] / 8)))
    _stem(net, point)
    stages = point["stages"]
    for s, (width, blocks) in enumerate(zip(stage_widths(point, stages), stage_blocks(point)), start=1):
        for b in range(1, blocks + 1):
            stride = 2 if point["downsample"] == "block" and s > 1 and b == 1 else 1
            if point["family"] == "vgg":
                net.conv_bn_relu(f"stage{s}_conv{b}", width, 3, stride)
            else:
                _residual_block(net, f"stage{s}_block{b}", width, stride, point)
        if point["downsample"] != "block" and (s < stages or point["halve_last"]):
            if point["downsample"] == "maxpool":
                net.add(f"stage{s}_pool", "max_pool", pool=2, padding=point["padding"])
            else:
                net.conv_bn_relu(f"stage{s}_down", width, 3, 2)
    _head(net, point, num_classes)
    return Architecture(point, tuple(input_shape), num_classes, tuple(net.layers))


def _stem(net, point):
    """Adds the stem's conv (and pool); `stem_width="auto"` gives it `width` maps."""
    if point["stem"] == "none":
        return
    width = point["width"] if point["stem_width"] == "auto" else point["stem_width"]
    if point["stem"] == "conv3":
        net.conv_bn_relu("stem_conv", width, 3, 1)
        return
    net.conv_bn_relu("stem_conv", width, 7, 2)
    net.add("stem_pool", "max_pool", pool=3 if point["stem"] == "conv7_pool3" else 2, padding=point["padding"])


def _head(net, point, num_classes):
    """Adds the head: global average pooling, or flatten and `head_layers` hidden layers; then the linear layer."""
    bn, dropout = point["batch_norm"], point["dropout"]
    if point["head"] == "gap":
        net.add("head_pool", "global_avg_pool")
        if dropout > 0:
            net.add("head_dropout", "dropout", rate=dropout)
    else:
        net.add("head_flatten", "flatten")
        layers = point["head_layers"]
        for k in range(1, layers + 1):
            name = "head_hidden" if layers == 1 else f"head_hidden{k}"
            # Batch norm here too: without it, most hidden units die in the first steps.
            net.add(name, "dense", units=point["head_units"], activation=None if bn else "relu", bias=not bn)
            if bn:
                net.add(f"{name}_bn", "batch_norm")
                net.add(f"{name}_relu", "relu")
            if dropout > 0:
                net.add("head_dropout" if layers == 1 else f"head_dropout{k}", "dropout", rate=dropout)
    net.add("predictions", "dense", units=num_classes, activation="softmax", bias=True)


def _residual_block(net, name, width, stride, point):
    """Adds one residual block; where it halves or widens, a projection or zero-padding shortcut.

    The stride sits in the first 3x3 conv of a basic block and in the 3x3 of a bottleneck (torchvision's).
    """
    block_input = net.last
    if point["bottleneck"]:
        net.conv_bn_relu(f"{name}_reduce", width // 4, 1, 1)
        net.conv_bn_relu(f"{name}_conv", width // 4, 3, stride)
        last = net.add(f"{name}_expand", "conv", filters=width, kernel=1, stride=1, bias=not net.bn, padding="same")
    else:
        net.conv_bn_relu(f"{name}_conv1", width, 3, stride)
        last = net.conv(f"{name}_conv2", width, 3, 1)
    if net.bn:
        last = net.add(f"{name}_bn", "batch_norm")
    shortcut = block_input
    channels = net.shapes[block_input][-1]
    if stride > 1 or channels != width:
        if point["shortcut"] == "zero_pad":
            if channels > width:
                raise InfeasibleArchitecture(
                    "shortcut",
                    "zero_pad",
                    f"{name} narrows {channels} maps to {width}, which zero maps cannot do: use "
                    "shortcut='projection', or a stem_width no wider than width",
                )
            shortcut = net.add(
                f"{name}_shortcut",
                "zero_pad_shortcut",
                inputs=[block_input],
                stride=stride,
                channels=channels,
                filters=width,
            )
        else:
            shortcut = net.add(
                f"{name}_shortcut",
                "conv",
                inputs=[block_input],
                filters=width,
                kernel=1,
                stride=stride,
                bias=not net.bn,
                padding="same",
            )
            if net.bn:
                shortcut = net.add(f"{name}_shortcut_bn", "batch_norm")
    net.add(f"{name}_add", "add", inputs=[last, shortcut])
    net.add(f"{name}_out", "relu")


def check_constraints(architecture, max_params=None, max_flops=None, max_memory=None, activation_bytes=4):
    """Raises `InfeasibleArchitecture` if the architecture breaks a budget.

    Args:
        architecture: a planned `Architecture`.
        max_params: largest allowed parameter count, or `None`.
        max_flops: largest allowed forward FLOPs per image, or `None`.
        max_memory: largest allowed `Architecture.memory_estimate()` of a
            training step at the point's batch size, in bytes, or `None`.
        activation_bytes: bytes per activation for that estimate (2 under
            mixed precision).
    """
    if max_params is not None and architecture.params > max_params:
        raise InfeasibleArchitecture(
            "max_params", max_params, f"the architecture has {architecture.params:,} parameters", architecture
        )
    if max_flops is not None and architecture.flops > max_flops:
        raise InfeasibleArchitecture(
            "max_flops", max_flops, f"the architecture needs {architecture.flops:,} FLOPs per image", architecture
        )
    if max_memory is not None:
        estimate = architecture.memory_estimate(activation_bytes=activation_bytes)
        if estimate > max_memory:
            raise InfeasibleArchitecture(
                "max_memory",
                max_memory,
                f"a training step at batch size {architecture.point['batch_size']} needs about {estimate:,} bytes "
                "(weights, gradients, optimizer slots and activations)",
                architecture,
            )
