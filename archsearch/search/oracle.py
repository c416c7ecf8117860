"""The oracle: Keras Tuner's, with archsearch's trial policy and, for workers, leases on trials.

The oracle hands out trials and records how each ended. In a run with
workers (`archsearch.search.distributed`) it lives in the chief, and the workers
reach it over gRPC, so every decision about the search is taken here:

- Budget: `max_trials` counts trials that train; infeasible samples do not
  use it up (up to `INFEASIBLE_LIMIT` of them per trial of the budget).
  Trial ids have one width throughout, that of the most trials a search
  can create (`00` to `88` for a budget of 8).
- Failures: after `max_consecutive_failures` real failures in a row the
  oracle stops handing out trials and `stop_reason` says why.
- Epochs: a trial reports each epoch (`EPOCH_REPORT`), and that it is alive
  (`ALIVE`) within long ones; the oracle passes an epoch's figures to
  `on_epoch` and, with workers, renews the trial's lease at every report.
- Start points: the search's first trials are the presets it starts from
  (`Search(start_from=...)`), in order, each unless a trial has its values
  already (a resumed search repeats none).
- Leases (with workers): see `archsearch.search.leases`.

`BudgetPolicy` holds the first three, `StartPoints` the fourth, `Leases` the
last; each Keras Tuner oracle archsearch uses has its subclass here, with all
three: `RandomSearchOracle`, `BayesianOptimizationOracle`, `HyperbandOracle`.
"""

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from archsearch.compat.keras_tuner import GivenValuesFirst, synchronized
from archsearch.search.leases import Leases, is_epoch_report, is_report

INFEASIBLE = "infeasible: "  # how an infeasible trial's reason starts
# The metric that marks an infeasible sample: metrics, unlike a trial's message,
# reach a chief oracle from a worker (Keras Tuner's Trial proto has no message).
INFEASIBLE_METRIC = "infeasible"
INFEASIBLE_LIMIT = 10  # infeasible samples allowed per trial of the budget
FAILURE = "archsearch/failure"  # carries a failed trial's message from a worker (see `end_trial`)


def is_infeasible(trial):
    """Whether a trial ended as an infeasible sample (the tuner marks it with `INFEASIBLE_METRIC`)."""
    return trial.status == TrialStatus.FAILED and trial.metrics.exists(INFEASIBLE_METRIC)


def creation_order(trial_id):
    """Sort key of trial ids in the order Keras Tuner created them ("7" before "08" before "10").

    Example:

    >>> sorted(["10", "08", "7"], key=creation_order)
    ['7', '08', '10']
    """
    return (0, int(trial_id), "") if trial_id.isdigit() else (1, 0, trial_id)


class BudgetPolicy:
    """A mixin of a Keras Tuner oracle: the budget and failure policy, and epoch reports.

    Args (besides the oracle's own):
        budget: trials that train.
        max_consecutive_failures: see the module's docstring.

    It calls `on_epoch(trial_id, report)` for each epoch report and
    `on_trial_end(trial)` after each trial, when they are set. It relies on
    the oracle internals that `archsearch.compat.keras_tuner` lists.
    """

    def __init__(self, *args, budget, max_consecutive_failures=5, **kwargs):
        super().__init__(*args, max_consecutive_failed_trials=10**9, **kwargs)
        self.budget = budget
        self.max_consecutive_failures = max_consecutive_failures
        self.stop_reason = None
        self.on_epoch = self.on_trial_end = None

    @classmethod
    def space_options(cls, space):
        """The oracle's own arguments for a space's search, besides the objective, seed and policy."""
        return {"max_trials": space.search.max_trials}

    @synchronized
    def create_trial(self, tuner_id):
        self._check_budget()
        if self.stop_reason:
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        return super().create_trial(tuner_id)

    def _check_budget(self):
        infeasible = self._infeasible()
        if len(infeasible) > INFEASIBLE_LIMIT * self.budget:
            self.stop_reason = (
                f"{len(infeasible)} sampled architectures were infeasible (e.g. {infeasible[-1].message}); "
                "loosen the constraints or the space (`archsearch describe` shows which samples fail)"
            )
        # Keras Tuner stops at `max_trials` and pads trial ids to its width: ids would
        # change width mid-search ("7", then "08") as infeasible samples raise the limit.
        # Under the limit, `max_trials` is the most trials a search can create, so every
        # id has that width; at the limit, it is the limit, and Keras Tuner stops.
        limit = self.budget + len(infeasible)
        self.max_trials = limit if len(self.trials) >= limit else self.budget * (INFEASIBLE_LIMIT + 1) + 1

    def _infeasible(self):
        return [t for t in self.trials.values() if is_infeasible(t)]

    def _check_failures(self):
        streak = []
        for trial in (self.trials[i] for i in self.end_order):
            if trial.status == TrialStatus.COMPLETED:
                streak = []
            elif trial.status == TrialStatus.FAILED and not is_infeasible(trial):
                streak.append(trial)
        if len(streak) >= self.max_consecutive_failures:
            lines = "\n".join(f"  trial {t.trial_id}: {t.message}" for t in streak)
            self.stop_reason = f"the search stopped after {len(streak)} failed trials in a row:\n{lines}"

    @synchronized
    def update_trial(self, trial_id, metrics, step=0):
        # Epoch and life reports go no further than this: Keras Tuner takes metrics only with the objective.
        if not is_report(metrics):
            return super().update_trial(trial_id, metrics, step=step)
        trial = self.trials[trial_id]
        if trial_id in self.end_order:  # from a worker whose trial was handed on and has ended since
            return trial
        if is_epoch_report(metrics) and self.on_epoch:
            self.on_epoch(trial_id, metrics)
        return trial

    @synchronized
    def end_trial(self, trial):
        # Keras Tuner's Trial proto has no `message`: over gRPC a failed trial's reason
        # would be lost. The tuner sends it as a value of its hyperparameters.
        message = trial.hyperparameters.values.pop(FAILURE, None)
        if message is not None:
            trial.message = message
        super().end_trial(trial)
        self._check_failures()
        if self.on_trial_end:
            self.on_trial_end(self.trials[trial.trial_id])

    def reload(self):
        super().reload()
        # Keras Tuner reloads trials in the file system's order; trials.csv and its ties
        # between equal scores (`get_best_trials` sorts stably) follow creation order.
        self.trials = dict(sorted(self.trials.items(), key=lambda item: creation_order(item[0])))


class StartPoints(GivenValuesFirst):
    """A mixin of a Keras Tuner oracle: the first trials it creates are the points a search starts from.

    Args (besides the oracle's own):
        start_points: a dict from a preset's name to the searched dimensions'
            values at it (`Space.start_points()`), in `Search.start_from`'s
            order; none by default.

    Where the oracle would draw a new trial's values, it takes the first start
    point that no trial of its own holds yet, whatever that trial's status,
    with the hyperparameters the preset leaves out at their defaults
    (`archsearch.compat.keras_tuner.GivenValuesFirst`); once all are tried,
    it draws as before. A resumed search reloads its trials and repeats none;
    with workers, the chief's oracle hands them out. A start point trains, or
    fails or is infeasible, as a sampled point would: it is a trial like any.
    """

    def __init__(self, *args, start_points=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_points = dict(start_points or {})

    def start_values(self, name):
        """Returns a start point's values for a trial: every hyperparameter's default, and the preset's over them."""
        return {**{hp.name: hp.default for hp in self.hyperparameters.space}, **self.start_points[name]}

    def given_values(self):
        for name in self.start_points:
            values = self.start_values(name)
            if self._first_trial_with(values) is None:
                return values
        return None

    def started_from(self):
        """Returns a dict from the id of each trial that was a start point to the name of its preset.

        That trial is the first one created with the start point's values:
        Hyperband's later rounds, which train it on, are not listed.
        """
        found = {}
        for name in self.start_points:
            trial = self._first_trial_with(self.start_values(name))
            if trial is not None:
                found.setdefault(trial.trial_id, name)
        return found

    def _first_trial_with(self, values):
        """The first trial created whose hyperparameters hold `values` (and maybe others), or `None`."""
        for trial in sorted(self.trials.values(), key=lambda t: creation_order(t.trial_id)):
            held = trial.hyperparameters.values
            if all(name in held and held[name] == value for name, value in values.items()):
                return trial
        return None


class RandomSearchOracle(Leases, BudgetPolicy, StartPoints, keras_tuner.oracles.RandomSearchOracle):
    """Keras Tuner's random search oracle, with archsearch's trial policy, start points and leases."""


class BayesianOptimizationOracle(Leases, BudgetPolicy, StartPoints, keras_tuner.oracles.BayesianOptimizationOracle):
    """Keras Tuner's Bayesian optimization oracle, with archsearch's trial policy, start points and leases.

    The start points are trials like the random ones it begins with, and
    count among its `num_initial_points`: once they complete, they are
    observations of its Gaussian process.
    """

    def populate_space(self, trial_id):
        # Keras Tuner's fits its Gaussian process once `num_initial_points` trials completed, and draws no
        # more values: start points not yet tried (more of them than initial points) would be left out.
        values = self.given_values()
        if values is not None:
            return {"status": TrialStatus.RUNNING, "values": values}
        return super().populate_space(trial_id)


class HyperbandOracle(Leases, BudgetPolicy, StartPoints, keras_tuner.oracles.HyperbandOracle):
    """Keras Tuner's Hyperband oracle, with archsearch's trial policy, start points and leases.

    Hyperband has no cap of its own: the budget sets its `max_trials`. The
    start points are the first models of its first bracket's first round
    (its most aggressive bracket, with the fewest epochs), filling the next
    brackets' first rounds should there be more of them; from there they
    go on to longer rounds as any model of the round does, on their scores.
    """

    @classmethod
    def space_options(cls, space):
        return {"max_epochs": space.max_epochs(), "factor": 3, "hyperband_iterations": None}
