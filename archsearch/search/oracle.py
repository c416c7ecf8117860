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
- Leases (with workers): a trial whose worker has not reported for longer
  than its lease goes to the next worker that asks. The lease is
  `LEASE_FACTOR` times the trial's longest epoch so far (before its first
  epoch, the search's longest), and never under the floor.
"""

import functools
import threading
import time

from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine.trial import Trial, TrialStatus

INFEASIBLE = "infeasible: "  # how an infeasible trial's reason starts
# The metric that marks an infeasible sample: metrics, unlike a trial's message,
# reach a chief oracle from a worker (Keras Tuner's Trial proto has no message).
INFEASIBLE_METRIC = "infeasible"
INFEASIBLE_LIMIT = 10  # infeasible samples allowed per trial of the budget
EPOCH_REPORT = ("epoch", "loss", "accuracy", "epoch_seconds")  # the metrics of an epoch's report
ALIVE = "alive"  # the metric of a report within an epoch: the trial's worker is training it
FAILURE = "archsearch/failure"  # carries a failed trial's message from a worker (see `end_trial`)
FINGERPRINT = "archsearch/fingerprint"  # shows workers what the chief's trials depend on (see `get_space`)
LEASE_FACTOR = 3  # epochs vary: the first one compiles, and other jobs share the machine


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


def synchronized(method):
    """Keras Tuner's `synchronized`, letting go of the oracle's lock when `method` raises.

    Keras Tuner's releases the lock only on return: after an exception in
    the chief's oracle, every later call from every worker would hang.
    """
    locked = oracle_module.synchronized(method)

    @functools.wraps(method)
    def wrapper(oracle, *args, **kwargs):
        try:
            return locked(oracle, *args, **kwargs)
        except BaseException:
            if oracle_module.THREADS[oracle] == threading.current_thread().name:
                oracle_module.THREADS[oracle] = None
                oracle_module.LOCKS[oracle].release()
            raise

    return wrapper


def policy(oracle_class):
    """Returns a subclass of a Keras Tuner oracle with archsearch's trial policy.

    Args:
        oracle_class: e.g. `keras_tuner.oracles.RandomSearchOracle`.

    The subclass takes, besides the oracle's own arguments:

    - `budget`: trials that train; `max_consecutive_failures`: see above.
    - `lease_floor`: seconds; `None` (the default) for a run without
      workers, where there is nothing to lease.

    With `fingerprint` set, the space it gives workers holds it. It calls
    `on_epoch(trial_id, report)` for each epoch report,
    `on_trial_end(trial)` after each trial and `log(line)` for what befalls
    trials on workers, when they are set.
    """

    class Oracle(oracle_class):
        def __init__(self, *args, budget, max_consecutive_failures=5, lease_floor=None, **kwargs):
            super().__init__(*args, max_consecutive_failed_trials=10**9, **kwargs)
            self.budget = budget
            self.max_consecutive_failures = max_consecutive_failures
            self.lease_floor = lease_floor
            self.stop_reason = None
            self.workers = {}  # trial id -> the worker it was last given to
            self.longest_epoch = {}  # trial id -> its longest epoch so far, in seconds
            self.heard = {}  # trial id of a running trial -> when its worker last reported
            self.calls = {}  # worker -> when it last called
            self.on_epoch = self.on_trial_end = self.log = None
            self.fingerprint = None
            self._held = {}

        def get_space(self):
            # A worker reads the space from the chief before it trains anything: with the
            # fingerprint set, it finds there what to compare its own with. Only what the
            # workers see carries it: it stays out of the space sampled from.
            space = super().get_space()
            if self.fingerprint:
                space.Fixed(FINGERPRINT, self.fingerprint)
            return space

        @synchronized
        def create_trial(self, tuner_id):
            now = self.calls[tuner_id] = time.monotonic()
            if self.lease_floor is not None:
                self._reclaim(tuner_id, now)
            self._check_budget()
            if self.stop_reason:
                self.tuner_ids.discard(tuner_id)
                return Trial(self.get_space(), status=TrialStatus.STOPPED)
            if self.lease_floor is None:
                return super().create_trial(tuner_id)
            returning = tuner_id in self.ongoing_trials
            trial = super().create_trial(tuner_id)
            if trial.status == TrialStatus.STOPPED and self.ongoing_trials:
                # Keras Tuner tells a worker to stop once the budget is handed out; should
                # the worker of a trial still running be lost, none would be left to take it.
                self.tuner_ids.add(tuner_id)
                trial.status = TrialStatus.IDLE
            elif trial.status == TrialStatus.RUNNING:
                self.workers[trial.trial_id] = tuner_id
                self.heard[trial.trial_id] = now
                again = " again (it was restarted)" if returning else ""
                self._log(f"trial {trial.trial_id} started on {tuner_id}{again}")
            return trial

        def _reclaim(self, tuner_id, now):
            """Puts the trials of workers silent for longer than their lease back in the queue."""
            for holder, trial in list(self.ongoing_trials.items()):
                silent, lease = now - self.heard.get(trial.trial_id, now), self.lease(trial.trial_id)
                if holder != tuner_id and silent > lease:
                    del self.ongoing_trials[holder]
                    self.tuner_ids.discard(holder)
                    self._retry_queue.append(trial.trial_id)
                    self._log(f"trial {trial.trial_id}: no report from {holder} for {silent:.0f} s "
                              f"(its lease: {lease:.0f} s); handed to the next worker")

        def lease(self, trial_id):
            """Seconds a running trial's worker may stay silent before the trial goes to another."""
            longest = self.longest_epoch.get(trial_id) or max(self.longest_epoch.values(), default=0.0)
            return max(self.lease_floor, LEASE_FACTOR * longest)

        @synchronized
        def silent_for(self, now, ignore=()):
            """Seconds since the last call of a worker not in `ignore`; `None` if none ever called.

            0 while the lease of a trial one of them holds runs.
            """
            calls = {worker: when for worker, when in self.calls.items() if worker not in ignore}
            if not calls:
                return None
            for worker, trial in self.ongoing_trials.items():
                if worker in calls and now - self.heard.get(trial.trial_id, now) <= self.lease(trial.trial_id):
                    return 0.0
            return now - max(calls.values())

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
            epoch = set(EPOCH_REPORT) <= set(metrics)
            if not (epoch or ALIVE in metrics):
                return super().update_trial(trial_id, metrics, step=step)
            trial = self.trials[trial_id]
            if trial_id in self.end_order:  # from a worker whose trial was handed on and has ended since
                return trial
            now = self.heard[trial_id] = time.monotonic()
            self._called(trial_id, now)
            if epoch:
                self.longest_epoch[trial_id] = max(self.longest_epoch.get(trial_id, 0.0), metrics["epoch_seconds"])
                if self.on_epoch:
                    self.on_epoch(trial_id, metrics)
            return trial

        @synchronized
        def end_trial(self, trial):
            # Keras Tuner's Trial proto has no `message`: over gRPC a failed trial's reason
            # would be lost. The tuner sends it as a value of its hyperparameters.
            message = trial.hyperparameters.values.pop(FAILURE, None)
            if message is not None:
                trial.message = message
            if trial.trial_id in self.end_order:
                self._log(f"trial {trial.trial_id}: a second result is ignored (a worker's lease had run out, "
                          "but the worker was only slow)")
                return
            if trial.trial_id in self._retry_queue:  # its lease ran out, but its worker was only slow
                self._retry_queue.remove(trial.trial_id)
            self._called(trial.trial_id, time.monotonic())
            self.heard.pop(trial.trial_id, None)
            super().end_trial(trial)
            self._check_failures()
            if self.on_trial_end:
                self.on_trial_end(self.trials[trial.trial_id])

        def get_state(self):
            return {**super().get_state(), "workers": self.workers, "longest_epoch": self.longest_epoch}

        def set_state(self, state):
            super().set_state(state)
            self.workers = state.get("workers", {})
            self.longest_epoch = state.get("longest_epoch", {})
            self._held = dict(self.ongoing_trials)

        def reload(self):
            super().reload()
            # Keras Tuner reloads trials in the file system's order; trials.csv and its ties
            # between equal scores (`get_best_trials` sorts stably) follow creation order.
            self.trials = dict(sorted(self.trials.items(), key=lambda item: creation_order(item[0])))
            if self.lease_floor is None:
                return
            # Keras Tuner queues every trial that was running when the chief stopped for the next
            # worker that asks; its own worker, if it outlived the chief, would train it too.
            # Each stays its worker's, under a fresh lease.
            held = {trial.trial_id for trial in self._held.values()}
            self._retry_queue = [trial_id for trial_id in self._retry_queue if trial_id not in held]
            self.ongoing_trials = dict(self._held)
            self.tuner_ids.update(self._held)
            now = time.monotonic()
            self.heard.update({trial_id: now for trial_id in held})

        def _called(self, trial_id, now):
            if trial_id in self.workers:
                self.calls[self.workers[trial_id]] = now

        def _log(self, line):
            if self.log:
                self.log(line)

    Oracle.__name__ = oracle_class.__name__
    return Oracle
