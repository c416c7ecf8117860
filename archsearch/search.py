"""The search: Keras Tuner explores a space on the training and validation splits.

`SpaceHyperModel` is the Keras Tuner `HyperModel` of a space: `build()` plans
the sampled point and rejects infeasible ones before any training, `fit()`
trains and scores it on the validation split. `make_tuner()` returns one of
Keras Tuner's own tuners, with a one-line report per finished trial.
"""

import json
import math
import time
import warnings

import keras
import keras_tuner
import keras_tuner.src.config
import keras_tuner.src.utils
from keras_tuner.src.engine import tuner_utils
import numpy as np
from sklearn.metrics import balanced_accuracy_score

from archsearch.backend import set_random_seed
from archsearch.builder import build_model
from archsearch.errors import ArchsearchError, InfeasibleArchitecture
from archsearch.files import atomic_file
from archsearch.tensorboard_logs import write_scores
from archsearch.training import predict_classes, train

# Keras Tuner prints every failed trial's traceback unless told otherwise; the
# reasons are in trials.csv, and `archsearch --debug` turns the tracebacks back on.
keras_tuner.src.config.DEBUG = False


def _save_json_atomically(path, obj):
    """Keras Tuner's `utils.save_json` through a temporary file and a rename.

    Its own truncates, then writes: a kill in between left an empty
    `trial.json` that stopped `--resume` with a JSONDecodeError
    (found by `benchmarks/random_kills.py`).
    """
    text = json.dumps(obj)
    with atomic_file(path) as file:
        file.write(text)
    return text


keras_tuner.src.utils.save_json = _save_json_atomically

OBJECTIVE = "val_accuracy"
INFEASIBLE = "infeasible: "  # how an infeasible trial's reason starts
# The metric that marks an infeasible sample: metrics, unlike a trial's message,
# reach a chief oracle from a worker (Keras Tuner's Trial proto has no message).
INFEASIBLE_METRIC = "infeasible"
INFEASIBLE_LIMIT = 10  # infeasible samples allowed per trial of the budget


class SearchStopped(ArchsearchError):
    """Too many trials in a row failed; the message sums up why."""


class _TrialMonitor(keras.callbacks.Callback):
    """Stops a diverging trial at a non-finite loss, and times compilation.

    Only the first `TIMED_STEPS` steps wait for their loss: the first one's
    time, less that of a typical later one, is reported as `compile_seconds`.
    Later steps are not read, so the accelerator's queue of steps never drains
    on the host; the loss is checked again at every epoch's end.
    """

    TIMED_STEPS = 10

    def __init__(self):
        super().__init__()
        self.step_ends = []

    def on_train_begin(self, logs=None):
        self.step_ends = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        if len(self.step_ends) > self.TIMED_STEPS:
            return
        loss = float((logs or {}).get("loss", 0.0))  # waits for the step to finish
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
        steps = np.diff(self.step_ends)
        if len(steps) < 2:
            return float("nan")
        return max(0.0, float(steps[0] - np.median(steps[1:])))


def _out_of_memory(error):
    """Whether an error from training is the device (or host) running out of memory."""
    text = f"{type(error).__name__}: {error}"
    return isinstance(error, MemoryError) or "ResourceExhausted" in text or "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


class SpaceHyperModel(keras_tuner.HyperModel):
    """The Keras Tuner hypermodel of a space, for one dataset.

    Args:
        space: the `Space` to search.
        dataset: the loaded `Dataset` (only its shape and class count are
            used to build; `fit()` receives the arrays).

    Example:

    ```python
    hypermodel = SpaceHyperModel(space, dataset)
    model = hypermodel.build(keras_tuner.HyperParameters())
    ```
    """

    def __init__(self, space, dataset):
        super().__init__(name=space.name)
        self.space = space
        self.input_shape = dataset.shape
        self.num_classes = dataset.num_classes

    def architecture(self, hp):
        """Plans the point `hp` holds; raises `InfeasibleArchitecture` if it cannot be trained."""
        return self.space.architecture(self.space.sample(hp), self.input_shape, self.num_classes)

    def build(self, hp):
        return build_model(self.architecture(hp))

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
                raise keras_tuner.errors.FailedTrialError(f"out of memory: {str(error).splitlines()[0][:300]}") from None
            raise
        x_val, y_val = validation_data
        predicted = predict_classes(model, x_val)
        scores = {
            OBJECTIVE: float(np.mean(predicted == y_val)),
            "val_balanced_error_rate": 1.0 - balanced_accuracy_score(y_val, predicted),
        }
        write_scores(callbacks, scores, epochs)
        return {
            **scores,
            "params": architecture.params,
            "flops": architecture.flops,
            "seconds": seconds,
            "compile_seconds": monitor.compile_seconds,
            "epochs": float(epochs),
        }


def _mixin(tuner_class):
    """Returns a subclass of a Keras Tuner tuner with archsearch's trial policy.

    - Infeasible samples do not use up the budget: `max_trials` counts trials
      that train, up to `INFEASIBLE_LIMIT` infeasible samples per trial.
    - Failures: the search stops after `max_consecutive_failures` real
      failures in a row (Keras Tuner's own limit would count infeasible ones).
    - Each trial is seeded from its id; `trial_callbacks(trial_id)` adds
      callbacks for its training; `on_trial_end(tuner)` is called after each.
    - A failed trial's reason is recorded where it is raised: it becomes the
      trial's message (Keras Tuner's would be the traceback), and its size and
      whether it was infeasible are reported to the oracle as metrics.
    """

    class Tuner(tuner_class):
        def __init__(self, *args, budget, on_trial_end=None, trial_callbacks=None, max_consecutive_failures=5, **kwargs):
            super().__init__(*args, max_consecutive_failed_trials=10**9, **kwargs)
            self.budget = budget
            self.report = on_trial_end
            self.trial_callbacks = trial_callbacks
            self.max_consecutive_failures = max_consecutive_failures
            self.failure_reasons = {}  # trial id -> reason, until the trial ends

        def on_search_begin(self):
            super().on_search_begin()
            self._extend_budget()

        def run_trial(self, trial, *args, **kwargs):
            try:
                return self._train(trial, *args, **kwargs)
            except Exception as error:
                self._record_failure(trial, error)
                if isinstance(error, InfeasibleArchitecture):  # failed for good: not to be retried
                    raise keras_tuner.errors.FailedTrialError(self.failure_reasons[trial.trial_id]) from error
                raise

        def _record_failure(self, trial, error):
            """Reports a failed trial's metrics to the oracle and keeps its reason for `on_trial_end`.

            Keras Tuner takes metrics only with the objective: a failed trial's is NaN
            (and NumPy's warning about its best value, NaN, is of no use to anyone).
            """
            infeasible = isinstance(error, InfeasibleArchitecture)
            architecture = error.architecture if infeasible else self.hypermodel.architecture(trial.hyperparameters)
            metrics = {OBJECTIVE: math.nan, **({INFEASIBLE_METRIC: 1.0} if infeasible else {})}
            if architecture:
                metrics.update(params=architecture.params, flops=architecture.flops)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
                self.oracle.update_trial(trial.trial_id, metrics)
            self.failure_reasons[trial.trial_id] = failure_reason(error)

        def _train(self, trial, *args, **kwargs):
            # Each trial's weights and shuffling depend on its id alone, so a
            # resumed search repeats an interrupted trial exactly.
            set_random_seed(self.oracle.seed + int(trial.trial_id))
            if self.trial_callbacks:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), *self.trial_callbacks(trial.trial_id)]
            if isinstance(self, keras_tuner.Hyperband):
                return super().run_trial(trial, *args, **kwargs)
            # Only Hyperband resumes from a trial's weights (the best are retrained from scratch):
            # Keras Tuner's own run_trial would save them at every epoch, as the validation
            # score, computed after training, is never in the epoch logs.
            callbacks = self._deepcopy_callbacks(kwargs.pop("callbacks", []))
            self._configure_tensorboard_dir(callbacks, trial)  # per-trial log directories and HParams, as run_trial does
            callbacks.append(tuner_utils.TunerCallback(self, trial))
            return self._build_and_fit_model(trial, *args, callbacks=callbacks, **kwargs)

        def on_trial_end(self, trial):
            trial.message = self.failure_reasons.pop(trial.trial_id, trial.message)
            super().on_trial_end(trial)
            if self.report:
                self.report(self)
            self._check_failures()
            self._extend_budget()

        def _infeasible(self):
            return [t for t in self.oracle.trials.values() if t.status == "FAILED" and t.metrics.exists(INFEASIBLE_METRIC)]

        def _extend_budget(self):
            infeasible = len(self._infeasible())
            if infeasible > INFEASIBLE_LIMIT * self.budget:
                raise SearchStopped(
                    f"{infeasible} sampled architectures were infeasible (e.g. {self._infeasible()[-1].message}); "
                    "loosen the constraints or the space (`archsearch describe` shows which samples fail)"
                )
            self.oracle.max_trials = self.budget + infeasible

        def _check_failures(self):
            streak = []
            for trial in (self.oracle.trials[i] for i in self.oracle.end_order):
                if trial.status == "COMPLETED":
                    streak = []
                elif trial.status == "FAILED" and not trial.metrics.exists(INFEASIBLE_METRIC):
                    streak.append(trial)
            if len(streak) >= self.max_consecutive_failures:
                lines = "\n".join(f"  trial {t.trial_id}: {t.message}" for t in streak)
                raise SearchStopped(f"the search stopped after {len(streak)} failed trials in a row:\n{lines}")

    Tuner.__name__ = tuner_class.__name__
    return Tuner


_TUNERS = {
    "random": _mixin(keras_tuner.RandomSearch),
    "bayesian": _mixin(keras_tuner.BayesianOptimization),
    "hyperband": _mixin(keras_tuner.Hyperband),
}


def failure_reason(error):
    """Returns why a trial failed, as `trials.csv` shows it.

    Args:
        error: the exception that ended the trial.

    Returns:
        `infeasible: <field>=<value>: <why>` for an infeasible sample; the
        message of a `FailedTrialError` (`diverged: ...`, `out of memory: ...`);
        else `<type>: <first line of the message>` (Keras's run over several).
    """
    if isinstance(error, InfeasibleArchitecture):
        return INFEASIBLE + str(error)
    if isinstance(error, keras_tuner.errors.FailedTrialError):
        return str(error)
    return f"{type(error).__name__}: {next(iter(str(error).strip().splitlines()), '')}"


def make_tuner(space, dataset, directory, *, overwrite, on_trial_end=None, trial_callbacks=None):
    """Returns the Keras Tuner tuner a space asks for.

    Args:
        space: the `Space`; its `search` section chooses the tuner.
        dataset: the loaded `Dataset`.
        directory: where Keras Tuner keeps its state (trial JSON files,
            checkpoints); a run resumes from it when `overwrite` is false.
        overwrite: start afresh rather than resume.
        on_trial_end: called with the tuner after each trial.
        trial_callbacks: called with a trial's id, returns Keras callbacks for
            that trial's training alone (its per-epoch history, say).

    Returns:
        A Keras Tuner tuner whose `search(x, y, validation_data=...)` runs it.
    """
    search = space.search
    kwargs = dict(
        hypermodel=SpaceHyperModel(space, dataset),
        objective=keras_tuner.Objective(OBJECTIVE, "max"),
        # Keras Tuner reads a seed of 0 as "no seed" (`seed or random.randint(...)`) and would
        # sample other points in every run: it gets the space's seed plus one.
        seed=search.seed + 1,
        directory=str(directory),
        project_name="tuner",
        overwrite=overwrite,
        on_trial_end=on_trial_end,
        trial_callbacks=trial_callbacks,
        max_consecutive_failures=search.max_consecutive_failures,
        budget=search.max_trials,
    )
    if search.tuner == "hyperband":
        # Hyperband has no cap of its own: the budget sets the oracle's max_trials.
        return _TUNERS["hyperband"](max_epochs=space.max_epochs(), factor=3, hyperband_iterations=None, **kwargs)
    return _TUNERS[search.tuner](max_trials=search.max_trials, **kwargs)
