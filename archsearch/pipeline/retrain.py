"""Retraining from scratch on the full training split, and the one test evaluation.

The test split is used here and nowhere else: the architectures were chosen
on validation data before this step.
"""

import dataclasses

import keras
import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

from archsearch.model.backend import set_random_seed
from archsearch.model.builder import build_model, scoring_model
from archsearch.model.training import predict_classes, train
from archsearch.recipe.architecture import plan


@dataclasses.dataclass
class Evaluation:
    """Test figures of one trained model.

    Args:
        accuracy: fraction of test images classified right.
        balanced_error_rate: 1 - mean over classes of per-class recall.
        recall: per-class recall, in class order.
        seconds: training time.
        worker: the worker that trained it, in a run with workers (`None` in one process).
    """

    accuracy: float
    balanced_error_rate: float
    recall: list
    seconds: float = 0.0
    worker: str | None = None


def evaluate(predicted, labels, num_classes, seconds=0.0):
    """Scores predicted labels against true ones with scikit-learn.

    Args:
        predicted: predicted class per image.
        labels: true class per image.
        num_classes: number of classes (a class missing from both still counts).
        seconds: training time to carry along.

    Returns:
        An `Evaluation`.
    """
    classes = list(range(num_classes))
    return Evaluation(
        accuracy=float(accuracy_score(labels, predicted)),
        balanced_error_rate=float(1.0 - balanced_accuracy_score(labels, predicted)),
        recall=[float(r) for r in recall_score(labels, predicted, labels=classes, average=None, zero_division=0)],
        seconds=seconds,
    )


def retrain(point, dataset, seed, epochs, callbacks=(), base=None):
    """Trains one architecture from scratch on train + validation and tests it.

    Args:
        point: the architecture's point (recipe and training knobs).
        dataset: the loaded `Dataset`.
        seed: seeds weights, shuffling and augmentation.
        epochs: training epochs.
        callbacks: Keras callbacks for the training (progress, say).
        base: a transferred source's base, which the model starts from
            (with its trained weights) instead of the recipe's layers.

    Returns:
        A tuple `(model, evaluation)`: the trained model (without the
        point's test-time augmentation, which its scoring and export add)
        and its test figures.
    """
    set_random_seed(seed)
    keras.backend.clear_session()
    x, y = dataset.full_train()
    model = build_model(plan(point, dataset.shape, dataset.num_classes, base))
    seconds = train(model, point, x, y, epochs, callbacks=callbacks)
    predicted = predict_classes(scoring_model(model, point), dataset.x_test)
    return model, evaluate(predicted, dataset.y_test, dataset.num_classes, seconds)


def summarize(evaluations):
    """Returns mean and standard deviation over seeds of the test figures.

    Args:
        evaluations: one `Evaluation` per seed.

    Returns:
        A dict with `test_accuracy`, `test_accuracy_std`,
        `test_balanced_error_rate`, `test_balanced_error_rate_std`,
        `test_recall` (per class, mean), `seeds` and `train_seconds` (mean).
        The standard deviation is the sample one (ddof=1); None for one
        seed, where it is unknown, not zero.
    """
    accuracy = np.array([e.accuracy for e in evaluations])
    ber = np.array([e.balanced_error_rate for e in evaluations])
    several = len(evaluations) > 1
    return {
        "test_accuracy": float(accuracy.mean()),
        "test_accuracy_std": float(accuracy.std(ddof=1)) if several else None,
        "test_balanced_error_rate": float(ber.mean()),
        "test_balanced_error_rate_std": float(ber.std(ddof=1)) if several else None,
        "test_recall": np.mean([e.recall for e in evaluations], axis=0).tolist(),
        "seeds": len(evaluations),
        "train_seconds": float(np.mean([e.seconds for e in evaluations])),
    }
