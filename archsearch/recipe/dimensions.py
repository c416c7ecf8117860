"""The recipe's dimensions and training knobs, defined once.

Everything else (the space API, validation, CSV columns, `archsearch
describe`, the README table) is driven from `DIMENSIONS`: adding a dimension
is adding a row here, then teaching the builder what it builds.
"""

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

    def check(self, value, where=""):
        """Checks one concrete value and returns it, normalized.

        Args:
            value: a candidate value for this dimension.
            where: text naming the place, prefixed to error messages.

        Returns:
            The value, with ints accepted for float knobs.

        Raises:
            SpaceError: naming the dimension, the value and what was expected.
        """
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
        return text + (" or 'auto'" if self.auto else "")


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
    _recipe("width", int, 32, "feature maps in the first stage (and the stem)", low=1),
    _recipe("growth", float, 2.0, "width multiplier from one stage to the next", low=1.0, high=4.0),
    _recipe("max_width", int, 512, "cap on the feature maps of any stage", low=1),
    _recipe(
        "stages",
        int,
        "auto",
        "stages, each ending in a halving; 'auto' stacks them until the map is below 7 x 7",
        low=1,
        auto=True,
    ),
    _recipe("blocks_per_stage", int, 2, "3x3 convs (vgg) or residual blocks (resnet) per stage", low=1),
    _recipe(
        "downsample",
        str,
        "maxpool",
        "the halving at the end of each stage: 2x2/2 max-pool or a 3x3/2 conv",
        values=("maxpool", "strided"),
    ),
    _recipe(
        "batch_norm",
        bool,
        True,
        "batch normalization after every conv and the mlp head's hidden layer (which then have no bias)",
    ),
    _recipe(
        "stem",
        str,
        "none",
        "none, or conv7: a 7x7/2 conv and a 2x2/2 max-pool before the stages (for large R)",
        values=("none", "conv7"),
    ),
    _recipe("bottleneck", bool, False, "resnet only: 1x1 reduce to width/4, 3x3, 1x1 expand blocks"),
    _recipe(
        "head",
        str,
        "gap",
        "gap: global average pooling + linear; mlp: flatten + hidden dense + linear",
        values=("gap", "mlp"),
    ),
    _recipe("head_units", int, 64, "hidden units of the mlp head (unused by gap)", low=1),
    _train("epochs", int, 10, "training epochs per trial", low=1),
    _train("batch_size", int, 128, "images per gradient step", low=1),
    _train("optimizer", str, "adam", "adam, adamw or sgd (Nesterov momentum 0.9)", values=("adam", "adamw", "sgd")),
    _train("learning_rate", float, 1e-3, "peak learning rate", low=1e-7, high=10.0),
    _train(
        "schedule",
        str,
        "cosine",
        "learning-rate schedule over the training steps: constant or cosine decay",
        values=("constant", "cosine"),
    ),
    _train("weight_decay", float, 0.0, "decoupled weight decay passed to the optimizer (0: none)", low=0.0, high=1.0),
    _train("dropout", float, 0.0, "dropout rate before the final linear layer", low=0.0, high=1.0, open_high=True),
    _train(
        "augment", bool, False, "random shift by up to R/8 pixels (pad-and-crop) and horizontal flip, in training only"
    ),
)

BY_NAME = {dimension.name: dimension for dimension in DIMENSIONS}
RECIPE = tuple(d.name for d in DIMENSIONS if d.group == "recipe")
TRAIN = tuple(d.name for d in DIMENSIONS if d.group == "train")

# The one registry of tuners a space may name (`Search(tuner=...)`, `--tuner`), each with the names of
# its tuner class in `archsearch.search.tuners` and its oracle class in `archsearch.search.oracle`:
# names, so that validation and the command line import no Keras Tuner (`search.tuners.tuner_classes()`).
TUNERS = {
    "random": ("Tuner", "RandomSearchOracle"),
    "bayesian": ("Tuner", "BayesianOptimizationOracle"),
    "hyperband": ("Hyperband", "HyperbandOracle"),
}


def defaults():
    """Returns a dict of every dimension's default value, in table order."""
    return {d.name: d.default for d in DIMENSIONS}
