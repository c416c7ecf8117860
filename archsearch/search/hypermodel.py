"""Keras Tuner's `HyperModel` of a space: what one trial builds, trains and scores.

`SpaceHyperModel.build()` plans the sampled point and rejects infeasible
ones before any training: from the plan (impossible points, `max_params`,
`max_flops`, `max_memory`) before the model is built, then from the untrained
model's measured cost (`max_latency_ms`, `max_model_bytes`;
`archsearch.model.cost`). `fit()` trains and scores it on the validation
split. The tuners that run it are in `archsearch.search.tuners`.
"""

import math
import time

import keras
import keras_tuner
import numpy as np
from sklearn.metrics import balanced_accuracy_score

from archsearch.model import cost
from archsearch.model.builder import build_model, scoring_model
from archsearch.model.training import predict_classes, train
from archsearch.search.tensorboard_logs import write_scores

OBJECTIVE = "val_accuracy"


class _TrialMonitor(keras.callbacks.Callback):
    """Stops a diverging trial at a non-finite loss, and times compilation.

    Keras hands each batch end its step's loss as a Python number, having
    waited for the step: for an `async_safe` callback on JAX, PyTorch and
    NumPy, on threads of its own, so the training loop goes on queueing
    steps (TensorFlow's trainer waits in the loop). The loss is checked at
    every step; a non-finite one fails the trial at the loop's next step or
    epoch end. The end times of the first `TIMED_STEPS` steps give
    `compile_seconds`: the first step's time less a typical later one's.
    """

    TIMED_STEPS = 10
    async_safe = True

    def __init__(self):
        super().__init__()
        self.start, self.step_ends = 0.0, []

    def on_train_begin(self, logs=None):
        if not self.step_ends:  # from the first of two_phase's two fits
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if len(self.step_ends) < self.TIMED_STEPS:
            self.step_ends.append(time.perf_counter())
        self._check(loss, f"step {batch}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(float((logs or {}).get("loss", 0.0)), f"epoch {epoch + 1}")

    @staticmethod
    def _check(loss, when):
        if not math.isfinite(loss):
            raise keras_tuner.errors.FailedTrialError(f"diverged: loss is {loss} at {when}")

    @property
    def compile_seconds(self):
        steps = np.diff([self.start, *sorted(self.step_ends)])  # the threads may record their ends out of order
        if len(steps) < 2:
            return float("nan")
        return max(0.0, float(steps[0] - np.median(steps[1:])))


def _out_of_memory(error):
    """Whether an error from training is the device (or host) running out of memory."""
    text = f"{type(error).__name__}: {error}"
    return (
        isinstance(error, MemoryError)
        or "ResourceExhausted" in text
        or "RESOURCE_EXHAUSTED" in text
        or "out of memory" in text.lower()
    )


class SpaceHyperModel(keras_tuner.HyperModel):
    """The Keras Tuner hypermodel of a space, for one dataset.

    Args:
        space: the `Space` to search.
        dataset: the loaded `Dataset` (only its shape and class count are
            used to build; `fit()` receives the arrays).
        base: a transferred source's base, for a space with `transfer`
            (`archsearch.pipeline.transfer.resolve_transfer()`).

    Example:

    ```python
    hypermodel = SpaceHyperModel(space, dataset)
    model = hypermodel.build(keras_tuner.HyperParameters())
    ```
    """

    def __init__(self, space, dataset, base=None):
        super().__init__(name=space.name)
        self.space, self.base = space, base
        self.input_shape = dataset.shape
        self.num_classes = dataset.num_classes
        self.max_memory = cost.memory_budget(space.search)  # on a worker, the worker's own device

    @property
    def activation_bytes(self):
        """Bytes per activation in the memory estimate: 2 under a bfloat16 or float16 policy, else 4."""
        return 2 if keras.mixed_precision.dtype_policy().compute_dtype in ("bfloat16", "float16") else 4

    def declare_hyperparameters(self, hp):
        """Registers the space's searched dimensions on `hp`, at their defaults, building nothing."""
        self.space.sample(hp)

    def architecture(self, hp):
        """Plans the point `hp` holds; raises `InfeasibleArchitecture` if it cannot be trained.

        Its budgets that need no model (`max_params`, `max_flops`, `max_memory`) are checked here.
        """
        point = self.space.sample(hp)
        return self.space.architecture(
            point, self.input_shape, self.num_classes, self.max_memory, self.activation_bytes, self.base
        )

    def figures(self, architecture):
        """Returns what trials.csv shows of a planned architecture besides its scores.

        `params`, `flops` and `memory_estimate_bytes` from the plan, and the
        cost columns (`archsearch.model.cost.COST_COLUMNS`) where this process
        has measured its model.
        """
        measured = cost.cached(architecture)
        return {
            "params": architecture.params,
            "flops": architecture.flops,
            "memory_estimate_bytes": architecture.memory_estimate(activation_bytes=self.activation_bytes),
            **(measured.to_dict() if measured else {}),
        }

    def build(self, hp):
        """Builds the point's model, once its plan and its measured cost are within the search's budgets.

        Raises:
            InfeasibleArchitecture: naming the budget it breaks, before any training.
        """
        architecture = self.architecture(hp)
        model = build_model(architecture)
        # Measured once per process (Hyperband builds a trial again each round), untrained, before training.
        cost.check_budgets(architecture, cost.measure(architecture, model), self.space.search)
        return model

    def fit(self, hp, model, x, y, validation_data, callbacks=(), epochs=None, initial_epoch=0, **kwargs):
        """Trains `model` and returns its validation scores, size and time.

        The validation split is scored once, after training. Hyperband passes
        `epochs` and `initial_epoch`; otherwise the point's own `epochs` is used.
        """
        architecture = self.architecture(hp)
        point = architecture.point
        epochs = epochs or point["epochs"]
        monitor = _TrialMonitor()
        try:
            seconds = train(model, point, x, y, epochs, initial_epoch=initial_epoch, callbacks=[*callbacks, monitor])
        except Exception as error:
            if _out_of_memory(error):
                raise keras_tuner.errors.FailedTrialError(
                    f"out of memory: {str(error).splitlines()[0][:300]}"
                ) from None
            raise
        x_val, y_val = validation_data
        predicted = predict_classes(scoring_model(model, point), x_val)
        scores = {
            OBJECTIVE: float(np.mean(predicted == y_val)),
            "val_balanced_error_rate": 1.0 - balanced_accuracy_score(y_val, predicted),
        }
        write_scores(callbacks, scores, epochs)
        return {
            **scores,
            **self.figures(architecture),
            "seconds": seconds,
            "compile_seconds": monitor.compile_seconds,
            "epochs": float(epochs),
        }
