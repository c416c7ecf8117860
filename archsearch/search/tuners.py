"""The search: Keras Tuner explores a space on the training and validation splits.

`SpaceHyperModel` is the Keras Tuner `HyperModel` of a space: `build()` plans
the sampled point and rejects infeasible ones before any training, `fit()`
trains and scores it on the validation split. `make_tuner()` returns a Keras
Tuner tuner and its oracle (`archsearch.search.oracle`), with archsearch's trial policy.
"""

import json
import math
import time
import warnings

import grpc
import keras
import keras_tuner
import keras_tuner.src.config
import keras_tuner.src.utils
from keras_tuner.src.engine import tuner_utils
import numpy as np
from sklearn.metrics import balanced_accuracy_score

from archsearch.model.backend import set_random_seed
from archsearch.model.builder import build_model
from archsearch.errors import ArchsearchError, InfeasibleArchitecture
from archsearch.files import atomic_file
from archsearch.search.oracle import ALIVE, EPOCH_REPORT, FAILURE, INFEASIBLE, INFEASIBLE_METRIC, policy
from archsearch.search.tensorboard_logs import write_scores
from archsearch.model.training import predict_classes, train

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
IDLE_SECONDS = 1.0  # between a tuner's asks for a trial while the oracle has none to give
ALIVE_SECONDS = 5.0  # the longest a training tuner goes without a report to the oracle, epochs allowing


class SearchStopped(ArchsearchError):
    """The oracle stopped the search (too many failed or infeasible trials); the message sums up why."""


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
        self.start, self.step_ends = time.perf_counter(), []

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


class _TunerReports(tuner_utils.TunerCallback):
    """Keras Tuner's callback to the tuner, with batch hooks that pass no model.

    Keras Tuner's passes `self.model` to the tuner at every batch's begin and
    end. On JAX, reading `Callback.model` copies the whole training state
    into the model's variables: at every step, host time; and from the
    thread Keras may run a batch end on (`async_safe`), mid-step, that state
    may already be given to the next step, and training fails ("Buffer has
    been deleted or donated"). The tuner's batch hooks only report now and
    then that the trial lives, and take no model here.
    """

    async_safe = True

    def on_batch_begin(self, batch, logs=None):
        self.tuner.on_batch_begin(self.trial, None, batch, logs)

    def on_batch_end(self, batch, logs=None):
        self.tuner.on_batch_end(self.trial, None, batch, logs)


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


class ChiefLost(keras_tuner.errors.FatalError):
    """A worker's epoch report got no answer from the chief in time.

    Fatal, so that Keras Tuner stops the worker's search instead of failing
    the trial and asking the lost chief for the next one.
    """


def _tuner(tuner_class):
    """Returns a subclass of a Keras Tuner tuner that runs trials as archsearch does.

    - It takes its oracle (from `archsearch.search.oracle.policy`) as an argument,
      as `keras_tuner.Tuner` does (Hyperband's own `__init__` only builds one).
    - Each trial is seeded from its id; `trial_callbacks(trial_id)` adds
      callbacks for its training.
    - Each epoch is reported to the oracle (`EPOCH_REPORT`), and a sign of
      life (`ALIVE`) every `ALIVE_SECONDS` within long epochs: Keras Tuner
      tells the oracle nothing between a trial's start and its end, and on a
      worker these reports are what renews its lease on the trial.
    - A failed trial's reason is recorded where it is raised: it becomes the
      trial's message (Keras Tuner's would be the traceback), and its size and
      whether it was infeasible are reported to the oracle as metrics.
    """

    class Tuner(tuner_class):
        def __init__(self, oracle, hypermodel, *, trial_callbacks=None, **kwargs):
            keras_tuner.Tuner.__init__(self, oracle, hypermodel, **kwargs)
            self.seed = oracle.seed  # on a worker, `self.oracle` becomes Keras Tuner's OracleClient, which has none
            self.trial_callbacks = trial_callbacks
            self.asked = False
            self.failure_reasons = {}  # trial id -> reason, until the trial ends

        def pre_create_trial(self):
            # Keras Tuner asks again at once when the oracle answers IDLE (Hyperband waiting
            # for running trials, or a lost worker's trial waiting for its lease to run out):
            # from a worker, a stream of gRPC calls. This tuner waits a little between asks.
            if self.asked:
                time.sleep(IDLE_SECONDS)
            self.asked = True

        def on_trial_begin(self, trial):
            self.asked = False
            super().on_trial_begin(trial)

        def run_trial(self, trial, *args, **kwargs):
            try:
                return self._train(trial, *args, **kwargs)
            except ChiefLost:
                raise
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
                self._report(trial, metrics, step=0)
            self.failure_reasons[trial.trial_id] = failure_reason(error)

        def _train(self, trial, *args, **kwargs):
            # Each trial's weights and shuffling depend on its id alone, so a
            # resumed search repeats an interrupted trial exactly.
            set_random_seed(self.seed + int(trial.trial_id))
            if self.trial_callbacks:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), *self.trial_callbacks(trial.trial_id)]
            if isinstance(self, keras_tuner.Hyperband):
                return super().run_trial(trial, *args, **kwargs)
            # Only Hyperband resumes from a trial's weights (the best are retrained from scratch):
            # Keras Tuner's own run_trial would save them at every epoch, as the validation
            # score, computed after training, is never in the epoch logs.
            callbacks = self._deepcopy_callbacks(kwargs.pop("callbacks", []))
            self._configure_tensorboard_dir(callbacks, trial)  # per-trial log directories and HParams, as run_trial does
            callbacks.append(tuner_utils.TunerCallback(self, trial))  # as run_trial does; see _build_and_fit_model
            return self._build_and_fit_model(trial, *args, callbacks=callbacks, **kwargs)

        def _build_and_fit_model(self, trial, *args, **kwargs):
            # Keras Tuner's callback, added by `run_trial` (ours, or Keras Tuner's own for Hyperband),
            # becomes one whose batch hooks pass no model (see `_TunerReports`).
            callbacks = [_TunerReports(c.tuner, c.trial) if type(c) is tuner_utils.TunerCallback else c
                         for c in kwargs.pop("callbacks", [])]
            return super()._build_and_fit_model(trial, *args, callbacks=callbacks, **kwargs)

        def on_epoch_begin(self, trial, model, epoch, logs=None):
            self.epoch_start = self.reported = time.perf_counter()

        def on_batch_end(self, trial, model, batch, logs=None):
            # Within a long epoch too (the first of a search has no time to go by), so
            # that the chief does not take a worker that trains for one that is lost.
            if time.perf_counter() - self.reported > ALIVE_SECONDS:
                self._report(trial, {ALIVE: 1.0}, step=0)

        def on_epoch_end(self, trial, model, epoch, logs=None):
            logs = logs or {}
            figures = (epoch + 1, float(logs.get("loss", "nan")), float(logs.get("accuracy", "nan")),
                       time.perf_counter() - self.epoch_start)
            self._report(trial, dict(zip(EPOCH_REPORT, figures)), step=epoch + 1)

        def _report(self, trial, metrics, step):
            self.reported = time.perf_counter()
            try:
                self.oracle.update_trial(trial.trial_id, metrics, step=step)
            except grpc.RpcError as error:
                raise ChiefLost(error.code().name) from None

        def on_trial_end(self, trial):
            trial.message = self.failure_reasons.pop(trial.trial_id, trial.message)
            if trial.message:  # it would not cross gRPC (see `archsearch.search.oracle`)
                trial.hyperparameters.values[FAILURE] = trial.message
            super().on_trial_end(trial)

    Tuner.__name__ = tuner_class.__name__
    return Tuner


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


_TUNERS = {
    "random": (_tuner(keras_tuner.Tuner), policy(keras_tuner.oracles.RandomSearchOracle)),
    "bayesian": (_tuner(keras_tuner.Tuner), policy(keras_tuner.oracles.BayesianOptimizationOracle)),
    "hyperband": (_tuner(keras_tuner.Hyperband), policy(keras_tuner.oracles.HyperbandOracle)),
}


def make_tuner(space, dataset, directory, *, overwrite, trial_callbacks=None, on_epoch=None, on_trial_end=None,
               lease_floor=None):
    """Returns the Keras Tuner tuner a space asks for.

    Args:
        space: the `Space`; its `search` section chooses the tuner.
        dataset: the loaded `Dataset`.
        directory: where Keras Tuner keeps its state (trial JSON files,
            checkpoints); a run resumes from it when `overwrite` is false.
        overwrite: start afresh rather than resume.
        trial_callbacks: called with a trial's id, returns Keras callbacks for
            that trial's training alone (its progress, say).
        on_epoch: called with a trial's id and its report (`epoch`, `loss`,
            `accuracy`, `epoch_seconds`) after each epoch of a trial.
        on_trial_end: called with the tuner and the trial's id after each trial.
        lease_floor: the shortest lease, in seconds, of a trial on a worker;
            `None` for a search without workers.

    Returns:
        A Keras Tuner tuner whose `search(x, y, validation_data=...)` runs it.
    """
    search = space.search
    tuner_class, oracle_class = _TUNERS[search.tuner]
    options = dict(
        objective=keras_tuner.Objective(OBJECTIVE, "max"),
        # Keras Tuner reads a seed of 0 as "no seed" (`seed or random.randint(...)`) and would
        # sample other points in every run: it gets the space's seed plus one.
        seed=search.seed + 1,
        budget=search.max_trials,
        max_consecutive_failures=search.max_consecutive_failures,
        lease_floor=lease_floor,
    )
    if search.tuner == "hyperband":
        # Hyperband has no cap of its own: the budget sets the oracle's max_trials.
        oracle = oracle_class(max_epochs=space.max_epochs(), factor=3, hyperband_iterations=None, **options)
    else:
        oracle = oracle_class(max_trials=search.max_trials, **options)
    tuner = tuner_class(oracle, SpaceHyperModel(space, dataset), directory=str(directory), project_name="tuner",
                        overwrite=overwrite, trial_callbacks=trial_callbacks)
    oracle.on_epoch = on_epoch
    if on_trial_end:
        oracle.on_trial_end = lambda trial: on_trial_end(tuner, trial.trial_id)
    return tuner
