"""The training recipe of the fast CIFAR trainers: label smoothing, warmup and one-cycle, test-time mirroring."""

import keras
import numpy as np
import pytest

from archsearch import Recipe, Space, Train
from archsearch.data.declaration import Dataset
from archsearch.errors import SpaceError
from archsearch.model import cost
from archsearch.model.builder import build_model, loss, mirrored, scoring_model, with_mirror_mean
from archsearch.model.schedules import learning_rate
from archsearch.model.training import TrainingBatches, predict_probabilities, train
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan


def point(**knobs):
    return {**dimensions.defaults(), **knobs}


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in range(steps + 1)])


def test_a_smoothed_loss_is_kerass_formula_and_differs_from_the_plain_one():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], "float32")
    labels = np.array([0, 2])
    one_hot = np.eye(3, dtype="float32")[labels]
    s = 0.2
    smoothed = float(loss(point(label_smoothing=s))(one_hot, probabilities))
    targets = (1 - s) * one_hot + s / 3  # Keras's formula (`CategoricalCrossentropy(label_smoothing=...)`)
    assert smoothed == pytest.approx(float(np.mean(-np.sum(targets * np.log(probabilities), axis=1))), rel=1e-5)
    plain = float(np.mean(keras.losses.get(loss(point()))(labels, probabilities)))
    assert plain == pytest.approx(float(np.mean(-np.log(probabilities[[0, 1], labels]))), rel=1e-5)
    assert smoothed > plain  # here both are confident and right: smoothing penalizes the confidence


def test_a_smoothing_point_trains_on_one_hot_labels_and_a_plain_one_on_integers():
    x, y = np.zeros((8, 4, 4, 1), "uint8"), np.arange(8) % 3
    assert TrainingBatches(x, y, 4, seed=0, num_classes=3)[0][1].shape == (4, 3)
    assert TrainingBatches(x, y, 4, seed=0)[0][1].shape == (4,)
    architecture = plan(point(width=4, stages=1, blocks_per_stage=1, label_smoothing=0.1), (4, 4, 1), 3)
    model = build_model(architecture)
    train(model, architecture.point, x, y, epochs=1)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    assert model.loss.get_config()["label_smoothing"] == 0.1


def test_onecycle_rises_linearly_to_the_peak_then_falls_linearly_to_zero():
    steps = 100
    lr = rates(learning_rate(point(schedule="onecycle", learning_rate=0.4), steps), steps)
    assert lr.argmax() == 20 and lr.max() == pytest.approx(0.4)  # warmup "auto": a fifth of the steps
    assert lr[0] == 0 and lr[-1] == pytest.approx(0, abs=1e-7)
    np.testing.assert_allclose(np.diff(lr[:21]), 0.02, rtol=1e-4)  # linear up
    np.testing.assert_allclose(np.diff(lr[20:]), -0.005, rtol=1e-4)  # linear down
    explicit = rates(learning_rate(point(schedule="onecycle", learning_rate=0.4, warmup=0.5), steps), steps)
    assert explicit.argmax() == 50


def test_warmup_comes_before_cosine_and_constant_and_auto_means_none_there():
    steps = 50
    cosine = rates(learning_rate(point(schedule="cosine", learning_rate=0.1, warmup=0.2), steps), steps)
    assert cosine[0] == 0 and cosine.argmax() == 10 and cosine.max() == pytest.approx(0.1)
    assert np.all(np.diff(cosine[10:]) <= 1e-9) and cosine[-1] == pytest.approx(0, abs=1e-7)
    constant = rates(learning_rate(point(schedule="constant", learning_rate=0.1, warmup=0.2), steps), steps)
    np.testing.assert_allclose(constant[10:], 0.1, rtol=1e-6)
    assert constant[5] == pytest.approx(0.05)
    assert learning_rate(point(schedule="constant", learning_rate=0.1), steps) == 0.1
    plain = learning_rate(point(schedule="cosine", learning_rate=0.1), steps)  # as before the warmup knob
    assert isinstance(plain, keras.optimizers.schedules.CosineDecay) and plain.warmup_target is None


def test_a_onecycle_schedule_survives_a_compiled_models_save_and_load(tmp_path):
    architecture = plan(point(width=4, stages=1, blocks_per_stage=1, schedule="onecycle"), (4, 4, 1), 2)
    model = build_model(architecture)
    train(model, architecture.point, np.zeros((8, 4, 4, 1), "uint8"), np.arange(8) % 2, epochs=1)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras").optimizer.get_config()["learning_rate"]
    assert reloaded == model.optimizer.get_config()["learning_rate"]
    assert reloaded["registered_name"] == "archsearch>OneCycle" and reloaded["config"]["steps"] == 1


def test_the_mirror_is_exact_and_the_tta_model_is_the_mean_over_each_image_and_its_mirror():
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 5, 3), dtype=np.uint8)
    image = keras.Input((8, 5, 3), dtype="uint8")
    np.testing.assert_array_equal(keras.Model(image, mirrored(image)).predict(images, verbose=0), images[:, :, ::-1])
    model = build_model(plan(point(width=4, stages=1, augment=True), (8, 5, 3), 4))
    tta = with_mirror_mean(model)
    expected = (predict_probabilities(model, images) + predict_probabilities(model, images[:, :, ::-1].copy())) / 2
    np.testing.assert_allclose(predict_probabilities(tta, images), expected, atol=1e-6)
    # The mean of an image and its mirror is the same mean for the mirror: the model cannot tell them apart.
    np.testing.assert_allclose(tta.predict(images, verbose=0), tta.predict(images[:, :, ::-1], verbose=0), atol=1e-6)
    assert tta.count_params() == model.count_params() + 5 * 5  # the reversed identity, not trainable
    assert scoring_model(model, point()) is model and scoring_model(model, point(tta=True)).name == f"{model.name}_tta"


def test_tta_is_measured_apart_as_the_model_it_deploys():
    plain = plan(point(width=4, stages=1, blocks_per_stage=1), (8, 8, 1), 2)
    mirrored_mean = plan(point(width=4, stages=1, blocks_per_stage=1, tta=True), (8, 8, 1), 2)
    assert cost.measure(mirrored_mean) is not cost.measure(plain)
    assert cost.measure(mirrored_mean).model_bytes > cost.measure(plain).model_bytes


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"label_smoothing": 0.5}, "label_smoothing=0.5: expected a float >= 0.0 and < 0.5"),
        ({"warmup": 1.0}, "warmup=1.0: expected a float >= 0.0 and < 1.0 or 'auto'"),
        ({"schedule": "linear"}, "schedule='linear': expected one of 'constant', 'cosine', 'onecycle'"),
        ({"tta": 1}, "tta=1: expected True or False"),
    ],
)
def test_bad_recipe_knobs_say_what_was_expected(knobs, message):
    with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Train(**knobs)


def test_a_space_that_names_no_new_knob_keeps_its_fingerprint():
    before = Space(name="x", train=Train(epochs=3)).to_dict()
    for name in ("warmup", "label_smoothing", "tta"):
        assert name not in before["dimensions"]
    assert Space(name="x", train=Train(epochs=3, tta=True)).to_dict()["dimensions"]["tta"] is True


def _dataset(seed=0):
    rng = np.random.default_rng(seed)
    x = lambda n: rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)  # noqa: E731
    y = lambda n: np.arange(n) % 2  # noqa: E731
    return Dataset(x(24), y(24), x(8), y(8), x(40), y(40), ["a", "b"], "arrays:test", "test")


def test_the_search_and_the_retraining_score_with_the_points_tta(monkeypatch):
    import keras_tuner

    from archsearch.model import builder
    from archsearch.pipeline import retrain
    from archsearch.search import hypermodel

    scored = []

    def spy(model, point):
        scored.append(point["tta"])
        return builder.scoring_model(model, point)

    monkeypatch.setattr(hypermodel, "scoring_model", spy)
    monkeypatch.setattr(retrain, "scoring_model", spy)
    dataset = _dataset()
    knobs = dict(width=4, stages=1, blocks_per_stage=1, epochs=1, batch_size=8, tta=True)
    space = Space(
        name="tta", recipe=Recipe(width=4, stages=1, blocks_per_stage=1), train=Train(epochs=1, batch_size=8, tta=True)
    )
    search = hypermodel.SpaceHyperModel(space, dataset)
    hp = keras_tuner.HyperParameters()
    model = search.build(hp)
    figures = search.fit(hp, model, dataset.x_train, dataset.y_train, (dataset.x_val, dataset.y_val))
    mirror_mean = np.argmax(predict_probabilities(with_mirror_mean(model), dataset.x_val), axis=1)
    assert figures["val_accuracy"] == np.mean(mirror_mean == dataset.y_val)

    model, evaluation = retrain.retrain(point(**knobs), dataset, seed=0, epochs=1)
    mirror_mean = np.argmax(predict_probabilities(with_mirror_mean(model), dataset.x_test), axis=1)
    assert evaluation.accuracy == np.mean(mirror_mean == dataset.y_test)
    assert scored == [True, True]
