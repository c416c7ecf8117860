"""What a run prints while it trains: a line per trial and per retraining with the time left, and every epoch.

On a terminal, a training shows a live progress bar (rich) over its steps,
with the epoch, the last epoch's loss and accuracy, and the time left;
elsewhere (CI logs, `nohup`) it prints one line per epoch instead. Every
line keeps within `MAX_WIDTH` columns: one longer (a long reason, a long
worker name) goes on over indented lines.

The time left is an estimate, refreshed at every epoch: the search's from
its trials so far; the retraining's from the search's trial times scaled to
the retraining's epochs and images until a retraining ends, from the
retrainings' own times after that; the run's is the two together (the
baselines, export and report after the retraining are left out).
"""

import dataclasses
import sys
import textwrap
import time

import keras
import pandas as pd

from archsearch.output.summary import MAX_WIDTH, clock


def fit_line(line, width=MAX_WIDTH):
    """Breaks a progress line at spaces into lines of at most `width` columns, the later ones indented.

    Example:

    >>> print(fit_line("trial 1/8 [00] infeasible: max_params=100: the model has 1,490 parameters", width=40))
    trial 1/8 [00] infeasible:
        max_params=100: the model has 1,490
        parameters
    """
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    return textwrap.fill(
        line, width, subsequent_indent=" " * (indent + 4), break_long_words=False, break_on_hyphens=False
    )


def _known(value):
    return value is not None and not pd.isna(value)


@dataclasses.dataclass(frozen=True)
class RetrainPlan:
    """What the retraining will train, for estimating its time from the search's trials.

    Args:
        top_k: the trials to retrain.
        seeds: trainings of each.
        references: the references' names, each trained once per seed after them.
        epochs: the retraining's epochs.
        images_ratio: images a retraining trains on (train + validation) over those a trial trains on.
    """

    top_k: int
    seeds: int
    references: tuple = ()
    epochs: int = 1
    images_ratio: float = 1.0

    def seconds_of(self, trial):
        """What one retraining of a trial should take, from its row of the trials table; `None` if unmeasured.

        Compiling takes what it took in the trial; the rest of the trial's
        time scales with the epochs and the images.

        Example:

        >>> plan = RetrainPlan(top_k=2, seeds=2, epochs=16, images_ratio=1.25)
        >>> plan.seconds_of({"seconds": 7.0, "compile_seconds": 3.0, "epochs": 8})
        13.0
        """
        if not (_known(trial.get("seconds")) and _known(trial.get("epochs")) and trial["epochs"]):
            return None
        compiling = float(trial["compile_seconds"]) if _known(trial.get("compile_seconds")) else 0.0
        return (
            compiling + (float(trial["seconds"]) - compiling) * self.epochs / int(trial["epochs"]) * self.images_ratio
        )

    def seconds(self, trials):
        """The whole retraining's estimate while the search goes on: every training at the completed trials' mean.

        Args:
            trials: the trials table (`archsearch.search.trials.trials_frame()`).

        Returns:
            Seconds, or `None` before a trial completed.
        """
        completed = trials[trials["status"] == "completed"]
        estimates = [s for s in (self.seconds_of(row) for _, row in completed.iterrows()) if s is not None]
        if not estimates:
            return None
        return sum(estimates) / len(estimates) * (self.top_k + len(self.references)) * self.seeds


class TrialProgress:
    """Prints one line after every trial, with the time the search and the run have left.

    Called with the trials table (`archsearch.search.trials.trials_frame()`,
    which the run has just written to trials.csv) and the id of the trial
    that ended, e.g. `trial 2/8 [01] val 0.8646 (7.3 s, 3.2 compiling) | best 0.8646 |
    0:00:32 in, ~0:01:37 left (run ~0:02:42)`: the search's time so far and left, then the run's
    (a worker's trial names it after the compiling). Its `label()` is what an `EpochProgress`
    shows while a trial trains.

    Args:
        max_trials: the search's budget of trained trials.
        log: where lines go.
        retraining: a `RetrainPlan`, for the run's time left; `None` leaves it out.
    """

    def __init__(self, max_trials, log, retraining=None):
        self.max_trials, self.log, self.retraining = max_trials, log, retraining
        self.start = time.perf_counter()
        self.done_here = 0
        self.trained = 0  # trials that trained (not infeasible), resumed ones included
        self.remaining = None  # seconds the search had left when the last trial of this session ended
        self.ended = None  # when that was (perf_counter)
        self.per_trial = None  # seconds per trial, in this session
        self.retrain_seconds = None  # the retraining's estimate from the trials so far

    def search_left(self):
        """Seconds the search has left as of now: the estimate at the last trial's end, less the time since.

        While a trial trains it counts down, but never below what the trials
        after it need; `None` before a trial of this session ended.
        """
        if self.remaining is None:
            return None
        after_this = self.per_trial * max(0, self.max_trials - self.trained - 1)
        return max(after_this, self.remaining - (time.perf_counter() - self.ended))

    def run_left(self):
        """Seconds the run's search and retraining have left as of now; `None` where either is unknown."""
        search = self.search_left()
        if search is None or self.retrain_seconds is None:
            return None
        return search + self.retrain_seconds

    def times_left(self):
        """The time left in words, e.g. `"search ~0:00:20 left, run ~0:01:10 left"`; empty when unknown."""
        search, run = self.search_left(), self.run_left()
        parts = [f"search ~{clock(search)} left"] if search is not None else []
        return ", ".join(parts + ([f"run ~{clock(run)} left"] if run is not None else []))

    def label(self):
        """What the trial about to train is called, with the time left as of now: `trial 3/8, search ~0:00:20 left`."""
        name = f"trial {min(self.trained + 1, self.max_trials)}/{self.max_trials}"
        return ", ".join(filter(None, [name, self.times_left()]))

    def __call__(self, trials, trial_id):
        self.done_here += 1
        ended = trials[trials["status"] != "running"]
        trial = ended.set_index("trial_id").loc[trial_id]
        self.trained = int((ended["status"] != "infeasible").sum())
        self.ended = time.perf_counter()
        elapsed = self.ended - self.start
        self.per_trial = elapsed / self.done_here
        self.remaining = self.per_trial * max(0, self.max_trials - self.trained)
        if self.retraining is not None:
            self.retrain_seconds = self.retraining.seconds(trials)
        best = trials.loc[trials["status"] == "completed", "val_accuracy"].max()
        score = trial["reason"]
        if trial["status"] == "completed":
            worker = f", {trial['worker']}" if trial["worker"] else ""
            seconds = f"{trial['seconds']:.1f} s, {trial['compile_seconds']:.1f} compiling{worker}"
            score = f"val {trial['val_accuracy']:.4f} ({seconds})"
        elif trial["worker"]:
            score += f" (on {trial['worker']})"
        start = f"{trial['start_from']} (a start point), " if trial["start_from"] else ""
        search, run = self.search_left(), self.run_left()
        times = f"{clock(elapsed)} in" + (f", ~{clock(search)} left" if search is not None else "")
        times += f" (run ~{clock(run)})" if run is not None else ""
        self.log(
            fit_line(f"trial {self.trained}/{self.max_trials} [{trial_id}] {start}{score} | best {best:.4f} | {times}")
        )


class RetrainProgress:
    """The retraining's lines: what it will train and how long that should take, then a line per training.

    Before the first training ends, each training is expected to take
    `RetrainPlan.seconds_of()` its trial (a reference: the trials' mean);
    after, a trial retrained once is expected to take what its seeds took,
    and the others their estimate times the measured-to-estimated ratio so
    far. A training resumed from its saved result takes no time and measures nothing.

    Use: `begin()` before each training, `end()` after it, and an
    `EpochProgress(progress)` among its callbacks (it shows `label()` and tells `training_began()`).

    Args:
        plan: the `RetrainPlan`.
        trials: the rows of the trials table to retrain, in order.
        log: where lines go.
        timer: where the time comes from, in seconds (a test's fake one).
    """

    def __init__(self, plan, trials, log, timer=time.perf_counter):
        self.log, self.timer = log, timer
        names = [str(t) for t in trials["trial_id"]]
        estimates = dict(zip(names, (plan.seconds_of(row) for _, row in trials.iterrows())))
        known = [s for s in estimates.values() if s is not None]
        mean = sum(known) / len(known) if known else None
        estimates.update({name: mean for name in plan.references})  # their size is the preset's: the mean guesses it
        self.estimates = {name: (mean if seconds is None else seconds) for name, seconds in estimates.items()}
        self.order = [name for name in [*names, *plan.references] for _ in range(plan.seeds)]
        self.measured = {}  # name -> seconds of each of its trainings that ran in this session
        self.position = -1
        self.current = self.began = None
        self.text = ""
        self.start = timer()
        total = self.left()
        references = f", then {', '.join(plan.references)}" if plan.references else ""
        estimate = f": ~{clock(total)}, from the search's trial times" if total is not None else ""
        self.log(
            fit_line(
                f"retraining {len(names)} trial{'s' * (len(names) != 1)}{references} x {plan.seeds} "
                f"seed{'s' * (plan.seeds != 1)}, {plan.epochs} epochs each{estimate}"
            )
        )

    def _expected(self, name):
        """Seconds one training of `name` is expected to take; `None` when nothing can tell."""
        if self.measured.get(name):
            return sum(self.measured[name]) / len(self.measured[name])
        if self.estimates.get(name) is None:
            return None
        estimated = sum(self.estimates[n] * len(s) for n, s in self.measured.items() if self.estimates[n] is not None)
        spent = sum(sum(s) for n, s in self.measured.items() if self.estimates[n] is not None)
        return self.estimates[name] * (spent / estimated if estimated else 1.0)

    def left(self):
        """Seconds the retraining has left as of now (the current training's rest included); `None` if unknown."""
        pending = [self._expected(name) for name in self.order[self.position + 1 :]]
        if self.current is not None:
            current = self._expected(self.current)
            if current is not None and self.began is not None:
                current = max(0.0, current - (self.timer() - self.began))
            pending.append(current)
        return None if None in pending else sum(pending)

    def _times_left(self):
        left = self.left()
        return f"retraining ~{clock(left)} left" if left is not None else ""

    def _times(self):
        """The retraining's time so far and left, e.g. `retraining 0:00:26 in, ~0:03:10 left`."""
        left = self.left()
        return f"retraining {clock(self.timer() - self.start)} in" + (
            f", ~{clock(left)} left" if left is not None else ""
        )

    def begin(self, label):
        """A training (or its resumed result) comes next; `label` names it, e.g. `"retrain 1/2 [07] seed 0"`."""
        self.position += 1
        self.current, self.began, self.text = self.order[self.position], None, label

    def training_began(self):
        """The current training starts now (an `EpochProgress` tells it), so it is timed from its first phase."""
        if self.began is None:  # two_phase fits twice
            self.began = self.timer()

    def label(self):
        """What trains now, with the retraining's time left: `retrain 1/2 [07] seed 0, retraining ~0:00:30 left`."""
        return ", ".join(filter(None, [self.text, self._times_left()]))

    def end(self, evaluation):
        """Prints the line of the training that ended, with its test accuracy and the time left.

        Args:
            evaluation: its `archsearch.pipeline.retrain.Evaluation`.
        """
        trained = self.began is not None
        if trained:
            self.measured.setdefault(self.current, []).append(self.timer() - self.began)
        self.current = self.began = None
        where = f" on {evaluation.worker}" if getattr(evaluation, "worker", None) else ""
        took = f"{evaluation.seconds:.0f} s{where}" + ("" if trained or where else ", resumed")
        # A worker's retraining ended before this line: the others' may have too, so nothing tells the time left.
        times = f"retraining {clock(self.timer() - self.start)} in" if where else self._times()
        self.log(fit_line(f"{self.text}: test {evaluation.accuracy:.4f} ({took}) | {times}"))


class EpochProgress(keras.callbacks.Callback):
    """Shows a training's epochs as they go: a bar on a terminal, else a line per epoch.

    It reads the loss only at epoch ends (where training already waits for
    it), never per step, and Keras may move its bar on a thread of its own
    (`async_safe`; rich's progress bar takes its own lock), so the
    accelerator's queue of steps never drains.

    Args:
        label: what is training, e.g. `"retrain 1/2 seed 0"`; or a
            `TrialProgress` or `RetrainProgress`, whose `label()` (the time
            left in it) is read anew at every epoch. Keras Tuner copies callbacks
            per trial, so a `TrialProgress` is read as it was when its trial began,
            which its time left counts down from.
        stream: where to write (default `sys.stdout`).
    """

    async_safe = True

    def __init__(self, label, stream=None):
        super().__init__()
        self.source, self.stream = label, stream
        self.bar = self.task = None

    def _label(self):
        return self.source if isinstance(self.source, str) else self.source.label()

    def on_train_begin(self, logs=None):
        if isinstance(self.source, RetrainProgress):
            self.source.training_began()
        self.epochs = self.params.get("epochs") or 1
        self.steps = self.params.get("steps") or 1
        self.epoch, self.started, self.last = 0, time.perf_counter(), ""
        stream = self.stream or sys.stdout
        if stream.isatty():
            # Imported here: rich's live display holds locks, which Keras Tuner's copy of callbacks cannot copy.
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=Console(file=stream),
                transient=True,
            )
            self.task = self.bar.add_task(self._label(), total=self.epochs * self.steps, status="")
            self.bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch, time.perf_counter()
        if self.bar:
            self.bar.update(
                self.task,
                description=self._label(),
                completed=epoch * self.steps,
                status=f"epoch {epoch + 1}/{self.epochs}{self.last}",
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.bar:
            self.bar.update(self.task, completed=self.epoch * self.steps + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        figures = [f"{name} {float(logs[name]):.4f}" for name in ("loss", "accuracy") if name in logs]
        self.last = ", " + ", ".join(figures) if figures else ""
        if not self.bar:
            seconds = time.perf_counter() - self.epoch_start
            print(
                fit_line(f"  {self._label()}: epoch {epoch + 1}/{self.epochs}{self.last} ({seconds:.1f} s)"),
                file=self.stream or sys.stdout,
                flush=True,
            )

    def on_train_end(self, logs=None):
        if self.bar:
            self.bar.stop()
            self.bar = self.task = None
