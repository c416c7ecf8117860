"""Named points of the recipe: the canonical networks of the lecture notes and the papers behind them.

Each preset is an exact point: the same layers, kernels, strides, paddings
and output shapes as its source, so the same parameter counts. A space
starts from one (`Recipe.preset("resnet18", width=choice(32, 64))`), a
search's first trials can be presets (`Search(start_from=...)`), and a run
trains presets beside its winners as reference rows (`Retrain(references=...)`).
`archsearch presets` lists them.
"""

import dataclasses

from archsearch.errors import SpaceError
from archsearch.recipe.architecture import plan


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named point of the recipe.

    Args:
        name: what spaces and the command line call it, e.g. `"resnet20"`.
        recipe: its architecture dimensions (every one that defines it).
        input_shape: the image shape `(H, W, C)` of its source.
        classes: the number of classes of its source.
        source: where the network comes from.
        train: training knobs its source fixes as part of the network
            (VGG's dropout of 0.5); they go in a space's `Train`.
    """

    name: str
    recipe: dict
    input_shape: tuple
    classes: int
    source: str
    train: dict = dataclasses.field(default_factory=dict)

    def architecture(self, input_shape=None, num_classes=None):
        """Plans the preset, for its source's images or fitted to others.

        Args:
            input_shape: the data's image shape; `None` takes the source's.
                Fitted, the preset takes the data's smaller side as its
                resolution, as a model trained on that data would.
            num_classes: the data's classes; `None` takes the source's.

        Returns:
            The `Architecture`.

        Raises:
            InfeasibleArchitecture: where the data's images are too small for it.
        """
        point = {**self.recipe, **self.train}
        if input_shape is not None:
            point["resolution"] = min(input_shape[:2])
        return plan(point, tuple(input_shape or self.input_shape), num_classes or self.classes)


_IMAGENET = dict(input_shape=(224, 224, 3), classes=1000)
_CIFAR = dict(input_shape=(32, 32, 3), classes=10)


def _vgg(name, config, blocks):
    recipe = dict(
        resolution=224,
        family="vgg",
        width=64,
        growth=2.0,
        max_width=512,
        stages=5,
        blocks_per_stage=blocks,
        downsample="maxpool",
        halve_last=True,
        batch_norm=False,
        stem="none",
        bottleneck=False,
        padding="same",
        head="mlp",
        head_units=4096,
        head_layers=2,
    )
    source = f"Simonyan & Zisserman 2015, configuration {config}, as torchvision.models.{name}"
    return Preset(name, recipe, source=source, train=dict(dropout=0.5), **_IMAGENET)


def _imagenet_resnet(name, blocks, bottleneck):
    recipe = dict(
        resolution=224,
        family="resnet",
        width=256 if bottleneck else 64,
        growth=2.0,
        max_width=2048 if bottleneck else 512,
        stages=4,
        blocks_per_stage=blocks,
        downsample="block",
        batch_norm=True,
        stem="conv7_pool3",
        stem_width=64,
        bottleneck=bottleneck,
        shortcut="projection",
        padding="torch",
        head="gap",
    )
    return Preset(name, recipe, source=f"He et al. 2016, as torchvision.models.{name}", **_IMAGENET)


def _cifar_resnet(depth):
    n = (depth - 2) // 6
    recipe = dict(
        resolution=32,
        family="resnet",
        width=16,
        growth=2.0,
        max_width=64,
        stages=3,
        blocks_per_stage=(n, n, n),
        downsample="block",
        batch_norm=True,
        stem="conv3",
        stem_width="auto",  # width's 16, and a searched width moves the stem with it
        bottleneck=False,
        shortcut="zero_pad",
        padding="torch",
        head="gap",
    )
    source = f"He et al. 2016, section 4.2: CIFAR-10, n={n}, zero-padding shortcuts (option A)"
    return Preset(f"resnet{depth}", recipe, source=source, **_CIFAR)


_NOTES002 = Preset(
    "notes002",
    dict(
        resolution=28,
        family="vgg",
        width=64,
        growth=2.0,
        max_width=512,
        stages=2,
        blocks_per_stage=1,
        downsample="maxpool",
        halve_last=True,
        batch_norm=False,
        stem="none",
        bottleneck=False,
        padding="valid",
        head="mlp",
        head_units=200,
        head_layers=1,
    ),
    input_shape=(28, 28, 1),
    classes=10,
    source="lecture notes 002: the Fashion-MNIST CNN (its max-pools come before their ReLUs, the same function)",
)

PRESETS = {
    preset.name: preset
    for preset in (
        _vgg("vgg11", "A", (1, 1, 2, 2, 2)),
        _vgg("vgg13", "B", (2, 2, 2, 2, 2)),
        _vgg("vgg16", "D", (2, 2, 3, 3, 3)),
        _vgg("vgg19", "E", (2, 2, 4, 4, 4)),
        _imagenet_resnet("resnet18", (2, 2, 2, 2), False),
        _imagenet_resnet("resnet34", (3, 4, 6, 3), False),
        _imagenet_resnet("resnet50", (3, 4, 6, 3), True),
        _imagenet_resnet("resnet101", (3, 4, 23, 3), True),
        _imagenet_resnet("resnet152", (3, 8, 36, 3), True),
        *(_cifar_resnet(depth) for depth in (20, 32, 44, 56, 110)),
        _NOTES002,
    )
}


def preset(name, where="preset"):
    """Returns the `Preset` of a name, or raises `SpaceError` listing the names there are.

    Args:
        name: e.g. `"resnet20"`.
        where: text naming the place of the name, prefixed to the error.

    Example:

    >>> preset("resnet20").architecture().trainable_params
    269722
    """
    if name not in PRESETS:
        raise SpaceError(f"{where}: {name!r} is no preset; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def presets_table():
    """Returns one dict per preset: `name`, `input_shape`, `classes`, `params`, `trainable_params`, `flops`, `source`.

    `params` counts every weight as Keras's `count_params()` does (batch
    norm's moving statistics included); `trainable_params` leaves those out,
    as papers and torchvision count.
    """
    rows = []
    for item in PRESETS.values():
        architecture = item.architecture()
        rows.append(
            {
                "name": item.name,
                "input_shape": "x".join(map(str, item.input_shape)),
                "classes": item.classes,
                "params": architecture.params,
                "trainable_params": architecture.trainable_params,
                "flops": architecture.flops,
                "source": item.source,
            }
        )
    return rows
