"""Training and prediction in batches of one shape (each step compiles once)."""

import keras
import numpy as np

from archsearch.model.builder import build_model
from archsearch.model.training import TrainingBatches, predict_classes, predict_probabilities, train
from archsearch.recipe.architecture import plan


def test_training_batches_are_full_reshuffled_each_epoch_and_cover_every_image():
    x, y = np.arange(103)[:, None], np.arange(103)
    batches = TrainingBatches(x, y, batch_size=10, seed=0)
    assert len(batches) == 10  # the remainder of 3 is left out of each epoch
    seen, orders = set(), []
    for _ in range(5):
        epoch = [batches[i] for i in range(len(batches))]
        assert all(bx.shape == (10, 1) and np.array_equal(bx[:, 0], by) for bx, by in epoch)
        orders.append(np.concatenate([by for _, by in epoch]))
        seen |= set(orders[-1].tolist())
        batches.on_epoch_end()
    assert all(len(set(order.tolist())) == 100 for order in orders)  # no image twice in an epoch
    assert not np.array_equal(orders[0], orders[1])
    assert len(seen) == 103  # left-out images differ from epoch to epoch


def test_training_batches_are_seeded_and_capped_at_the_data_size():
    x, y = np.arange(50)[:, None], np.arange(50)
    assert np.array_equal(TrainingBatches(x, y, 8, seed=3)[0][1], TrainingBatches(x, y, 8, seed=3)[0][1])
    keras.utils.set_random_seed(7)
    first = TrainingBatches(x, y, 8)[0][1]
    keras.utils.set_random_seed(7)
    assert np.array_equal(TrainingBatches(x, y, 8)[0][1], first)  # seed=None follows Keras's global seed
    small = TrainingBatches(x[:5], y[:5], batch_size=64)
    assert len(small) == 1 and small[0][0].shape == (5, 1)


def test_padded_prediction_equals_keras_predict():
    architecture = plan({"width": 4, "stages": 1, "batch_size": 16}, (8, 8, 1), 3)
    model = build_model(architecture)
    images = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 1), dtype="uint8")
    train(model, architecture.point, images, np.arange(37) % 3, epochs=1)
    expected = model.predict(images, verbose=0)
    for batch_size in (5, 37, 512):
        np.testing.assert_allclose(predict_probabilities(model, images, batch_size), expected, atol=1e-6)
    assert np.array_equal(predict_classes(model, images), np.argmax(expected, axis=1))


def test_steps_per_execution_changes_no_update(monkeypatch):
    # 7 steps an epoch: with 3 steps per execution the last execution of each epoch has 1.
    from archsearch.model import builder

    architecture = plan({"width": 4, "stages": 1, "batch_size": 8, "augment": True}, (8, 8, 1), 3)
    images = np.random.default_rng(0).integers(0, 256, (60, 8, 8, 1), dtype="uint8")
    weights = {}
    for steps in (1, 3):
        monkeypatch.setattr(builder, "STEPS_PER_EXECUTION", steps)
        keras.utils.set_random_seed(0)
        model = build_model(architecture)
        train(model, architecture.point, images, np.arange(60) % 3, epochs=2)
        assert model.steps_per_execution == steps and model.optimizer.iterations.numpy() == 14
        weights[steps] = model.get_weights()
    for one, three in zip(weights[1], weights[3]):
        np.testing.assert_allclose(one, three, rtol=1e-5, atol=1e-6)
