"""Parameter counts, FLOPs, shapes and infeasible combinations, computed by hand."""

import pytest

from archsearch.errors import InfeasibleArchitecture
from archsearch.recipe.architecture import _conv, check_constraints, halved, plan, resolve_stages
from archsearch.recipe.dimensions import defaults

SMALL_VGG = dict(family="vgg", resolution=32, width=16, stages=2, blocks_per_stage=1)
SMALL_RESNET = dict(family="resnet", resolution=32, width=8, stages=2, blocks_per_stage=1)


def test_a_5x5_filter_on_rgb_has_75_weights_and_a_bias():
    shape, params, _ = _conv((32, 32, 3), filters=1, kernel=5, stride=1, bias=True, padding="same")
    assert params == 75 + 1
    assert shape == (32, 32, 1)


def test_a_3x3_conv_from_3_to_32_maps_has_864_weights():
    _, params, _ = _conv((32, 32, 3), filters=32, kernel=3, stride=1, bias=False, padding="same")
    assert params == 864


def test_small_vgg_layer_by_layer():
    arch = plan(SMALL_VGG, (32, 32, 3), 10)
    conv1 = 3 * 3 * 3 * 16  # no bias: batch norm follows
    bn1 = 4 * 16  # gamma, beta, moving mean and variance
    conv2 = 3 * 3 * 16 * 32
    bn2 = 4 * 32
    dense = 32 * 10 + 10
    assert arch.params == conv1 + bn1 + conv2 + bn2 + dense == 5562
    flops = 2 * (9 * 3 * 16 * 32 * 32) + 2 * (9 * 16 * 32 * 16 * 16) + 2 * 32 * 10
    assert arch.flops == flops


def test_small_vgg_without_batch_norm_has_conv_biases():
    arch = plan({**SMALL_VGG, "batch_norm": False}, (32, 32, 3), 10)
    assert arch.params == (432 + 16) + (4608 + 32) + 330


def test_small_resnet_layer_by_layer():
    arch = plan(SMALL_RESNET, (32, 32, 3), 10)
    block1 = (3 * 3 * 3 * 8 + 32) + (3 * 3 * 8 * 8 + 32) + (1 * 1 * 3 * 8 + 32)  # conv1, conv2, projection
    block2 = (3 * 3 * 8 * 16 + 64) + (3 * 3 * 16 * 16 + 64) + (1 * 1 * 8 * 16 + 64)
    assert arch.params == block1 + block2 + (16 * 10 + 10) == 4858


def test_identity_shortcut_where_width_does_not_change():
    arch = plan({**SMALL_RESNET, "blocks_per_stage": 2}, (32, 32, 3), 10)
    names = [layer.name for layer in arch.layers]
    assert "stage1_block1_shortcut" in names
    assert "stage1_block2_shortcut" not in names


def test_bottleneck_block_by_hand():
    arch = plan(
        dict(family="resnet", bottleneck=True, width=16, stages=1, blocks_per_stage=1, resolution=8), (8, 8, 1), 10
    )
    reduce, conv, expand, shortcut = 1 * 4 + 16, 9 * 4 * 4 + 16, 4 * 16 + 64, 1 * 16 + 64
    assert arch.params == reduce + conv + expand + shortcut + 170 == 558


def test_strided_downsample_is_a_3x3_stride_2_conv_per_stage():
    maxpool = plan(SMALL_VGG, (32, 32, 3), 10)
    strided = plan({**SMALL_VGG, "downsample": "strided"}, (32, 32, 3), 10)
    assert strided.params - maxpool.params == (9 * 16 * 16 + 64) + (9 * 32 * 32 + 128)
    assert [layer.shape for layer in strided.layers if layer.name.endswith("down")] == [(16, 16, 16), (8, 8, 32)]


def test_mlp_head_and_dropout():
    arch = plan({**SMALL_VGG, "head": "mlp", "head_units": 64, "dropout": 0.5}, (32, 32, 3), 10)
    hidden = 8 * 8 * 32 * 64 + 4 * 64  # no bias: batch norm follows, as after a conv
    assert arch.params == 432 + 64 + 4608 + 128 + hidden + (64 * 10 + 10)
    assert [layer.kind for layer in arch.layers][-6:] == ["flatten", "dense", "batch_norm", "relu", "dropout", "dense"]
    plain = plan({**SMALL_VGG, "head": "mlp", "batch_norm": False}, (32, 32, 3), 10)
    assert [layer.kind for layer in plain.layers][-3:] == ["flatten", "dense", "dense"]
    assert plain.layers[-2].params == 8 * 8 * 32 * 64 + 64


def test_conv7_stem():
    arch = plan({**SMALL_VGG, "stem": "conv7", "resolution": 64}, (32, 32, 3), 10)
    stem = next(layer for layer in arch.layers if layer.name == "stem_conv")
    assert stem.params == 7 * 7 * 3 * 16
    assert next(layer for layer in arch.layers if layer.name == "stem_pool").shape == (16, 16, 16)


def test_width_grows_and_is_capped():
    arch = plan(dict(width=32, growth=2.0, max_width=64, stages=3, blocks_per_stage=1), (32, 32, 3), 10)
    assert [layer.shape[-1] for layer in arch.layers if layer.kind == "conv"] == [32, 64, 64]


@pytest.mark.parametrize(
    "point, stages, final",
    [
        (dict(resolution=32), 3, 4),
        (dict(resolution=64), 4, 4),
        (dict(resolution=8), 1, 4),
        (dict(resolution=224), 6, 4),
        (dict(resolution=224, stem="conv7"), 4, 4),
        (dict(resolution=96), 4, 6),
        # S stages halving S - 1 times: one stage more for the same last map.
        (dict(resolution=32, halve_last=False), 4, 4),
        (dict(resolution=32, family="resnet", downsample="block"), 4, 4),
        (dict(resolution=224, family="resnet", downsample="block", stem="conv7_pool3", padding="torch"), 5, 4),
        # PyTorch's padding: a 3x3/2 conv rounds up (13, 7, 4), its 2x2/2 pools down (13, 6).
        (dict(resolution=13, family="resnet", downsample="block", padding="torch", blocks_per_stage=1), 3, 4),
        (dict(resolution=13, downsample="strided", padding="torch", blocks_per_stage=1), 2, 4),
        (dict(resolution=13, padding="torch", blocks_per_stage=1), 1, 6),
    ],
)
def test_auto_stages_stop_below_7x7(point, stages, final):
    def last_map(arch):
        return [layer.shape for layer in arch.layers if len(layer.shape) == 3][-1]

    arch = plan({**point, "stages": "auto"}, (32, 32, 3), 10)
    assert arch.point["stages"] == stages
    assert last_map(arch)[0] == final < 7
    if stages > 1:  # and not a stage more than that
        assert last_map(plan({**point, "stages": stages - 1}, (32, 32, 3), 10))[0] >= 7


@pytest.mark.parametrize(
    "padding, downsample, sides",
    [
        ("same", "maxpool", [13, 7, 4, 2, 1]),
        ("same", "strided", [13, 7, 4, 2, 1]),
        ("torch", "maxpool", [13, 6, 3, 1]),
        ("torch", "strided", [13, 7, 4, 2, 1]),
        ("torch", "block", [13, 7, 4, 2, 1]),
        ("valid", "maxpool", [13, 6, 3, 1]),
        ("valid", "strided", [13, 6, 2]),
    ],
)
def test_each_halving_gives_the_side_its_layer_gives(padding, downsample, sides):
    point = {**defaults(), "padding": padding, "downsample": downsample}
    found = [13]
    while len(found) < len(sides):
        found.append(halved(found[-1], point))
    assert found == sides
    # The planner's halving layers give those sides too, from whatever side their input has.
    arch = plan({**point, "resolution": 32, "stages": 3, "blocks_per_stage": 1}, (32, 32, 3), 10)
    shapes = {layer.name: layer.shape for layer in arch.layers}
    halvings = [
        layer
        for layer in arch.layers
        if layer.kind == "max_pool" or layer.kind == "conv" and layer.config["stride"] == 2
    ]
    assert len(halvings) == (2 if downsample == "block" else 3)
    for layer in halvings:
        assert layer.shape[0] == halved(shapes[layer.inputs[0]][0], point), layer.name


def test_fixed_stages_are_checked_against_the_sides_the_halving_layers_give():
    # 5, 3, 2, 1 under PyTorch's padding (its 3x3/2 convs round up): 4 stages halving in blocks fit.
    point = dict(family="resnet", downsample="block", padding="torch", resolution=5, width=8, blocks_per_stage=1)
    arch = plan({**point, "stages": 4}, (5, 5, 3), 10)
    assert [layer.shape[0] for layer in arch.layers if layer.name.endswith("_out")] == [5, 3, 2, 1]
    with pytest.raises(InfeasibleArchitecture, match=r"stages=5: .* at most 3 times"):
        plan({**point, "stages": 5}, (5, 5, 3), 10)


def test_output_shapes_and_preprocessing_resolution():
    arch = plan(dict(resolution=48), (32, 40, 3), 7)
    assert arch.layers[1].shape == (48, 48, 3)
    assert arch.layers[-1].shape == (7,)


@pytest.mark.parametrize(
    "point, field",
    [
        (dict(family="vgg", bottleneck=True), "bottleneck"),
        (dict(width=64, max_width=32), "width"),
        (dict(resolution=32, stages=6), "stages"),
        (dict(resolution=64, stem="conv7", stages=5), "stages"),
        (dict(family="resnet", bottleneck=True, width=2), "width"),
        (dict(downsample="avgpool"), "downsample"),
        (dict(colour=True), "colour"),
    ],
)
def test_each_impossible_combination_names_its_field(point, field):
    with pytest.raises(InfeasibleArchitecture) as error:
        plan(point, (32, 32, 3), 10)
    assert error.value.field == field or str(error.value).startswith(field)


def test_the_error_says_how_often_R_can_be_halved():
    with pytest.raises(
        InfeasibleArchitecture, match=r"stages=6: resolution 32 \(32 x 32\) can be halved at most 5 times"
    ):
        resolve_stages({**defaults(), "stages": 6})


def test_budgets_name_the_constraint():
    arch = plan(SMALL_VGG, (32, 32, 3), 10)
    check_constraints(arch, max_params=5562, max_flops=arch.flops)
    with pytest.raises(InfeasibleArchitecture, match="max_params"):
        check_constraints(arch, max_params=5561)
    with pytest.raises(InfeasibleArchitecture, match="max_flops"):
        check_constraints(arch, max_flops=arch.flops - 1)


def test_a_classifier_needs_two_classes():
    with pytest.raises(InfeasibleArchitecture, match="num_classes"):
        plan({}, (32, 32, 3), 1)
