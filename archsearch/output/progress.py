"""What a run prints while it trains: one line per trial, and each training's epochs.

On a terminal, a training shows a live progress bar (rich) over its steps,
with the epoch, the last epoch's loss and accuracy, and the search's time
left; elsewhere (CI logs, `nohup`) it prints one line per epoch instead.
"""

import sys
import time

import keras

from archsearch.output.summary import clock


class TrialProgress:
    """Prints one line after every trial, with the time left.

    Called with the trials table (`archsearch.search.trials.trials_frame()`,
    which the run has just written to trials.csv) and the id of the trial
    that ended.

    Args:
        max_trials: the search's budget of trained trials.
        log: where lines go.
    """

    def __init__(self, max_trials, log):
        self.max_trials, self.log = max_trials, log
        self.start = time.perf_counter()
        self.done_here = 0
        self.trained = 0  # trials that trained (not infeasible), resumed ones included
        self.remaining = None  # seconds, once a trial ended in this session

    def label(self):
        """What the trial about to train is called, e.g. `trial 3/8`."""
        return f"trial {min(self.trained + 1, self.max_trials)}/{self.max_trials}"

    def __call__(self, trials, trial_id):
        self.done_here += 1
        ended = trials[trials["status"] != "running"]
        trial = ended.set_index("trial_id").loc[trial_id]
        self.trained = int((ended["status"] != "infeasible").sum())
        elapsed = time.perf_counter() - self.start
        self.remaining = elapsed / self.done_here * max(0, self.max_trials - self.trained)
        best = trials.loc[trials["status"] == "completed", "val_accuracy"].max()
        score = trial["reason"]
        if trial["status"] == "completed":
            score = (
                f"completed, val_accuracy={trial['val_accuracy']:.4f} "
                f"(trained in {trial['seconds']:.1f} s, {trial['compile_seconds']:.1f} s of it compiling)"
            )
        worker = f" on {trial['worker']}" if trial["worker"] else ""
        start = f"{trial['start_from']} (a start point), " if trial["start_from"] else ""
        self.log(
            f"trial {self.trained}/{self.max_trials} [{trial_id}] {start}{score}{worker} | "
            f"best {best:.4f} | elapsed {clock(elapsed)}, remaining ~{clock(self.remaining)}"
        )


class EpochProgress(keras.callbacks.Callback):
    """Shows a training's epochs as they go: a bar on a terminal, else a line per epoch.

    It reads the loss only at epoch ends (where training already waits for
    it), never per step, and Keras may move its bar on a thread of its own
    (`async_safe`; rich's progress bar takes its own lock), so the
    accelerator's queue of steps never drains.

    Args:
        label: what is training, e.g. `"retrain 1/2 seed 0"`; or a
            `TrialProgress`, whose label and time left are read when each
            training begins (Keras Tuner copies callbacks per trial).
        stream: where to write (default `sys.stdout`).
    """

    async_safe = True

    def __init__(self, label, stream=None):
        super().__init__()
        self.source, self.stream = label, stream
        self.bar = self.task = None

    def _label(self):
        if isinstance(self.source, TrialProgress):
            left = f", search ~{clock(self.source.remaining)} left" if self.source.remaining is not None else ""
            return self.source.label() + left
        return self.source

    def on_train_begin(self, logs=None):
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
                self.task, completed=epoch * self.steps, status=f"epoch {epoch + 1}/{self.epochs}{self.last}"
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
                f"  {self._label()}: epoch {epoch + 1}/{self.epochs}{self.last} ({seconds:.1f} s)",
                file=self.stream or sys.stdout,
                flush=True,
            )

    def on_train_end(self, logs=None):
        if self.bar:
            self.bar.stop()
            self.bar = self.task = None
