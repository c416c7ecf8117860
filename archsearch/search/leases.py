"""Trials on workers: the oracle's leases on them, and the terms a chief and its workers share.

`Leases` is the part of the oracle (`archsearch.search.oracle`) that a run
with workers needs: a trial whose worker has not reported for longer than
its lease goes to the next worker that asks. The lease is `LEASE_FACTOR`
times the trial's longest epoch so far (before its first epoch, the
search's longest), and never under the floor (`lease_floor()`). A trial
reports each epoch (`EPOCH_REPORT`), and that it is alive (`ALIVE`) within
long ones; every report renews its lease.

This module imports no gRPC: the chief's server (`archsearch.search.distributed`) and a worker's
lost calls (`archsearch.search.tuners`) do.
"""

import hashlib
import json
import os
import time

import keras
from keras_tuner.engine.trial import TrialStatus

from archsearch.compat.keras_tuner import retry_queue, set_retry_queue, synchronized
from archsearch.errors import ArchsearchError

EPOCH_REPORT = ("epoch", "loss", "accuracy", "epoch_seconds")  # the metrics of an epoch's report
ALIVE = "alive"  # the metric of a report within an epoch: the trial's worker is training it
FINGERPRINT = "archsearch/fingerprint"  # shows workers what the chief's trials depend on (see `Leases.get_space`)
LEASE_FACTOR = 3  # epochs vary: the first one compiles, and other jobs share the machine


def lease_floor():
    """The shortest lease of a trial on a worker: `ARCHSEARCH_LEASE_FLOOR` seconds, 120 by default."""
    return _seconds("ARCHSEARCH_LEASE_FLOOR", 120.0)


def chief_timeout():
    """How long a worker waits for the chief's answer: `ARCHSEARCH_CHIEF_TIMEOUT` seconds, 120 by default."""
    return _seconds("ARCHSEARCH_CHIEF_TIMEOUT", 120.0)


def _seconds(variable, default):
    value = os.environ.get(variable, str(default))
    try:
        return float(value)
    except ValueError:
        raise ArchsearchError(f"{variable}={value}: expected a number of seconds") from None


def fingerprint(space, dataset, base=None):
    """A digest of what a trial's result depends on, which chief and workers must share.

    The space's data, dimensions, tuner, constraints and seed, the data's own
    fingerprint and the precision, and a transferred base (its name, layer
    and weights file's sha256, not its path on each machine); not the
    budgets or the retraining, which are the chief's alone.
    """
    described = space.to_dict()
    search = described["search"]
    shared = {
        "data": described["data"],
        "dimensions": described["dimensions"],
        "data_fingerprint": dataset.fingerprint,
        "tuner": search["tuner"],
        "seed": search["seed"],
        "max_params": search["max_params"],
        "max_flops": search["max_flops"],
        # Present only where set (Space.to_dict() leaves them out at None); a worker's own device
        # memory, where max_memory is None, is its own to apply.
        **{k: search[k] for k in ("max_latency_ms", "max_model_bytes", "max_memory") if k in search},
        "precision": keras.mixed_precision.dtype_policy().name,
        **({"base": (base.name, base.features, base.digest)} if base else {}),
    }
    return hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_epoch_report(metrics):
    """Whether a trial's metrics are the report of an epoch (`EPOCH_REPORT`)."""
    return set(EPOCH_REPORT) <= set(metrics)


def is_report(metrics):
    """Whether a trial's metrics are a report of its epoch (`EPOCH_REPORT`) or of its life (`ALIVE`)."""
    return is_epoch_report(metrics) or ALIVE in metrics


class Leases:
    """A mixin of a Keras Tuner oracle: leases on the trials it gives workers.

    Args (besides the oracle's own):
        lease_floor: seconds; `None` (the default) for a run without
            workers, where there is nothing to lease.

    With `fingerprint` set, the space it gives workers holds it. It calls
    `log(line)` for what befalls trials on workers, when set. It comes before
    `archsearch.search.oracle.BudgetPolicy` in an oracle's bases (a trial it
    stops stays stopped), and relies on the oracle internals that
    `archsearch.compat.keras_tuner` lists.
    """

    def __init__(self, *args, lease_floor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lease_floor = lease_floor
        self.workers = {}  # trial id -> the worker it was last given to
        self.longest_epoch = {}  # trial id -> its longest epoch so far, in seconds
        self.heard = {}  # trial id of a running trial -> when its worker last reported
        self.calls = {}  # worker -> when it last called
        self.log = None
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
        if self.lease_floor is None:
            return super().create_trial(tuner_id)
        self._reclaim(tuner_id, now)
        returning = tuner_id in self.ongoing_trials
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.STOPPED and self.ongoing_trials and not self.stop_reason:
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
                retry_queue(self).append(trial.trial_id)
                self._log(
                    f"trial {trial.trial_id}: no report from {holder} for {silent:.0f} s "
                    f"(its lease: {lease:.0f} s); handed to the next worker"
                )

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

    @synchronized
    def update_trial(self, trial_id, metrics, step=0):
        if is_report(metrics) and trial_id not in self.end_order:
            # A report renews the lease; one from a worker whose trial was handed on and has
            # ended since renews nothing.
            now = self.heard[trial_id] = time.monotonic()
            self._called(trial_id, now)
            if is_epoch_report(metrics):
                self.longest_epoch[trial_id] = max(self.longest_epoch.get(trial_id, 0.0), metrics["epoch_seconds"])
        return super().update_trial(trial_id, metrics, step=step)

    @synchronized
    def end_trial(self, trial):
        if trial.trial_id in self.end_order:
            self._log(
                f"trial {trial.trial_id}: a second result is ignored (a worker's lease had run out, "
                "but the worker was only slow)"
            )
            return
        if trial.trial_id in retry_queue(self):  # its lease ran out, but its worker was only slow
            retry_queue(self).remove(trial.trial_id)
        self._called(trial.trial_id, time.monotonic())
        self.heard.pop(trial.trial_id, None)
        super().end_trial(trial)

    def get_state(self):
        return {**super().get_state(), "workers": self.workers, "longest_epoch": self.longest_epoch}

    def set_state(self, state):
        super().set_state(state)
        self.workers = state.get("workers", {})
        self.longest_epoch = state.get("longest_epoch", {})
        self._held = dict(self.ongoing_trials)

    def reload(self):
        super().reload()
        if self.lease_floor is None:
            return
        # Keras Tuner queues every trial that was running when the chief stopped for the next
        # worker that asks; its own worker, if it outlived the chief, would train it too.
        # Each stays its worker's, under a fresh lease.
        held = {trial.trial_id for trial in self._held.values()}
        set_retry_queue(self, [trial_id for trial_id in retry_queue(self) if trial_id not in held])
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
