"""The builder matches the plan on the current backend (see test_backends.py for JAX)."""

import keras
import numpy as np
import pytest

from archsearch.architecture import plan
from archsearch.builder import build_model, compile_model

POINTS = {
    "small_vgg": dict(family="vgg", resolution=32, width=16, stages=2, blocks_per_stage=1),
    "vgg_no_bn_strided_mlp": dict(family="vgg", width=8, batch_norm=False, downsample="strided", head="mlp", dropout=0.3),
    "small_resnet": dict(family="resnet", resolution=32, width=8, stages=2, blocks_per_stage=1),
    "bottleneck": dict(family="resnet", bottleneck=True, width=32, blocks_per_stage=2, augment=True),
    "stem_upsampled": dict(stem="conv7", resolution=64, width=8, blocks_per_stage=1),
    "grayscale_digits": dict(resolution=16, width=8, stages="auto"),
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


def test_layer_shapes_equal_the_plan():
    arch = plan(POINTS["small_resnet"], (32, 32, 3), 10)
    model = build_model(arch)
    for layer in arch.layers[1:]:
        if layer.kind in ("preprocess", "augment"):
            continue
        assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.shape, layer.name


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
    history = model.fit(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 8), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert keras.backend.backend() in ("tensorflow", "jax", "torch")


def test_mixed_precision_keeps_probabilities_in_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model(plan(POINTS["small_resnet"], (32, 32, 3), 10))
        assert model.get_layer("stage1_block1_conv1").compute_dtype == "bfloat16"
        probabilities = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
        assert str(probabilities.dtype) == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
