"""The declarative search space: what a space file holds (the bundled ones are in `archsearch/spaces/`).

A space file builds one `Space` from declarations only. Each dimension of the
recipe or of training is either a fixed value or a declaration (`choice`,
`int_range`, `uniform`, `log_uniform`); declarations map one-to-one onto Keras
Tuner's `HyperParameters`, which does the search's sampling. This module does
not import Keras Tuner (which imports Keras, and TensorFlow behind it), so
that commands which only read a space (`describe`, `data`) stay light.
"""

import dataclasses
import hashlib
import json
import math
import runpy
import traceback
from pathlib import Path

import numpy as np

from archsearch.data import Data
from archsearch.errors import ArchsearchError, SpaceError
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import check_constraints, plan
from archsearch.recipe.bundled import is_space_name, space_file
from archsearch.recipe.presets import preset
from archsearch.recipe.transfer import Transfer


@dataclasses.dataclass(frozen=True)
class Choice:
    """A dimension that takes one of a few values.

    Args:
        values: the candidate values, the first being the default.
    """

    values: tuple

    def register(self, hp, dimension):
        if self._as_text():
            return dimension.parse(hp.Choice(dimension.name, [str(v) for v in self.values]))
        return hp.Choice(dimension.name, list(self.values))

    def _as_text(self):
        # Keras Tuner wants one type per Choice, and no tuples: mixed ones (2, 3, "auto") and per-stage
        # blocks ((2, 2), (3, 4)) go as strings.
        types = {type(v) for v in self.values}
        return len(types) > 1 or tuple in types

    def hp_value(self, value):
        """Returns one of the values as Keras Tuner's `HyperParameters` hold it."""
        return str(value) if self._as_text() else value

    def allows(self, value):
        return value in self.values

    def first(self):
        """Returns the value Keras Tuner holds before it samples (`hp.default`): the first."""
        return self.values[0]

    def draw(self, rng):
        return self.values[rng.integers(len(self.values))]

    def size(self):
        return len(self.values)

    def describe(self):
        return "choice(" + ", ".join(repr(v) for v in self.values) + ")"


@dataclasses.dataclass(frozen=True)
class IntRange:
    """A dimension that takes integers from `low` to `high` inclusive, every `step`."""

    low: int
    high: int
    step: int = 1

    def register(self, hp, dimension):
        return hp.Int(dimension.name, self.low, self.high, step=self.step)

    def hp_value(self, value):
        return value

    def allows(self, value):
        return type(value) is int and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def first(self):
        return self.low

    def draw(self, rng):
        return self.low + self.step * int(rng.integers(self.size()))

    def size(self):
        return (self.high - self.low) // self.step + 1

    def describe(self):
        return f"int_range({self.low}, {self.high}, step={self.step})"


@dataclasses.dataclass(frozen=True)
class FloatRange:
    """A dimension that takes real values in `[low, high]`, sampled `linear` or `log`."""

    low: float
    high: float
    sampling: str = "linear"

    def register(self, hp, dimension):
        return hp.Float(dimension.name, self.low, self.high, sampling=self.sampling)

    def hp_value(self, value):
        return float(value)

    def allows(self, value):
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def first(self):
        return self.low

    def draw(self, rng):
        if self.sampling == "log":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(rng.uniform(self.low, self.high))

    def size(self):
        return math.inf

    def describe(self):
        name = "log_uniform" if self.sampling == "log" else "uniform"
        return f"{name}({self.low}, {self.high})"


def choice(*values):
    """Declares a dimension that takes one of `values`.

    Example:

    ```python
    Recipe(family=choice("vgg", "resnet"), stages=choice(2, 3, "auto"))
    ```
    """
    return Choice(tuple(values))


def int_range(low, high, step=1):
    """Declares an integer dimension from `low` to `high` inclusive, every `step`."""
    return IntRange(low, high, step)


def uniform(low, high):
    """Declares a real dimension sampled uniformly in `[low, high]`."""
    return FloatRange(low, high, "linear")


def log_uniform(low, high):
    """Declares a real dimension sampled uniformly in log scale, e.g. a learning rate."""
    return FloatRange(low, high, "log")


def _check_declaration(dimension, value):
    """Checks a fixed value or a declaration for `dimension`; returns it normalized."""
    where = f"{dimension.group}: "
    name = dimension.name
    if isinstance(value, Choice):
        if not value.values:
            raise SpaceError(f"{where}{name}=choice(): a choice needs at least one value")
        if len(set(map(repr, value.values))) != len(value.values):
            raise SpaceError(f"{where}{name}={value.describe()}: values repeat")
        return Choice(tuple(dimension.check(v, where) for v in value.values))
    if isinstance(value, (IntRange, FloatRange)):
        if dimension.kind not in (int, float) or (isinstance(value, IntRange) != (dimension.kind is int)):
            raise SpaceError(f"{where}{name}={value.describe()}: a range does not fit; expected {dimension.expected()}")
        dimension.check(value.low, where)
        dimension.check(value.high, where)
        if not value.low < value.high:
            raise SpaceError(f"{where}{name}={value.describe()}: low must be below high")
        if isinstance(value, IntRange) and (type(value.step) is not int or value.step < 1):
            raise SpaceError(f"{where}{name}={value.describe()}: step must be an int >= 1")
        if isinstance(value, FloatRange) and value.sampling == "log" and value.low <= 0:
            raise SpaceError(f"{where}{name}={value.describe()}: log sampling needs low > 0")
        return value
    return dimension.check(value, where)


class _Section:
    """The declared dimensions of one group (`recipe` or `train`)."""

    group = None

    def __init__(self, **values):
        names = dimensions.RECIPE if self.group == "recipe" else dimensions.TRAIN
        for name in values:
            if name not in names:
                hint = ""
                if name in dimensions.BY_NAME:
                    hint = f" (it belongs in {dimensions.BY_NAME[name].group.capitalize()}(...))"
                raise SpaceError(f"{self.group}: unknown dimension {name!r}{hint}; expected one of: {', '.join(names)}")
        self.values = {name: _check_declaration(dimensions.BY_NAME[name], values[name]) for name in values}

    def __repr__(self):
        return f"{type(self).__name__}({self.values!r})"


class Recipe(_Section):
    """The architecture dimensions of a space; unnamed ones take their defaults.

    Example:

    ```python
    Recipe(family=choice("vgg", "resnet"), width=choice(16, 32), batch_norm=True)
    ```
    """

    group = "recipe"

    @classmethod
    def preset(cls, name, **overrides):
        """Returns the recipe of a named network, with `overrides` declared over it.

        `archsearch presets` lists the names. A preset's training knobs (VGG's
        dropout of 0.5) are not architecture: declare them in `Train`.

        Args:
            name: a preset's name, e.g. `"resnet18"`.
            **overrides: dimensions to fix or search instead of the preset's values.

        Returns:
            A `Recipe`.

        Example:

        ```python
        Recipe.preset("resnet18", width=choice(32, 64), resolution=64)
        ```
        """
        return cls(**{**preset(name, "recipe").recipe, **overrides})


class Train(_Section):
    """The training knobs of a space; unnamed ones take their defaults.

    Example:

    ```python
    Train(epochs=10, batch_size=128, learning_rate=log_uniform(1e-4, 1e-2))
    ```
    """

    group = "train"


@dataclasses.dataclass(frozen=True)
class Search:
    """How the space is explored.

    Args:
        tuner: `"random"`, `"bayesian"` or `"hyperband"` (Keras Tuner's own).
        max_trials: trials to run (for hyperband: an upper bound; its own
            schedule decides).
        max_params: reject architectures with more parameters, before training.
        max_flops: reject architectures with more forward FLOPs per image.
        max_latency_ms: reject architectures whose untrained model takes
            longer per image at batch 1, in milliseconds (a float), on the
            device that runs the search (`archsearch.model.cost`); measured
            before training.
        max_model_bytes: reject architectures whose model, saved as a
            `.keras` file, is larger, in bytes; measured before training.
        max_memory: reject architectures whose estimated training-step peak
            (`Architecture.memory_estimate()` at the point's batch size) is
            larger, before their model is built: bytes, an int, or a string
            such as `"4GB"` or `"512MiB"` (KB/MB/GB/TB are powers of 1000,
            KiB/MiB/GiB/TiB of 1024). `None` takes the device's memory where
            the backend tells it (the CPU's RAM; the GPU's under JAX or
            PyTorch), at run time; run.json records the budget applied.
        max_consecutive_failures: stop the search after this many trials in a
            row fail (infeasible samples do not count).
        seed: seed of the tuner's sampling.
        start_from: names of presets (`archsearch presets`) to try first, in
            order, before the tuner samples (Hyperband: the first models of
            its first round); each must lie in the space. A resumed search
            repeats none, and trials.csv names them (`start_from`).
    """

    tuner: str = "random"
    max_trials: int = 20
    max_params: int = None
    max_flops: int = None
    max_consecutive_failures: int = 5
    seed: int = 0
    start_from: tuple = ()
    max_latency_ms: float = None
    max_model_bytes: int = None
    max_memory: int = None

    def __post_init__(self):
        if self.tuner not in dimensions.TUNERS:
            expected = ", ".join(map(repr, dimensions.TUNERS))
            raise SpaceError(f"search: tuner={self.tuner!r}: expected one of {expected}")
        for name in ("max_trials", "max_consecutive_failures"):
            _check_positive_int(f"search: {name}", getattr(self, name))
        for name in ("max_params", "max_flops", "max_model_bytes"):
            if getattr(self, name) is not None:
                _check_positive_int(f"search: {name}", getattr(self, name))
        latency = self.max_latency_ms
        if latency is not None and not (
            isinstance(latency, (int, float)) and not isinstance(latency, bool) and 0 < latency < math.inf
        ):
            raise SpaceError(f"search: max_latency_ms={latency!r}: expected a number of milliseconds > 0")
        if latency is not None:  # 5 and 5.0 are one budget, with one fingerprint
            object.__setattr__(self, "max_latency_ms", float(latency))
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", _memory_bytes("search: max_memory", self.max_memory))
        _check_int("search: seed", self.seed)
        object.__setattr__(self, "start_from", _preset_names("search: start_from", self.start_from))
        if len(self.start_from) > self.max_trials:
            raise SpaceError(
                f"search: start_from has {len(self.start_from)} presets but max_trials={self.max_trials}; "
                "raise max_trials or start from fewer"
            )


# Search fields that to_dict() leaves out at these defaults: spaces written before them keep their fingerprints.
_QUIET_SEARCH = {"start_from": (), "max_latency_ms": None, "max_model_bytes": None, "max_memory": None}

SELECTIONS = ("top", "pareto")  # how `Retrain` chooses the trials to retrain
PARETO_COSTS = ("params", "flops", "latency_ms")  # trials.csv's columns that `Retrain(select="pareto")` may count


@dataclasses.dataclass(frozen=True)
class Retrain:
    """How the best architectures are retrained and tested.

    Args:
        top_k: how many of the best trials (by validation accuracy) to retrain;
            with `select="pareto"`, at most this many of the front.
        select: `"top"`, the `top_k` completed trials most accurate on
            validation; `"pareto"`, the `top_k` most accurate of those on the
            Pareto front of validation accuracy against `pareto_cost` (no other
            completed trial is as cheap and as accurate, and better in one).
            Raise `top_k` to retrain the whole front.
        pareto_cost: with `select="pareto"`, the trials' cost: `"params"`,
            `"flops"` or `"latency_ms"` (measured during the search; runs
            without the measurement refuse it once the search ends).
        epochs: epochs of each retraining; `None` takes the largest epochs of
            the space's `Train`.
        seeds: retrainings per architecture, from seed 0 up; test figures are
            given as mean and standard deviation over them.
        references: names of presets (`archsearch presets`) to train beside
            the winners, fitted to the data's image size and classes, under
            the same protocol and seeds: unranked `reference:<name>` rows.
    """

    top_k: int = 3
    epochs: int = None
    seeds: int = 3
    references: tuple = ()
    select: str = "top"
    pareto_cost: str = "params"

    def __post_init__(self):
        _check_positive_int("retrain: top_k", self.top_k)
        if self.select not in SELECTIONS:
            raise SpaceError(f"retrain: select={self.select!r}: expected one of {', '.join(map(repr, SELECTIONS))}")
        if self.pareto_cost not in PARETO_COSTS:
            expected = ", ".join(map(repr, PARETO_COSTS))
            raise SpaceError(f"retrain: pareto_cost={self.pareto_cost!r}: expected one of {expected}")
        if self.select != "pareto" and self.pareto_cost != "params":
            raise SpaceError(
                f"retrain: pareto_cost={self.pareto_cost!r} counts only with select='pareto' (select={self.select!r})"
            )
        _check_positive_int("retrain: seeds", self.seeds)
        if self.epochs is not None:
            _check_positive_int("retrain: epochs", self.epochs)
        object.__setattr__(self, "references", _preset_names("retrain: references", self.references))


# Retrain's fields left out of `Space.to_dict()` at these values (their defaults), so that spaces written before
# them keep their fingerprints.
_QUIET_RETRAIN = {"references": (), "select": "top", "pareto_cost": "params"}


def _allows(declaration, value):
    """Whether a declaration (or a fixed value) holds `value`."""
    if isinstance(declaration, (Choice, IntRange, FloatRange)):
        return declaration.allows(value)
    return declaration == value


def _same_network(item, point):
    """Whether a point's architecture dimensions plan the preset's own network, on its source's images."""
    recipe = {n: v for n, v in point.items() if n in dimensions.RECIPE and n != "resolution"}
    try:
        candidate = plan({**recipe, "resolution": item.recipe["resolution"]}, item.input_shape, item.classes)
    except ArchsearchError:
        return False
    return candidate.layers == plan(item.recipe, item.input_shape, item.classes).layers


def _preset_names(where, names):
    """Checks a tuple of preset names (a lone string is one name); returns it as a tuple."""
    names = (names,) if isinstance(names, str) else names
    if not isinstance(names, (tuple, list)):
        raise SpaceError(f"{where}={names!r}: expected a tuple of preset names, e.g. ('resnet20',)")
    for name in names:
        if not isinstance(name, str):
            raise SpaceError(f"{where}={tuple(names)!r}: {name!r} is not a preset's name; expected strings")
        preset(name, where)
    if len(set(names)) != len(names):
        raise SpaceError(f"{where}={tuple(names)!r}: names repeat")
    return tuple(names)


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def _memory_bytes(where, value):
    """Returns a memory size in bytes: an int, or a string of a number and a unit (`"4GB"`, `"1.5 GiB"`)."""
    expected = "expected bytes as an int >= 1, or a string such as '4GB' or '512MiB'"
    if isinstance(value, str):
        number = value.strip().upper().rstrip("BKMGTI ")
        unit = value.strip().upper()[len(number) :].strip() or "B"
        try:
            size = float(number) * _UNITS[unit]
        except (ValueError, KeyError):
            raise SpaceError(f"{where}={value!r}: {expected}") from None
        if not 1 <= size < math.inf:
            raise SpaceError(f"{where}={value!r}: {expected}")
        return int(size)
    if type(value) is not int or value < 1:
        raise SpaceError(f"{where}={value!r}: {expected}")
    return value


def _check_int(where, value):
    if type(value) is not int:
        raise SpaceError(f"{where}={value!r}: expected an int")


def _check_positive_int(where, value):
    _check_int(where, value)
    if value < 1:
        raise SpaceError(f"{where}={value!r}: expected an int >= 1")


@dataclasses.dataclass
class Space:
    """A search space: data, recipe dimensions, training knobs, search and retraining.

    Args:
        name: names the results directory `results/<name>/`.
        data: a `Data` declaration.
        recipe: a `Recipe`.
        train: a `Train`.
        search: a `Search`.
        retrain: a `Retrain`.
        description: what question the space answers (a space file's
            docstring fills it in).
        transfer: a `Transfer`: start from a trained network's features
            instead of random weights (notes 003). The network is then the
            source's base and a new head; the recipe keeps only its head's
            dimensions (`head`, `head_units`, `head_layers`, `batch_norm`;
            and the fixed `resolution` of a keras.applications source), and
            the training knobs `transfer`, `head_fraction`,
            `fine_tune_learning_rate` and `unfreeze_layers` say how it
            trains.

    Example:

    ```python
    space = Space(
        name="cifar10",
        data=Data("cifar10", validation=0.1),
        recipe=Recipe(family=choice("vgg", "resnet"), width=choice(16, 32, 64)),
        train=Train(epochs=10, learning_rate=log_uniform(1e-4, 1e-2)),
        search=Search(tuner="hyperband", max_trials=40, max_params=1_000_000),
        retrain=Retrain(top_k=3, epochs=40, seeds=3),
    )
    ```
    """

    name: str
    data: Data = dataclasses.field(default_factory=lambda: Data("digits"))
    recipe: Recipe = dataclasses.field(default_factory=Recipe)
    train: Train = dataclasses.field(default_factory=Train)
    search: Search = dataclasses.field(default_factory=Search)
    retrain: Retrain = dataclasses.field(default_factory=Retrain)
    description: str = ""
    transfer: Transfer = None

    def __post_init__(self):
        if not is_space_name(self.name):
            raise SpaceError(f"space: name={self.name!r}: expected letters, digits, '-' or '_' (it names a folder)")
        for field, kind in (
            ("data", Data),
            ("recipe", Recipe),
            ("train", Train),
            ("search", Search),
            ("retrain", Retrain),
        ):
            if not isinstance(getattr(self, field), kind):
                raise SpaceError(f"space: {field}={getattr(self, field)!r}: expected {kind.__name__}(...)")
        self._check_transfer()
        self.start_points()  # refuses presets that lie outside the space
        if self.search.tuner == "hyperband" and not self.searched():  # Keras Tuner's Hyperband would start no trial
            raise SpaceError(
                "search: tuner='hyperband' shares epochs among many architectures, but this space fixes every "
                "dimension: vary one with choice(...) or a range, or train its one architecture with tuner='random'"
            )

    def _check_transfer(self):
        """Refuses recipe dimensions a transferred network does not have, and transfer knobs without a source."""
        if self.transfer is None:
            for name in dimensions.TRANSFER:
                if name in self.train.values:
                    raise SpaceError(
                        f"train: {name}: only a space that starts from a trained network has it; "
                        "declare Space(transfer=Transfer(...)) or leave it out"
                    )
            return
        if not isinstance(self.transfer, Transfer):
            raise SpaceError(f"space: transfer={self.transfer!r}: expected Transfer(...)")
        kept = self.recipe_dimensions()
        for name in self.recipe.values:
            if name not in kept:
                raise SpaceError(
                    f"recipe: {name}: a transferred network keeps its source's layers (transfer: "
                    f"{self.transfer.source!r}); only its new head's dimensions apply: {', '.join(kept)}"
                )
        if isinstance(self.recipe.values.get("resolution"), (Choice, IntRange, FloatRange)):
            raise SpaceError(
                f"recipe: resolution: a keras.applications base is built once, at one resolution; fix it, "
                f"e.g. resolution={dimensions.BY_NAME['resolution'].default}"
            )
        if self.search.start_from:
            raise SpaceError(
                "search: start_from: presets are networks trained from random weights; a space with "
                "Space(transfer=...) starts from its source (compare presets with Retrain(references=...))"
            )

    def recipe_dimensions(self):
        """Returns the recipe dimensions that shape this space's network.

        All of them; with `transfer`, only the new head's (and a
        keras.applications source's `resolution`): the rest is the source's.
        """
        if self.transfer is None:
            return dimensions.RECIPE
        return dimensions.HEAD + (("resolution",) if self.transfer.kind() == "application" else ())

    def applicable_dimensions(self):
        """Returns the names of the dimensions that apply to this space's networks (`dimensions.applicable()`)."""
        return dimensions.applicable(self.recipe_dimensions() if self.transfer else None)

    def start_points(self):
        """Returns the searched dimensions' values at each of `search.start_from`'s presets, in order.

        A preset's architecture must lie in the space: each dimension it names
        takes its value there, or the space must give the same network
        otherwise (`stages="auto"` for its 3 stages, a `max_width` no stage
        reaches). Its resolution (the size of its source's images) and its
        training knobs are kept where the space allows them. Every other
        searched dimension takes its default of the dimension table where the
        space allows it, else its declaration's first value (or low end).

        Returns:
            A list of dicts from searched dimension name to value, as Keras
            Tuner's `HyperParameters` hold them.

        Raises:
            SpaceError: naming the preset and the dimension outside the space,
                or two presets that are the same point of it.
        """
        declared = self.declarations()
        points = []
        for name in self.search.start_from:
            item = preset(name)
            wanted = {**item.recipe, **item.train}
            point, outside = {}, []
            for dimension, declaration in declared.items():
                default = dimensions.BY_NAME[dimension].default
                if dimension in wanted and _allows(declaration, wanted[dimension]):
                    point[dimension] = wanted[dimension]
                elif isinstance(declaration, (Choice, IntRange, FloatRange)):
                    point[dimension] = default if declaration.allows(default) else declaration.first()
                else:
                    point[dimension] = declaration
                architecture = dimensions.BY_NAME[dimension].group == "recipe" and dimension != "resolution"
                if dimension in wanted and architecture and point[dimension] != wanted[dimension]:
                    outside.append(dimension)
            if outside and not _same_network(item, point):
                dimension, declaration = outside[0], declared[outside[0]]
                described = declaration.describe() if hasattr(declaration, "describe") else repr(declaration)
                raise SpaceError(
                    f"search: start_from={name!r}: the preset's {dimension}={wanted[dimension]!r} lies outside the "
                    f"space ({dimension}={described}); declare it in Recipe(...) or start from another preset"
                )
            values = {n: declared[n].hp_value(point[n]) for n in self.searched()}
            if values in points:
                other = self.search.start_from[points.index(values)]
                raise SpaceError(
                    f"search: start_from={name!r} is the same point of this space as {other!r}; start from one of them"
                )
            points.append(values)
        return points

    def declarations(self):
        """Returns a dict of every dimension's fixed value or declaration, in table order."""
        declared = {**self.recipe.values, **self.train.values}
        return {d.name: declared.get(d.name, d.default) for d in dimensions.DIMENSIONS}

    def searched(self):
        """Returns the names of the dimensions that vary."""
        return [n for n, v in self.declarations().items() if isinstance(v, (Choice, IntRange, FloatRange))]

    def sample(self, hp):
        """Registers the space on `hp` and returns the point it holds.

        Args:
            hp: a `keras_tuner.HyperParameters`; searched dimensions get their
                current value there (the default on first registration).

        Returns:
            A dict from every dimension name to a concrete value.
        """
        point = {}
        for name, value in self.declarations().items():
            dimension = dimensions.BY_NAME[name]
            if isinstance(value, (Choice, IntRange, FloatRange)):
                point[name] = value.register(hp, dimension)
                if dimension.kind is bool:  # Keras Tuner may hand booleans back as 0 and 1
                    point[name] = bool(point[name])
            else:
                point[name] = value
        return point

    def architecture(self, point, input_shape, num_classes, max_memory=None, activation_bytes=4, base=None):
        """Plans a point of this space and checks it against the search's budgets that need no model built.

        Args:
            point: a dict from dimension name to value, e.g. from `sample()`.
            input_shape: the image shape `(H, W, C)`.
            num_classes: the number of classes.
            max_memory: the memory budget in bytes, as the search resolves it
                (`archsearch.model.cost.memory_budget()`: `Search.max_memory`,
                else the device's memory); `None` checks none.
            activation_bytes: bytes per activation in the memory estimate (2
                under mixed precision).
            base: with `transfer`, the source's base
                (`archsearch.pipeline.transfer.resolve_transfer()` makes it).

        Returns:
            The `Architecture`.

        Raises:
            InfeasibleArchitecture: for an impossible point, or one over
                `max_params`, `max_flops` or `max_memory` (its `architecture`
                then holds the plan).
        """
        if (self.transfer is None) != (base is None):
            raise ValueError("a space with transfer plans with its source's base, and only it")
        architecture = plan(point, input_shape, num_classes, base)
        check_constraints(architecture, self.search.max_params, self.search.max_flops, max_memory, activation_bytes)
        return architecture

    def random_points(self, count, seed=0):
        """Draws points at random: uniformly over each declaration, in log scale for `log_uniform`.

        As Keras Tuner's random search does, but with NumPy, so that `describe`
        imports neither Keras Tuner nor, behind it, Keras and TensorFlow; the
        search samples with Keras Tuner.

        Args:
            count: how many points.
            seed: makes the draw repeatable.

        Returns:
            A list of `count` dicts from dimension name to value.
        """
        rng = np.random.default_rng(seed)
        declared = self.declarations()
        return [
            {n: v.draw(rng) if isinstance(v, (Choice, IntRange, FloatRange)) else v for n, v in declared.items()}
            for _ in range(count)
        ]

    def size(self):
        """Returns the number of distinct points, or `math.inf` for a continuous space."""
        return math.prod(v.size() for v in self.declarations().values() if hasattr(v, "size"))

    def max_epochs(self):
        """Returns the largest number of training epochs the space allows."""
        epochs = self.declarations()["epochs"]
        if isinstance(epochs, Choice):
            return max(epochs.values)
        return epochs.high if isinstance(epochs, IntRange) else epochs

    def to_dict(self):
        """Returns the space as plain JSON-ready data (for run.json and the fingerprint)."""
        transfer = {} if self.transfer is None else {"transfer": self.transfer.to_dict()}
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            **transfer,
            "dimensions": {
                n: v.describe() if hasattr(v, "describe") else v
                for n, v in self.declarations().items()
                if not (dimensions.BY_NAME[n].quiet_default and v == dimensions.BY_NAME[n].default)
            },
            # Left out at their defaults, so that spaces written before them keep their fingerprints.
            "search": {
                k: v
                for k, v in dataclasses.asdict(self.search).items()
                if k not in _QUIET_SEARCH or v != _QUIET_SEARCH[k]
            },
            "retrain": {
                k: v
                for k, v in dataclasses.asdict(self.retrain).items()
                if k not in _QUIET_RETRAIN or v != _QUIET_RETRAIN[k]
            },
        }

    def fingerprint(self):
        """Returns a short hex digest that changes whenever the space's meaning does."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_space(path):
    """Loads a space file: runs it and returns the `Space` it names `space`.

    Args:
        path: the file, e.g. `"my_space.py"`, or a bundled space's name,
            e.g. `"digits"` (`archsearch.recipe.bundled`: `bundled_spaces()`
            lists them, `space_file()` says which file a name or path means).

    Returns:
        The `Space`, with its `description` taken from the file's docstring.

    Raises:
        SpaceError: naming the file (and line) for a missing file, a syntax
            error, an invalid declaration or a missing `space`.

    Example:

    >>> load_space("digits").name
    'digits'
    """
    path = space_file(path)
    try:
        namespace = runpy.run_path(str(path), run_name="archsearch_space")
    except SyntaxError as error:
        raise SpaceError(f"{path}:{error.lineno}: syntax error: {error.msg}") from None
    except ArchsearchError as error:
        raise SpaceError(f"{path}:{_line_in(path, error)}: {error}") from None
    except Exception as error:
        raise SpaceError(f"{path}:{_line_in(path, error)}: {type(error).__name__}: {error}") from None
    space = namespace.get("space")
    if not isinstance(space, Space):
        raise SpaceError(f"{path}: expected a variable `space = Space(...)`, found {type(space).__name__}")
    if not space.description:
        space.description = (namespace.get("__doc__") or "").strip()
    return space


def _line_in(path, error):
    """Returns the line of `path` where `error` was raised (or '?')."""
    frames = [
        f
        for f in traceback.extract_tb(error.__traceback__)
        if Path(f.filename) == path.resolve() or Path(f.filename) == path
    ]
    return frames[-1].lineno if frames else "?"
