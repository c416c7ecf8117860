"""Transfer learning (notes 003): what a space declares of its trained source (`Transfer`), and its base (`Base`).

A space with `Space(transfer=Transfer(...))` does not build its network from
the recipe: it keeps the source's feature extractor (its layers up to its last
feature map, with their trained weights), the *base*, and gives it a new head
for the target's classes, freshly initialized, as the recipe's `head`
dimensions say. The training knobs `transfer`, `head_fraction`,
`fine_tune_learning_rate` and `unfreeze_layers` say how it trains.

This module holds declarations only (no Keras): loading the source is
`archsearch.model.transfer`'s, and which run a source names, with the leak
check, `archsearch.pipeline.transfer`'s.
"""

import dataclasses
import os
from pathlib import Path

from archsearch.errors import SpaceError


@dataclasses.dataclass(frozen=True)
class Transfer:
    """The trained network a space starts from, instead of random weights.

    Args:
        source: one of
            - a finished archsearch run (its folder, or `results/<space>`
              for its most recent complete run): its winner, as exported;
            - a `.keras` file of a model that takes images of 0..255 pixel
              values (its own preprocessing inside, as archsearch's models);
            - the name of a `keras.applications` network, e.g.
              `"MobileNetV2"`, built without its top at R x R (the
              `resolution` dimension) with its own `preprocess_input` in
              front.
        weights: `keras.applications` only: a weights file of the network
            without its top (`.h5` or `.weights.h5`), or `"imagenet"` (which
            Keras downloads).
        arguments: `keras.applications` only: keyword arguments of the
            network's function, e.g. `{"alpha": 0.35}`.
        features: the name of the source's layer whose output the new head
            takes; default: its last layer whose output is a feature map
            (rank 4), what `include_top=False` keeps.

    Example:

    ```python
    Transfer("results/cifar8")                      # a run's winner
    Transfer("MobileNetV2", weights="mobilenet_v2_notop.h5", arguments={"alpha": 0.35})
    ```
    """

    source: str
    weights: str = None
    arguments: dict = None
    features: str = None

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise SpaceError(
                f"transfer: source={self.source!r}: expected a run's folder, a .keras file or a "
                "keras.applications name, e.g. 'MobileNetV2'"
            )
        object.__setattr__(self, "source", str(self.source))
        application = self.kind() == "application"
        for field in ("weights", "arguments"):
            if getattr(self, field) is not None and not application:
                raise SpaceError(
                    f"transfer: {field}={getattr(self, field)!r}: only a keras.applications source takes {field}; "
                    f"{self.source!r} is a {self.kind().replace('_', ' ')}"
                )
        if self.weights is not None and not isinstance(self.weights, (str, os.PathLike)):
            raise SpaceError(f"transfer: weights={self.weights!r}: expected a weights file's path, or 'imagenet'")
        if self.weights is not None:
            object.__setattr__(self, "weights", str(self.weights))
        if self.arguments is not None and not (
            isinstance(self.arguments, dict) and all(isinstance(k, str) for k in self.arguments)
        ):
            raise SpaceError(f"transfer: arguments={self.arguments!r}: expected a dict of keyword arguments")
        for reserved in ("include_top", "weights", "input_shape", "input_tensor", "classes", "pooling"):
            if reserved in (self.arguments or {}):
                raise SpaceError(
                    f"transfer: arguments={self.arguments!r}: {reserved!r} is archsearch's to set "
                    "(the base has no top; its input is R x R, the resolution dimension; weights= names the file)"
                )
        if self.features is not None and (not isinstance(self.features, str) or not self.features):
            raise SpaceError(f"transfer: features={self.features!r}: expected the name of one of the source's layers")

    def kind(self):
        """Returns `"run"` (a folder), `"keras_file"` (a `.keras` path) or `"application"` (any other name)."""
        path = Path(self.source)
        if path.suffix == ".keras":
            return "keras_file"
        if path.is_dir() or os.sep in self.source or "/" in self.source:
            return "run"
        return "application"

    def to_dict(self):
        """Returns the declaration as JSON-ready data (run.json's space, and its fingerprint)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class Base:
    """A source's feature extractor, fitted to the target's images: what `plan()` and the builder need of it.

    Made by `archsearch.model.transfer.describe_base()` from a loaded source.

    Args:
        load: how the builder loads it again, with its trained weights: a
            dict, `{"keras_file": path}` or `{"application": name,
            "weights": ..., "arguments": {...}, "resolution": R}`.
        features: the source's layer whose output the head takes.
        input_shape: the target's images `(H, W, C)`, which the base takes.
        shape: its output per image, a feature map `(H, W, C)`.
        params: its weights, as `count_params()` counts them.
        non_trainable_params: those no optimizer updates in any mode: its
            batch norms', frozen.
        flops: forward FLOPs per image of its convolutions and dense layers.
        activations: the values per image its layers output (for the memory estimate).
        weight_layers: its layers that can train (with weights, but batch norms), which
            `unfreeze_layers` counts.
        name: what tables call it, e.g. `"MobileNetV2"` or the source model's name.
        digest: the sha256 of the file its weights come from (`None` for
            `"imagenet"`): a resumed run, and a worker, check they have the same.
    """

    load: dict
    features: str
    input_shape: tuple
    shape: tuple
    params: int
    non_trainable_params: int
    flops: int
    activations: int
    weight_layers: int
    name: str
    digest: str = None
