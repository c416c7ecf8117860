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


def test_halve_last_false_and_block_downsample_halve_s_minus_1_times():
    for point in (
        dict(family="vgg", downsample="maxpool", halve_last=False),
        dict(family="vgg", downsample="strided", halve_last=False),
        dict(family="resnet", downsample="block"),
        dict(family="vgg", downsample="block"),
    ):
        arch = plan({**point, "resolution": 32, "stages": 3, "width": 8}, (32, 32, 3), 10)
        halvings = [
            layer
            for layer in arch.layers
            if layer.kind == "max_pool" or (layer.kind == "conv" and layer.config["stride"] == 2)
            if not layer.name.endswith("_shortcut")  # a projection halves the block's input beside it
        ]
        assert len(halvings) == 2, point
        assert [layer.shape for layer in arch.layers if len(layer.shape) == 3][-1][:2] == (8, 8), point
    # 32 can be halved 5 times: 6 stages then fit, 7 do not.
    assert plan(dict(halve_last=False, stages=6, width=8, blocks_per_stage=1), (32, 32, 3), 10).point["stages"] == 6
    with pytest.raises(InfeasibleArchitecture, match=r"stages=7: .* at most 5 times, and 7 stages halve it 6 times"):
        plan(dict(halve_last=False, stages=7), (32, 32, 3), 10)


def test_block_downsample_strides_the_first_3x3_of_basic_blocks_and_the_3x3_of_bottlenecks():
    basic = plan(dict(family="resnet", downsample="block", width=8, stages=2, blocks_per_stage=2), (32, 32, 3), 10)
    strided = {layer.name for layer in basic.layers if layer.kind == "conv" and layer.config["stride"] == 2}
    assert strided == {"stage2_block1_conv1", "stage2_block1_shortcut"}
    bottleneck = plan(
        dict(family="resnet", bottleneck=True, downsample="block", width=16, stages=2, blocks_per_stage=2),
        (32, 32, 3),
        10,
    )
    strided = {layer.name for layer in bottleneck.layers if layer.kind == "conv" and layer.config["stride"] == 2}
    assert strided == {"stage2_block1_conv", "stage2_block1_shortcut"}


def test_blocks_per_stage_as_a_tuple_gives_each_stage_its_own():
    arch = plan(dict(family="vgg", width=8, blocks_per_stage=(1, 3, 2)), (32, 32, 3), 10)
    assert arch.point["stages"] == 3
    convs = [layer.name for layer in arch.layers if layer.kind == "conv"]
    assert convs == [f"stage{s}_conv{b}" for s, count in enumerate((1, 3, 2), start=1) for b in range(1, count + 1)]


def test_conv3_stem_with_its_own_width():
    arch = plan(
        dict(family="resnet", stem="conv3", stem_width=16, width=32, stages=1, blocks_per_stage=1), (32, 32, 3), 10
    )
    stem = next(layer for layer in arch.layers if layer.name == "stem_conv")
    assert (stem.config["kernel"], stem.config["stride"], stem.shape) == (3, 1, (32, 32, 16))
    assert stem.params == 3 * 3 * 3 * 16  # no bias: batch norm follows
    # The first block widens 16 maps to 32: its first conv reads 16, and a projection shortcut appears.
    assert next(layer for layer in arch.layers if layer.name == "stage1_block1_conv1").params == 3 * 3 * 16 * 32
    assert "stage1_block1_shortcut" in [layer.name for layer in arch.layers]
    auto = plan(dict(stem="conv3", width=8, stages=1, blocks_per_stage=1), (32, 32, 3), 10)
    assert next(layer for layer in auto.layers if layer.name == "stem_conv").shape == (32, 32, 8)  # 'auto': width


@pytest.mark.parametrize(
    "padding, conv_side, pool_side",
    [("torch", 32, 16), ("same", 32, 16), ("valid", 29, 14)],
)
def test_conv7_pool3_stem_is_a_7x7_stride_2_conv_and_a_3x3_stride_2_max_pool(padding, conv_side, pool_side):
    family = "vgg" if padding == "valid" else "resnet"
    point = dict(family=family, stem="conv7_pool3", stem_width=16, width=8, resolution=64, padding=padding, stages=1)
    arch = plan(point, (64, 64, 3), 10)
    stem, pool = (next(layer for layer in arch.layers if layer.name == name) for name in ("stem_conv", "stem_pool"))
    assert (stem.config["kernel"], stem.config["stride"], stem.params) == (7, 2, 7 * 7 * 3 * 16)
    assert stem.shape == (conv_side, conv_side, 16) and pool.config["pool"] == 3
    assert pool.shape == (pool_side, pool_side, 16)


def test_mlp_head_with_several_hidden_layers_and_dropout_after_each():
    arch = plan({**SMALL_VGG, "head": "mlp", "head_units": 32, "head_layers": 3, "dropout": 0.5}, (32, 32, 3), 10)
    head = arch.layers[[layer.kind for layer in arch.layers].index("flatten") :]
    assert [layer.kind for layer in head] == ["flatten", *["dense", "batch_norm", "relu", "dropout"] * 3, "dense"]
    assert [layer.name for layer in head if layer.kind == "dropout"] == [f"head_dropout{k}" for k in (1, 2, 3)]
    hidden = [layer.params for layer in head if layer.kind in ("dense", "batch_norm")]
    assert hidden == [8 * 8 * 32 * 32, 4 * 32, 32 * 32, 4 * 32, 32 * 32, 4 * 32, 32 * 10 + 10]
    plain = plan({**SMALL_VGG, "head": "mlp", "head_units": 32, "head_layers": 2, "batch_norm": False}, (32, 32, 3), 10)
    assert [layer.params for layer in plain.layers if layer.kind == "dense"] == [2048 * 32 + 32, 32 * 32 + 32, 330]
    assert plan({**SMALL_VGG, "head_layers": 3}, (32, 32, 3), 10).params == plan(SMALL_VGG, (32, 32, 3), 10).params


def test_zero_pad_shortcuts_have_no_weights_where_they_halve_or_widen():
    point = dict(family="resnet", shortcut="zero_pad", downsample="block", width=8, stages=2, blocks_per_stage=1)
    projection = plan({**point, "shortcut": "projection"}, (32, 32, 3), 10)
    zero_pad = plan(point, (32, 32, 3), 10)
    shortcuts = {layer.name: layer for layer in zero_pad.layers if layer.kind == "zero_pad_shortcut"}
    assert {name: (s.shape, s.params) for name, s in shortcuts.items()} == {
        "stage1_block1_shortcut": ((32, 32, 8), 0),  # 3 maps of the image widened to 8
        "stage2_block1_shortcut": ((16, 16, 16), 0),
    }
    assert projection.params - zero_pad.params == (3 * 8 + 4 * 8) + (8 * 16 + 4 * 16)  # 1x1 convs and batch norms


def test_valid_padding_takes_two_pixels_off_each_3x3_conv_and_its_pools_round_down():
    valid = plan(dict(padding="valid", resolution=33, width=8, stages=2, blocks_per_stage=2), (33, 33, 3), 10)
    assert [layer.shape[0] for layer in valid.layers if layer.kind in ("conv", "max_pool")] == [31, 29, 14, 12, 10, 5]


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
        (dict(blocks_per_stage=(2, 2), stages=3), "blocks_per_stage"),
        (dict(resolution=32, blocks_per_stage=(1,) * 6), "blocks_per_stage"),
        (dict(blocks_per_stage=(2, 0)), "blocks_per_stage"),
        (dict(family="resnet", shortcut="zero_pad", stem="conv3", stem_width=32, width=16), "shortcut"),
        (dict(family="resnet", padding="valid"), "padding"),
        (dict(family="vgg", shortcut="zero_pad"), "shortcut"),
        (dict(padding="valid", resolution=8, stages=1, blocks_per_stage=4), "padding"),
        (dict(padding="valid", resolution=16, stages=3, blocks_per_stage=1), "padding"),
        (dict(stem="conv7_pool3", padding="valid", resolution=4, stages=1), "resolution"),
        (dict(head_layers=9), "head_layers"),
        (dict(stem_width=0), "stem_width"),
        (dict(padding="reflect"), "padding"),
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
