"""The recipe's dimensions and training knobs, defined once.

Everything else (the space API, validation, CSV columns, `archsearch
describe`, the README table) is driven from `DIMENSIONS`: adding a dimension
is adding a row here, then teaching the builder what it builds.
"""

import ast
import dataclasses
import math

from archsearch.errors import SpaceError


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One knob a space may fix or search.

    Args:
        name: the public name, used in space files, CSV columns and docs.
        group: `"recipe"` (the architecture) or `"train"` (how it is trained).
        kind: the Python type of a value: `int`, `float`, `str` or `bool`.
        default: the value used when a space does not mention the knob.
        help: one line saying what the knob does.
        values: for `str` knobs, the allowed values.
        low: for numbers, the smallest allowed value.
        high: for numbers, the largest allowed value (`None`: unbounded).
        open_high: whether `high` itself is excluded.
        auto: whether the string `"auto"` is allowed besides numbers.
        per_stage: whether a tuple of values, one per stage, is allowed
            besides one value for all stages.
        quiet_default: whether `Space.to_dict()` leaves the dimension out
            while it holds its default, so that a space written before the
            dimension existed keeps its fingerprint (and its runs resume).
    """

    name: str
    group: str
    kind: type
    default: object
    help: str
    values: tuple = ()
    low: float = None
    high: float = None
    open_high: bool = False
    auto: bool = False
    per_stage: bool = False
    quiet_default: bool = False

    def check(self, value, where=""):
        """Checks one concrete value and returns it, normalized.

        Args:
            value: a candidate value for this dimension.
            where: text naming the place, prefixed to error messages.

        Returns:
            The value, with ints accepted for float knobs and lists as tuples.

        Raises:
            SpaceError: naming the dimension, the value and what was expected.
        """
        if self.per_stage and isinstance(value, (tuple, list)):
            if not value:
                raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}, with at least one stage")
            try:
                return tuple(self._check_one(v, where) for v in value)
            except SpaceError:
                raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}") from None
        return self._check_one(value, where)

    def _check_one(self, value, where):
        if self.auto and value == "auto":
            return value
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}")
        if self.kind is float and not math.isfinite(value):
            raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}, a finite number")
        if self.values and value not in self.values:
            raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}")
        too_low = self.low is not None and value < self.low
        too_high = self.high is not None and (value >= self.high if self.open_high else value > self.high)
        if too_low or too_high:
            raise SpaceError(f"{where}{self.name}={value!r}: expected {self.expected()}")
        return value

    def parse(self, text):
        """Turns the string form of a value (as in a CSV cell) back into a value."""
        if self.per_stage:
            value = ast.literal_eval(str(text).strip())
            return tuple(value) if isinstance(value, (tuple, list)) else self.kind(value)
        if self.auto and text == "auto":
            return text
        if self.kind is bool:
            return str(text).lower() in ("true", "1")
        return self.kind(text)

    def expected(self):
        """Describes the allowed values in words, e.g. `"an int >= 1 or 'auto'"`."""
        if self.values:
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind is bool:
            return "True or False"
        text = f"{'an int' if self.kind is int else 'a float'}"
        bounds = []
        if self.low is not None:
            bounds.append(f">= {self.low}")
        if self.high is not None:
            bounds.append(f"{'<' if self.open_high else '<='} {self.high}")
        text += " " + " and ".join(bounds) if bounds else ""
        text += " or 'auto'" if self.auto else ""
        return text + (", or a tuple of them, one per stage" if self.per_stage else "")


def _recipe(name, kind, default, help, **kwargs):
    return Dimension(name, "recipe", kind, default, help, **kwargs)


def _train(name, kind, default, help, **kwargs):
    return Dimension(name, "train", kind, default, help, **kwargs)


DIMENSIONS = (
    _recipe(
        "resolution",
        int,
        32,
        "R: the smaller image side is resized to R, then center-cropped to R x R",
        low=4,
        high=1024,
    ),
    _recipe(
        "family",
        str,
        "vgg",
        "vgg: stages of plain 3x3 convs; resnet: stages of residual blocks",
        values=("vgg", "resnet"),
    ),
    _recipe("width", int, 32, "feature maps in the first stage", low=1),
    _recipe("growth", float, 2.0, "width multiplier from one stage to the next", low=1.0, high=4.0),
    _recipe("max_width", int, 512, "cap on the feature maps of any stage", low=1),
    _recipe(
        "stages",
        int,
        "auto",
        "stages of blocks; 'auto' stacks them until the map is below 7 x 7",
        low=1,
        auto=True,
    ),
    _recipe(
        "blocks_per_stage",
        int,
        2,
        "3x3 convs (vgg) or residual blocks (resnet) per stage; a tuple gives each stage its own, e.g. (3, 4, 6, 3)",
        low=1,
        per_stage=True,
    ),
    _recipe(
        "downsample",
        str,
        "maxpool",
        "how stages halve the map: maxpool or strided (a 2x2/2 max-pool or a 3x3/2 conv ending each stage); "
        "block (stride 2 in the first block of stages 2 to S, as ResNets do)",
        values=("maxpool", "strided", "block"),
    ),
    _recipe(
        "halve_last",
        bool,
        True,
        "maxpool and strided: whether the last stage ends in its halving too (False: S stages halve S-1 times)",
        quiet_default=True,
    ),
    _recipe(
        "padding",
        str,
        "same",
        "same: Keras's (maps shrink only by strides, rounding up); valid: none (a 3x3 conv takes 2 pixels off, "
        "pools round down); torch: PyTorch's, kernel // 2 zeros on each side (2x2 pools round down)",
        values=("same", "valid", "torch"),
        quiet_default=True,
    ),
    _recipe(
        "batch_norm",
        bool,
        True,
        "batch normalization after every conv and the mlp head's hidden layers (which then have no bias)",
    ),
    _recipe(
        "stem",
        str,
        "none",
        "layers before the stages: none; conv3 (a 3x3 conv, CIFAR ResNets); conv7 (a 7x7/2 conv and a 2x2/2 "
        "max-pool); conv7_pool3 (a 7x7/2 conv and a 3x3/2 max-pool, ImageNet ResNets)",
        values=("none", "conv3", "conv7", "conv7_pool3"),
    ),
    _recipe(
        "stem_width",
        int,
        "auto",
        "feature maps of the stem's conv; 'auto': width",
        low=1,
        auto=True,
        quiet_default=True,
    ),
    _recipe("bottleneck", bool, False, "resnet only: 1x1 reduce to width/4, 3x3, 1x1 expand blocks"),
    _recipe(
        "shortcut",
        str,
        "projection",
        "resnet only, where a block halves or widens: projection (a 1x1 conv with the stride, option B) "
        "or zero_pad (subsample and append zero maps, parameter-free, option A)",
        values=("projection", "zero_pad"),
        quiet_default=True,
    ),
    _recipe(
        "head",
        str,
        "gap",
        "gap: global average pooling + linear; mlp: flatten + hidden dense layers + linear",
        values=("gap", "mlp"),
    ),
    _recipe("head_units", int, 64, "units of each hidden layer of the mlp head (unused by gap)", low=1),
    _recipe("head_layers", int, 1, "hidden layers of the mlp head (unused by gap)", low=1, high=8, quiet_default=True),
    _train("epochs", int, 10, "training epochs per trial", low=1),
    _train("batch_size", int, 128, "images per gradient step", low=1),
    _train("optimizer", str, "adam", "adam, adamw or sgd (Nesterov momentum 0.9)", values=("adam", "adamw", "sgd")),
    _train("learning_rate", float, 1e-3, "peak learning rate", low=1e-7, high=10.0),
    _train(
        "schedule",
        str,
        "cosine",
        "learning-rate schedule over the training steps: constant, cosine decay, or onecycle (a linear rise "
        "to the peak, then a linear decay to zero)",
        values=("constant", "cosine", "onecycle"),
    ),
    _train(
        "warmup",
        float,
        "auto",
        "fraction of the training steps over which the learning rate rises linearly from 0 to its peak, "
        "before the schedule; 'auto': 0.2 for onecycle, 0 otherwise",
        low=0.0,
        high=1.0,
        open_high=True,
        auto=True,
        quiet_default=True,
    ),
    _train("weight_decay", float, 0.0, "decoupled weight decay passed to the optimizer (0: none)", low=0.0, high=1.0),
    _train(
        "label_smoothing",
        float,
        0.0,
        "Keras's label smoothing of the cross-entropy: the targets are (1 - s) one-hot + s / classes (0: none)",
        low=0.0,
        high=0.5,
        open_high=True,
        quiet_default=True,
    ),
    _train(
        "dropout",
        float,
        0.0,
        "dropout rate after each hidden layer of the mlp head, or before the gap head's linear layer",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
    _train(
        "augment", bool, False, "random shift by up to R/8 pixels (pad-and-crop) and horizontal flip, in training only"
    ),
    _train(
        "tta",
        bool,
        False,
        "test-time augmentation: a trained model's probabilities are the mean of those of each image and of its "
        "horizontal mirror, wherever it is scored and in its export",
        quiet_default=True,
    ),
    _train(
        "transfer",
        str,
        "two_phase",
        "with Space(transfer=...) only: frozen (the source's layers kept, the new head trained); fine_tune "
        "(every layer trained from the start); two_phase (the head first, the base frozen, then the top "
        "unfreeze_layers of the base too, at fine_tune_learning_rate; Keras's transfer-learning guide)",
        values=("frozen", "fine_tune", "two_phase"),
        quiet_default=True,
    ),
    _train(
        "head_fraction",
        float,
        0.5,
        "two_phase: the fraction of the epochs that train the new head alone, before the base is unfrozen",
        low=0.05,
        high=0.95,
        quiet_default=True,
    ),
    _train(
        "fine_tune_learning_rate",
        float,
        1e-4,
        "two_phase: the peak learning rate of its second phase, once the base is unfrozen (the optimizer "
        "recompiled, with its schedule and warmup over that phase's steps)",
        low=1e-7,
        high=10.0,
        quiet_default=True,
    ),
    _train(
        "unfreeze_layers",
        int,
        "auto",
        "two_phase: how many of the base's layers with weights its second phase unfreezes, from the top down; "
        "'auto': all of them (its batch norms stay frozen, in inference mode, in every mode)",
        low=1,
        auto=True,
        quiet_default=True,
    ),
)

BY_NAME = {dimension.name: dimension for dimension in DIMENSIONS}
RECIPE = tuple(d.name for d in DIMENSIONS if d.group == "recipe")
TRAIN = tuple(d.name for d in DIMENSIONS if d.group == "train")
#: The training knobs of transfer learning, which only a space with `Space(transfer=...)` may set.
TRANSFER = ("transfer", "head_fraction", "fine_tune_learning_rate", "unfreeze_layers")
#: The recipe's dimensions a transferred network still has: its new head's (the rest is its source's).
HEAD = ("head", "head_units", "head_layers", "batch_norm")

# The one registry of tuners a space may name (`Search(tuner=...)`, `--tuner`), each with the names of
# its tuner class in `archsearch.search.tuners` and its oracle class in `archsearch.search.oracle`:
# names, so that validation and the command line import no Keras Tuner (`search.tuners.tuner_classes()`).
TUNERS = {
    "random": ("Tuner", "RandomSearchOracle"),
    "bayesian": ("Tuner", "BayesianOptimizationOracle"),
    "hyperband": ("Hyperband", "HyperbandOracle"),
}


def point_of(row):
    """Returns the point a table row holds (a `trials.csv` or `leaderboard.csv` row, a dict or a Series).

    Each dimension is parsed from its cell's text; dimensions missing from the
    row (tables written before they existed) or blank there (that do not
    apply to its network, `applicable()`) take their defaults.
    """
    return {
        d.name: d.parse(str(row[d.name])) if d.name in row and str(row[d.name]) not in _BLANK else d.default
        for d in DIMENSIONS
    }


_BLANK = ("", "nan", "<NA>", "None")  # how pandas reads and writes a blank cell


def applicable(transferred=None):
    """Returns the names of the dimensions that shape a network and its training: the columns a table fills in.

    Args:
        transferred: for a network with a transferred base, the recipe
            dimensions it keeps (`Space.recipe_dimensions()`); `None` for a
            network of the recipe, to which the transfer knobs do not apply.

    Example:

    >>> "transfer" in applicable(), "width" in applicable(HEAD)
    (False, False)
    """
    if transferred is None:
        return RECIPE + tuple(name for name in TRAIN if name not in TRANSFER)
    return tuple(transferred) + TRAIN


def defaults():
    """Returns a dict of every dimension's default value, in table order."""
    return {d.name: d.default for d in DIMENSIONS}
