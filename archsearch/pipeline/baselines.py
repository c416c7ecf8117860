"""Reference rows from the lecture notes, trained on the same splits.

- `least_squares`: a linear least-squares classifier on raw pixels (notes 000:
  72% train / 63% test on grayscale car-vs-truck).
- `mlp`: one hidden layer of 1,000 ReLU units on raw pixels, Adam at 1e-3
  (notes 002: 88% test on Fashion-MNIST).

They are reported in the leaderboard, marked as baselines, never ranked.
They fit raw pixels held in memory (as float32, four times the decoded
images): references for data sets of the notes' size. Where they would need
more than `MEMORY_FRACTION` of this machine's memory (`memory_needed()`),
the run leaves them out and says so: the searched networks read data larger
than memory from disk a batch at a time, the baselines cannot.
"""

import time

import keras
import numpy as np
from sklearn.linear_model import RidgeClassifier

from archsearch.model.backend import set_random_seed
from archsearch.model.training import predict_classes
from archsearch.pipeline.retrain import evaluate

MLP_EPOCHS = 10
MLP_UNITS = 1000
MEMORY_FRACTION = 0.25  # of this machine's memory: the most the baselines may hold at once


def memory_needed(dataset):
    """The bytes the larger of the two baselines holds at once, roughly.

    Least squares: the training images and their float32 copy. The MLP: the
    images, and its first layer's weights four times over (weights,
    gradients, Adam's two slots).
    """
    images = (len(dataset.y_train) + len(dataset.y_val)) * int(np.prod(dataset.shape))
    return max(5 * images, images + 16 * int(np.prod(dataset.shape)) * MLP_UNITS)


def _pixels(images):
    """Raw pixels as float32 in [0, 1], one row per image: in memory (scikit-learn fits arrays)."""
    return np.asarray(images).reshape(len(images), -1).astype(np.float32) / 255.0


def least_squares(dataset):
    """Fits a least-squares classifier (+-1 targets, no regularization to speak of) on raw pixels.

    Returns:
        A tuple `(params, train_accuracy, test Evaluation)`; `params` counts
        the fitted weights and biases: one column for two classes, as
        scikit-learn fits a binary problem, else one per class.
    """
    x, y = dataset.full_train()
    start = time.perf_counter()
    classifier = RidgeClassifier(alpha=1e-6, solver="lsqr").fit(_pixels(x), y)
    seconds = time.perf_counter() - start
    train_accuracy = float(np.mean(classifier.predict(_pixels(x)) == y))
    test = evaluate(classifier.predict(_pixels(dataset.x_test)), dataset.y_test, dataset.num_classes, seconds)
    return classifier.coef_.size + classifier.intercept_.size, train_accuracy, test


def mlp(dataset, seed=0, epochs=MLP_EPOCHS):
    """Trains a one-hidden-layer MLP on raw pixels.

    Returns:
        A tuple `(params, test Evaluation)`.
    """
    set_random_seed(seed)
    keras.backend.clear_session()
    x, y = dataset.full_train()
    model = keras.Sequential(
        [
            keras.Input(shape=dataset.shape, dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(MLP_UNITS, activation="relu"),
            keras.layers.Dense(dataset.num_classes, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    start = time.perf_counter()
    model.fit(np.asarray(x), y, batch_size=128, epochs=epochs, verbose=0)  # in memory, as Keras shuffles it
    seconds = time.perf_counter() - start
    test = evaluate(predict_classes(model, dataset.x_test), dataset.y_test, dataset.num_classes, seconds)
    return model.count_params(), test
