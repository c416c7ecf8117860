"""The builder matches the plan on the current backend (see test_backends.py for JAX)."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from archsearch.model.builder import build_model, compile_model
from archsearch.model.layers import RandomShift
from archsearch.recipe.architecture import plan

POINTS = {
    "small_vgg": dict(family="vgg", resolution=32, width=16, stages=2, blocks_per_stage=1),
    "vgg_no_bn_strided_mlp": dict(
        family="vgg", width=8, batch_norm=False, downsample="strided", head="mlp", dropout=0.3
    ),
    "small_resnet": dict(family="resnet", resolution=32, width=8, stages=2, blocks_per_stage=1),
    "bottleneck": dict(family="resnet", bottleneck=True, width=32, blocks_per_stage=2, augment=True),
    "stem_upsampled": dict(stem="conv7", resolution=64, width=8, blocks_per_stage=1),
    "grayscale_digits": dict(resolution=16, width=8, stages="auto"),
    # PyTorch's padding: a ZeroPadding2D before each strided 3x3 conv, on maps of odd sides too (30, 15, 8).
    "torch_padding_strided": dict(padding="torch", downsample="strided", resolution=30, width=8, stages=2),
    "zero_pad_block": dict(
        family="resnet",
        shortcut="zero_pad",
        downsample="block",
        padding="torch",
        stem="conv3",
        stem_width=8,
        width=8,
        blocks_per_stage=(1, 2, 1),
    ),
    "valid_padding": dict(padding="valid", width=8, stages=2, blocks_per_stage=2),
    "head_layers_2": dict(head="mlp", head_layers=2, head_units=16, width=8, stages=2, dropout=0.2),
    "conv7_pool3_torch": dict(
        family="resnet",
        stem="conv7_pool3",
        stem_width=16,
        padding="torch",
        downsample="block",
        resolution=64,
        width=8,
        blocks_per_stage=(1, 1),
    ),
    "halve_last_false": dict(width=8, stages=3, blocks_per_stage=1, halve_last=False),
}


@pytest.mark.parametrize("name", sorted(POINTS))
def test_count_params_equals_the_plan(name):
    shape = (8, 8, 1) if name == "grayscale_digits" else (32, 32, 3)
    arch = plan(POINTS[name], shape, 10)
    model = build_model(arch)
    assert model.count_params() == arch.params
    assert model.output_shape == (None, 10)
    images = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    probabilities = np.asarray(model.predict(images, verbose=0))
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["small_resnet", "torch_padding_strided", "zero_pad_block", "valid_padding", "conv7_pool3_torch"]
)
def test_layer_shapes_equal_the_plan(name):
    arch = plan(POINTS[name], (32, 32, 3), 10)
    model = build_model(arch)
    for layer in arch.layers[1:]:
        if layer.kind in ("preprocess", "augment"):
            continue
        assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.shape, layer.name


def _conv_by_hand(images, kernel, bias, pad, stride=2):
    """A conv in NumPy: `pad` is ((top, bottom), (left, right)) rows and columns of zeros."""
    padded = np.pad(images, ((0, 0), *pad, (0, 0)))
    size = kernel.shape[0]
    rows, cols = ((padded.shape[i] - size) // stride + 1 for i in (1, 2))
    out = np.zeros((len(images), rows, cols, kernel.shape[-1]))
    for i in range(rows):
        for j in range(cols):
            window = padded[:, stride * i : stride * i + size, stride * j : stride * j + size, :]
            out[:, i, j] = np.tensordot(window, kernel, axes=3) + bias
    return out


def test_torch_padding_puts_one_pixel_of_zeros_on_every_side_of_a_strided_3x3_conv():
    point = dict(batch_norm=False, width=4, stages=1, blocks_per_stage=1, downsample="strided", padding="torch")
    model = build_model(plan({**point, "resolution": 8}, (8, 8, 1), 10))
    rng = np.random.default_rng(0)
    down = model.get_layer("stage1_down")
    kernel, bias = rng.normal(size=(3, 3, 4, 4)).astype("float32"), rng.normal(size=4).astype("float32")
    down.set_weights([kernel, bias])
    images = rng.integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    probe = keras.Model(model.input, [model.get_layer("stage1_conv1_relu").output, down.output])
    before, after = probe.predict(images, verbose=0)
    assert before.shape == (2, 8, 8, 4) and after.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(after, _conv_by_hand(before, kernel, bias, ((1, 1), (1, 1))), rtol=1e-5, atol=1e-5)
    # Keras's `same` pads an 8-pixel side by 0 before and 1 after at stride 2: another function.
    same = keras.layers.Conv2D(4, 3, strides=2, padding="same")
    same.build(before.shape)
    same.set_weights([kernel, bias])
    keras_same = keras.ops.convert_to_numpy(same(before))
    np.testing.assert_allclose(keras_same, _conv_by_hand(before, kernel, bias, ((0, 1), (0, 1))), rtol=1e-5, atol=1e-5)
    assert not np.allclose(after, keras_same, atol=1e-2)


def test_a_zero_pad_shortcut_model_loads_where_only_keras_is_imported(tmp_path):
    # Option A's shortcut is built from Keras's own layers: loading model.keras needs no archsearch.
    model = build_model(plan(POINTS["zero_pad_block"], (32, 32, 3), 10))
    assert any(layer.name.endswith("_shortcut_zeros") for layer in model.layers)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "expected.npz", images=images, probabilities=model.predict(images, verbose=0))
    script = (
        "import sys, numpy, keras\n"
        "model = keras.saving.load_model('model.keras')\n"
        "data = numpy.load('expected.npz')\n"
        "numpy.testing.assert_allclose(model.predict(data['images'], verbose=0), data['probabilities'], atol=1e-6)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'archsearch'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_conv_has_no_bias_under_batch_norm_and_he_initialization():
    model = build_model(plan(POINTS["small_vgg"], (32, 32, 3), 10))
    conv = model.get_layer("stage1_conv1")
    assert conv.use_bias is False
    assert type(conv.kernel_initializer).__name__ == "HeNormal"


def test_model_takes_raw_uint8_of_native_size_and_resizes_inside():
    model = build_model(plan(dict(resolution=24, width=8, stages=1), (40, 30, 3), 5))
    assert model.input.dtype == "uint8"
    assert tuple(model.get_layer("preprocess_resize").output.shape[1:]) == (24, 24, 3)


def test_a_model_trains_a_step():
    arch = plan(POINTS["small_vgg"], (32, 32, 3), 10)
    model = compile_model(build_model(arch), arch.point, steps=2)
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 8), epochs=1, batch_size=4, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


def test_mixed_precision_keeps_probabilities_in_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(plan(POINTS["small_resnet"], (32, 32, 3), 10))
        assert model.get_layer("stage1_block1_conv1").compute_dtype == "bfloat16"
        probabilities = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
        assert str(probabilities.dtype) == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def _shifts_of(image, out, pad):
    """The offsets (dy, dx) by which `out` is `image` shifted with zero fill."""
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    h, w = image.shape[:2]
    return [
        (dy, dx)
        for dy in range(-pad, pad + 1)
        for dx in range(-pad, pad + 1)
        if np.array_equal(padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w], out)
    ]


def test_random_shift_moves_each_image_by_its_own_offset_with_zero_fill():
    images = np.random.default_rng(0).uniform(1, 2, (64, 8, 8, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(RandomShift(2, seed=1)(images, training=True))
    offsets = [_shifts_of(image, shifted, 2) for image, shifted in zip(images, out)]
    assert all(len(found) == 1 for found in offsets)  # every output is one shift of its own input
    assert len({found[0] for found in offsets}) >= 15  # of 25 possible: per image, not per batch
    assert np.array_equal(keras.ops.convert_to_numpy(RandomShift(2)(images, training=False)), images)


def test_augmentation_compiles_so_training_stays_under_xla():
    # One layer with supports_jit=False (Keras's RandomTranslation) turns XLA off for the whole model.
    model = build_model(plan({"width": 4, "stages": 1, "augment": True}, (16, 16, 3), 10))
    assert any(isinstance(layer, RandomShift) for layer in model.layers)
    assert all(layer.supports_jit for layer in model.layers)


def test_a_model_with_augmentation_survives_save_and_load(tmp_path):
    architecture = plan({"width": 4, "stages": 1, "augment": True, "batch_size": 8}, (16, 16, 3), 10)
    model = compile_model(build_model(architecture), architecture.point, 1)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype="uint8")
    model.fit(images, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
