"""The presets against their sources: published counts, and reference networks written here in keras.layers.

Each reference follows its paper or torchvision's definition directly, layer
by layer with PyTorch's explicit paddings, and never goes through archsearch's
planner or builder. The references are built as functional graphs only (no
data goes through them, except in the weight-transfer tests), once per
preset; the VGGs' 100M+ weights take about a second each.
"""

import functools
import gc
import io
import json
import re

import keras
import keras_tuner
import numpy as np
import pandas as pd
import pytest
from keras import layers

from archsearch import Recipe, Space, choice
from archsearch.cli.commands.presets import MAX_WIDTH, table
from archsearch.cli.main import main
from archsearch.errors import SpaceError
from archsearch.model.builder import build_model
from archsearch.recipe.presets import PRESETS, presets_table
from archsearch.recipe.space import Choice

# Trainable weights, as torchvision's model cards and He et al. 2016 (table 6: 0.27M ... 1.7M) count them.
PUBLISHED_TRAINABLE = {
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "notes002": 716_706,
}

# torchvision's model cards: GFLOPS, which count multiply-accumulates (archsearch counts 2 FLOPs per MAC).
PUBLISHED_GMACS = {
    "vgg11": 7.61,
    "vgg13": 11.31,
    "vgg16": 15.47,
    "vgg19": 19.63,
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnet101": 7.80,
    "resnet152": 11.51,
}

# The planned layers a reference records too, by their kind in the plan.
RECORDED_KINDS = ("conv", "max_pool", "global_avg_pool", "dense")
RECORDED_LAYERS = (layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D, layers.Dense)
WEIGHTED_KINDS = ("conv", "batch_norm", "dense")
WEIGHTED_LAYERS = (layers.Conv2D, layers.BatchNormalization, layers.Dense)


class Reference:
    """A network written with keras.layers, remembering its layers in the order its source runs them.

    Args:
        input_shape: the image shape `(H, W, C)`.
    """

    def __init__(self, input_shape):
        self.input = keras.Input(input_shape)
        self.recorded = []  # output shapes of the convs, pools and dense layers, in forward order
        self.weighted = []  # the convs, batch norms and dense layers, in forward order

    def __call__(self, layer, x):
        y = layer(x)
        if isinstance(layer, RECORDED_LAYERS):
            self.recorded.append(tuple(y.shape[1:]))
        if isinstance(layer, WEIGHTED_LAYERS):
            self.weighted.append(layer)
        return y

    def conv(self, x, filters, kernel, stride=1, bias=False, padding=None):
        """PyTorch's `nn.Conv2d(kernel, stride, padding)`: explicit zeros on every side, then a valid conv."""
        padding = kernel // 2 if padding is None else padding
        if padding:
            x = self(layers.ZeroPadding2D(padding), x)
        return self(layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=bias), x)

    def bn_relu(self, x):
        return self(layers.ReLU(), self(layers.BatchNormalization(), x))

    def model(self, output):
        return keras.Model(self.input, output)


# VGG: torchvision.models.vgg's cfgs, Simonyan & Zisserman's table 1 ("M": a 2x2/2 max-pool).
VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", *[256] * 4, "M", *[512] * 4, "M", *[512] * 4, "M"],
}


def vgg(config, input_shape=(224, 224, 3), classes=1000, probabilities=False):
    """torchvision's VGG without batch norm: 3x3 convs with padding 1 and ReLU, 2x2/2 max-pools, 4096-4096 classifier.

    torchvision's `AdaptiveAvgPool2d((7, 7))` is the identity on the 7 x 7 maps of a 224 x 224 image: left out.
    """
    net = Reference(input_shape)
    x = net.input
    for item in config:
        if item == "M":
            x = net(layers.MaxPooling2D(2, strides=2), x)
        else:
            x = net(layers.ReLU(), net.conv(x, item, 3, bias=True))
    x = net(layers.Flatten(), x)
    for _ in range(2):
        x = net(layers.Dropout(0.5), net(layers.Dense(4096, activation="relu"), x))
    return net, net.model(net(layers.Dense(classes, activation="softmax" if probabilities else None), x))


def basic_block(net, x, inplanes, planes, stride):
    """torchvision's `BasicBlock` (expansion 1): the stride in the first 3x3 conv."""
    out = net.bn_relu(net.conv(x, planes, 3, stride))
    out = net(layers.BatchNormalization(), net.conv(out, planes, 3))
    identity = x
    if stride != 1 or inplanes != planes:  # torchvision's downsample: conv1x1 with the stride, then batch norm
        identity = net(layers.BatchNormalization(), net.conv(x, planes, 1, stride))
    return net(layers.ReLU(), net(layers.Add(), [out, identity])), planes


def bottleneck_block(net, x, inplanes, planes, stride):
    """torchvision's `Bottleneck` (ResNet v1.5, expansion 4): 1x1, 3x3 with the stride, 1x1 to 4 x planes."""
    out = net.bn_relu(net.conv(x, planes, 1))
    out = net.bn_relu(net.conv(out, planes, 3, stride))
    out = net(layers.BatchNormalization(), net.conv(out, 4 * planes, 1))
    identity = x
    if stride != 1 or inplanes != 4 * planes:
        identity = net(layers.BatchNormalization(), net.conv(x, 4 * planes, 1, stride))
    return net(layers.ReLU(), net(layers.Add(), [out, identity])), 4 * planes


def torchvision_resnet(block, blocks, input_shape=(224, 224, 3), classes=1000, probabilities=False):
    """torchvision's `ResNet`: 7x7/2 conv (padding 3), 3x3/2 max-pool (padding 1), 4 layers, average pool, fc.

    PyTorch pads the max-pool with minus infinity; zeros give the same maxima after the ReLU before it.
    """
    net = Reference(input_shape)
    x = net.bn_relu(net.conv(net.input, 64, 7, 2))
    x = net(layers.MaxPooling2D(3, strides=2), net(layers.ZeroPadding2D(1), x))
    inplanes = 64
    for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
        for b in range(count):
            x, inplanes = block(net, x, inplanes, planes, 2 if i > 0 and b == 0 else 1)
    x = net(layers.GlobalAveragePooling2D(), x)
    return net, net.model(net(layers.Dense(classes, activation="softmax" if probabilities else None), x))


def cifar_resnet(depth, input_shape=(32, 32, 3), classes=10, probabilities=False):
    """He et al. 2016, section 4.2: 3x3 conv of 16, 3 stages of n = (depth - 2) / 6 blocks at 16, 32, 64 maps.

    Stride 2 in the first conv of stages 2 and 3; option A shortcuts: the input subsampled by the stride and
    the new maps zeros (here after the old ones), with no weights; global average pooling and a 10-way fc.
    """
    n = (depth - 2) // 6
    net = Reference(input_shape)
    x = net.bn_relu(net.conv(net.input, 16, 3))
    inplanes = 16
    for i, planes in enumerate((16, 32, 64)):
        for b in range(n):
            stride = 2 if i > 0 and b == 0 else 1
            out = net.bn_relu(net.conv(x, planes, 3, stride))
            out = net(layers.BatchNormalization(), net.conv(out, planes, 3))
            shortcut = x
            if stride != 1 or inplanes != planes:
                shortcut = keras.ops.pad(x[:, ::stride, ::stride, :], [[0, 0], [0, 0], [0, 0], [0, planes - inplanes]])
            x = net(layers.ReLU(), net(layers.Add(), [out, shortcut]))
            inplanes = planes
    x = net(layers.GlobalAveragePooling2D(), x)
    return net, net.model(net(layers.Dense(classes, activation="softmax" if probabilities else None), x))


def notes002(input_shape=(28, 28, 1), classes=10, probabilities=False):
    """The notes' Fashion-MNIST CNN: conv 3x3 valid 64, max-pool 2, ReLU, conv 128, max-pool 2, ReLU, 3200, 200, 10."""
    net = Reference(input_shape)
    x = net.input
    for filters in (64, 128):
        x = net(layers.Conv2D(filters, 3, padding="valid"), x)
        x = net(layers.ReLU(), net(layers.MaxPooling2D(2), x))
    x = net(layers.Flatten(), x)
    assert tuple(x.shape[1:]) == (3200,)
    x = net(layers.Dense(200, activation="relu"), x)
    return net, net.model(net(layers.Dense(classes, activation="softmax" if probabilities else None), x))


REFERENCES = {
    **{name: functools.partial(vgg, config) for name, config in VGG_CONFIGS.items()},
    "resnet18": functools.partial(torchvision_resnet, basic_block, (2, 2, 2, 2)),
    "resnet34": functools.partial(torchvision_resnet, basic_block, (3, 4, 6, 3)),
    "resnet50": functools.partial(torchvision_resnet, bottleneck_block, (3, 4, 6, 3)),
    "resnet101": functools.partial(torchvision_resnet, bottleneck_block, (3, 4, 23, 3)),
    "resnet152": functools.partial(torchvision_resnet, bottleneck_block, (3, 8, 36, 3)),
    **{f"resnet{depth}": functools.partial(cifar_resnet, depth) for depth in (20, 32, 44, 56, 110)},
    "notes002": notes002,
}


@functools.cache
def reference_counts(name):
    """Returns the reference's (count_params(), trainable weights, recorded output shapes), building it once."""
    net, model = REFERENCES[name]()
    counts = (model.count_params(), sum(int(np.prod(w.shape)) for w in model.trainable_weights), net.recorded)
    del net, model
    gc.collect()  # the VGGs' weights go before the next reference
    return counts


def planned_shapes(architecture):
    return [layer.shape for layer in architecture.layers if layer.kind in RECORDED_KINDS]


def test_every_preset_has_a_reference_and_a_published_count():
    assert set(REFERENCES) == set(PRESETS) == set(PUBLISHED_TRAINABLE)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_trainable_params_are_the_published_counts_and_the_reference_s(name):
    _, trainable, _ = reference_counts(name)
    assert trainable == PUBLISHED_TRAINABLE[name]  # the reference is the source's network
    assert PRESETS[name].architecture().trainable_params == PUBLISHED_TRAINABLE[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_params_with_batch_norm_statistics_are_the_reference_s_count_params(name):
    params, _, _ = reference_counts(name)
    assert PRESETS[name].architecture().params == params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_conv_pool_and_dense_layer_has_the_reference_s_output_shape_in_order(name):
    _, _, shapes = reference_counts(name)
    assert planned_shapes(PRESETS[name].architecture()) == shapes


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_flops_are_twice_torchvision_s_multiply_accumulates(name):
    assert round(PRESETS[name].architecture().flops / 2e9, 2) == PUBLISHED_GMACS[name]


def randomize(model, seed=0):
    """Gives every weight a random value, batch norm's gamma, beta and moving statistics included."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = (w.shape for w in layer.get_weights())
            layer.set_weights(
                [rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta), rng.normal(0, 0.1, mean)]
                + [rng.uniform(0.5, 1.5, variance)]
            )
        elif isinstance(layer, (layers.Conv2D, layers.Dense)):
            kernel = layer.get_weights()[0]
            fan_in = int(np.prod(kernel.shape[:-1]))
            weights = [rng.normal(0, np.sqrt(2 / fan_in), kernel.shape)]
            layer.set_weights(weights + [rng.normal(0, 0.1, w.shape) for w in layer.get_weights()[1:]])


@pytest.mark.parametrize("name", ["resnet20", "notes002", "resnet18"])
def test_the_built_model_is_the_plan_and_computes_the_reference_s_function(name):
    architecture = PRESETS[name].architecture()
    model = build_model(architecture)
    assert model.count_params() == architecture.params
    for layer in architecture.layers[1:]:
        if layer.kind not in ("preprocess", "augment"):
            assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.shape, layer.name
    # The reference's weights, in forward order, in the planned layers of the same kinds: the same outputs.
    net, reference = REFERENCES[name](probabilities=True)
    randomize(reference)
    built = [model.get_layer(layer.name) for layer in architecture.layers if layer.kind in WEIGHTED_KINDS]
    assert [type(layer) for layer in built] == [type(layer) for layer in net.weighted]
    for mine, theirs in zip(built, net.weighted):
        mine.set_weights(theirs.get_weights())
    images = np.random.default_rng(1).integers(0, 256, (2, *architecture.input_shape), dtype=np.uint8)
    # What the last layer reads as well as the probabilities (random weights saturate the deeper ones').
    theirs = keras.Model(reference.input, [net.weighted[-1].input, reference.output])
    mine = keras.Model(model.input, [model.get_layer("predictions").input, model.output])
    (their_features, their_probabilities), (my_features, my_probabilities) = (
        theirs.predict(images.astype("float32") / 255, verbose=0),
        mine.predict(images, verbose=0),
    )
    assert their_features.std() > 0 and np.isfinite(their_features).all()
    np.testing.assert_allclose(my_features, their_features, rtol=1e-4, atol=1e-4 * np.abs(their_features).max())
    np.testing.assert_allclose(my_probabilities, their_probabilities, atol=1e-4)


def test_a_preset_fitted_to_other_images_takes_their_side_as_resolution():
    architecture = PRESETS["resnet20"].architecture(input_shape=(64, 64, 3), num_classes=2)
    assert architecture.point["resolution"] == 64 and architecture.layers[-1].shape == (2,)
    assert planned_shapes(architecture)[-2] == (64,)  # the average pool, over a 16 x 16 map now
    assert [s for s in planned_shapes(architecture) if len(s) == 3][-1] == (16, 16, 64)


def test_recipe_preset_declares_the_preset_with_its_overrides():
    recipe = Recipe.preset("resnet18", width=choice(32, 64))
    assert recipe.values == {**PRESETS["resnet18"].recipe, "width": Choice((32, 64))}
    space = Space(name="r18", recipe=recipe)
    assert space.searched() == ["width"] and space.size() == 2
    hp = keras_tuner.HyperParameters()
    narrow = space.architecture(space.sample(hp), (224, 224, 3), 1000)
    hp.values["width"] = 64
    wide = space.architecture(space.sample(hp), (224, 224, 3), 1000)
    assert narrow.point["width"] == 32 and narrow.trainable_params < wide.trainable_params
    assert wide.trainable_params == PUBLISHED_TRAINABLE["resnet18"]


def test_an_unknown_preset_is_a_space_error_listing_the_names():
    with pytest.raises(SpaceError, match=r"'resnet19' is no preset; expected one of") as error:
        Recipe.preset("resnet19")
    assert all(name in str(error.value) for name in PRESETS)


def presets_command(capsys, *args):
    assert main(["presets", *args]) == 0
    return capsys.readouterr().out


def test_presets_csv_lists_every_preset_with_its_counts(capsys):
    frame = pd.read_csv(io.StringIO(presets_command(capsys, "--format", "csv")))
    assert list(frame.columns) == ["name", "input_shape", "classes", "params", "trainable_params", "flops", "source"]
    assert list(frame["name"]) == list(PRESETS)
    for row in frame.to_dict("records"):
        architecture = PRESETS[row["name"]].architecture()
        assert row["trainable_params"] == PUBLISHED_TRAINABLE[row["name"]]
        assert (row["params"], row["flops"]) == (architecture.params, architecture.flops)
        assert row["input_shape"] == "x".join(map(str, PRESETS[row["name"]].input_shape))
        assert row["classes"] == PRESETS[row["name"]].classes and row["source"] == PRESETS[row["name"]].source


def test_presets_json_has_the_csv_s_rows_with_raw_integers(capsys):
    records = json.loads(presets_command(capsys, "--format", "json"))
    table = presets_table()
    assert [r["name"] for r in records] == list(PRESETS)
    for record, row in zip(records, table):
        assert record["input_shape"] == list(PRESETS[record["name"]].input_shape)
        for column in ("classes", "params", "trainable_params", "flops"):
            assert type(record[column]) is int and record[column] == row[column]


def test_presets_table_fits_120_columns_with_thousands_separators(capsys):
    out = presets_command(capsys)
    lines = out.splitlines()
    assert max(map(len, lines)) <= MAX_WIDTH == 120
    starts = [line.split()[0] for line in lines if line.strip()]
    assert [name for name in starts if name in PRESETS] == list(PRESETS)  # one row each, in order
    row = next(line for line in lines if line.startswith(" vgg16") or line.startswith("vgg16"))
    assert "138,357,544" in row and "30,940,528,640" in row and "1,000" in row
    assert "269,722" in next(line for line in lines if line.split()[:1] == ["resnet20"])
    assert "Simonyan & Zisserman 2015" in out and "option A" in out


def test_a_narrower_table_wraps_the_sources_at_their_spaces_or_leaves_them_out():
    rows = presets_table()
    words = {word for row in rows for word in row["source"].split()}
    for width in (104, 110):
        lines = table(rows, width).splitlines()
        assert max(map(len, lines)) <= width and "source" in lines[1]
        assert {word for line in lines[2:] for word in line.split()} >= words  # no word broken across lines
    narrow = table(rows, 80)
    assert max(map(len, narrow.splitlines())) <= 80 and "source" not in narrow and "60,192,808" in narrow


def test_describe_summary_of_a_resnet50_space_shows_its_feature_maps(tmp_path, capsys):
    path = tmp_path / "r50.py"
    path.write_text(
        '"""ResNet-50 on digits."""\nfrom archsearch import *\n'
        'space = Space(name="r50", data=Data("digits"), recipe=Recipe.preset("resnet50"))\n'
    )
    assert main(["describe", str(path), "--sample", "1", "--summary"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("sample 0:") :]
    sides = {int(h) for h, w in re.findall(r"\((\d+), (\d+), \d+\)", summary) if h == w}
    assert sides == {8, 224, 112, 56, 28, 14, 7}  # digits' 8 x 8, resized to 224, then the stem and 4 stages
    assert "(7, 7, 2048)" in summary and "(56, 56, 256)" in summary
