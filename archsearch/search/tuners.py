"""The search's tuners: Keras Tuner's, running trials as archsearch does, and `make_tuner()`.

`ArchsearchTuner` is how archsearch runs a trial (seeding, epoch reports,
failure reasons recorded where raised); `Tuner` and `Hyperband` combine it
with Keras Tuner's. `tuner_classes()` gives the tuner and oracle
(`archsearch.search.oracle`) classes that `archsearch.recipe.dimensions.TUNERS`
names for each tuner a space may name; `make_tuner()` builds the one a space
asks for, around its `SpaceHyperModel` (`archsearch.search.hypermodel`).
"""

import math
import time
import warnings
from pathlib import Path

import grpc
import keras_tuner

from archsearch.compat.keras_tuner import DeclaredSpace, ReportsWithoutModel, build_and_fit, run_trial_callbacks
from archsearch.errors import ArchsearchError, InfeasibleArchitecture
from archsearch.model.backend import set_random_seed
from archsearch.recipe import dimensions
from archsearch.search import oracle as oracles
from archsearch.search.hypermodel import OBJECTIVE, SpaceHyperModel
from archsearch.search.leases import ALIVE, EPOCH_REPORT
from archsearch.search.oracle import FAILURE, INFEASIBLE, INFEASIBLE_METRIC

IDLE_SECONDS = 1.0  # between a tuner's asks for a trial while the oracle has none to give
ALIVE_SECONDS = 5.0  # the longest a training tuner goes without a report to the oracle, epochs allowing


class SearchStopped(ArchsearchError):
    """The oracle stopped the search (too many failed or infeasible trials); the message sums up why."""


class ChiefLost(keras_tuner.errors.FatalError):
    """A worker's epoch report got no answer from the chief in time.

    Fatal, so that Keras Tuner stops the worker's search instead of failing
    the trial and asking the lost chief for the next one.
    """


class ArchsearchTuner:
    """A mixin of a Keras Tuner tuner: it runs trials as archsearch does.

    - It takes its oracle (an `archsearch.search.oracle` class) as an argument,
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
            metrics.update(self.hypermodel.figures(architecture))
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
        return self._fit(trial, *args, **kwargs)

    def _fit(self, trial, *args, **kwargs):
        """Trains a trial as Keras Tuner's `run_trial` would, without its checkpoint of the best epoch.

        Only Hyperband resumes from a trial's weights (the best are retrained from
        scratch): Keras Tuner's own `run_trial` would save them at every epoch, as
        the validation score, computed after training, is never in the epoch logs.
        """
        callbacks = run_trial_callbacks(self, trial, kwargs.pop("callbacks", []))
        return build_and_fit(self, trial, *args, callbacks=callbacks, **kwargs)

    def on_epoch_begin(self, trial, model, epoch, logs=None):
        self.epoch_start = self.reported = time.perf_counter()

    def on_batch_end(self, trial, model, batch, logs=None):
        # Within a long epoch too (the first of a search has no time to go by), so
        # that the chief does not take a worker that trains for one that is lost.
        if time.perf_counter() - self.reported > ALIVE_SECONDS:
            self._report(trial, {ALIVE: 1.0}, step=0)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        logs = logs or {}
        figures = (
            epoch + 1,
            float(logs.get("loss", "nan")),
            float(logs.get("accuracy", "nan")),
            time.perf_counter() - self.epoch_start,
        )
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


class Tuner(DeclaredSpace, ReportsWithoutModel, ArchsearchTuner, keras_tuner.Tuner):
    """Keras Tuner's tuner, running archsearch's trials (the random and Bayesian searches)."""


class Hyperband(DeclaredSpace, ReportsWithoutModel, ArchsearchTuner, keras_tuner.Hyperband):
    """Keras Tuner's Hyperband tuner, running archsearch's trials from their checkpoints."""

    def _fit(self, trial, *args, **kwargs):
        # Hyperband continues a trial from its checkpoint: Keras Tuner's run_trial saves it.
        return keras_tuner.Hyperband.run_trial(self, trial, *args, **kwargs)


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


def tuner_classes(name):
    """The tuner and oracle classes of a tuner a space may name, from `archsearch.recipe.dimensions.TUNERS`.

    Example:

    >>> tuner_classes("hyperband")
    (<class 'archsearch.search.tuners.Hyperband'>, <class 'archsearch.search.oracle.HyperbandOracle'>)
    """
    tuner_name, oracle_name = dimensions.TUNERS[name]
    return globals()[tuner_name], getattr(oracles, oracle_name)


def make_tuner(
    space,
    dataset,
    directory,
    *,
    overwrite,
    trial_callbacks=None,
    on_epoch=None,
    on_trial_end=None,
    lease_floor=None,
    base=None,
):
    """Returns the Keras Tuner tuner a space asks for.

    Args:
        space: the `Space`; its `search` section chooses the tuner.
        dataset: the loaded `Dataset`.
        directory: the folder of Keras Tuner's state (trial JSON files,
            checkpoints; `<run>/tuner`); a run resumes from it when
            `overwrite` is false.
        overwrite: start afresh rather than resume.
        trial_callbacks: called with a trial's id, returns Keras callbacks for
            that trial's training alone (its progress, say).
        on_epoch: called with a trial's id and its report (`epoch`, `loss`,
            `accuracy`, `epoch_seconds`) after each epoch of a trial.
        on_trial_end: called with the tuner and the trial's id after each trial.
        lease_floor: the shortest lease, in seconds, of a trial on a worker;
            `None` for a search without workers.
        base: the transferred base of a space with `transfer`.

    Returns:
        A Keras Tuner tuner whose `search(x, y, validation_data=...)` runs it.
    """
    search = space.search
    tuner_class, oracle_class = tuner_classes(search.tuner)
    options = dict(
        objective=keras_tuner.Objective(OBJECTIVE, "max"),
        # Keras Tuner reads a seed of 0 as "no seed" (`seed or random.randint(...)`) and would
        # sample other points in every run: it gets the space's seed plus one.
        seed=search.seed + 1,
        budget=search.max_trials,
        max_consecutive_failures=search.max_consecutive_failures,
        lease_floor=lease_floor,
        start_points=dict(zip(search.start_from, space.start_points())),
    )
    oracle = oracle_class(**oracle_class.space_options(space), **options)
    tuner = tuner_class(
        oracle,
        SpaceHyperModel(space, dataset, base),
        directory=str(Path(directory).parent),
        project_name=Path(directory).name,
        overwrite=overwrite,
        trial_callbacks=trial_callbacks,
    )
    oracle.on_epoch = on_epoch
    if on_trial_end:
        oracle.on_trial_end = lambda trial: on_trial_end(tuner, trial.trial_id)
    return tuner
