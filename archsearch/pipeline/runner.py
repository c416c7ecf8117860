"""`archsearch run`: search, retrain the best, test once, write results, export the winner.

Each step leaves its output in the run directory as soon as it is done
(`trials.csv` after every trial, one JSON per retraining), so a run that is
stopped can be resumed with `resume=True` without redoing finished work.
"""

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import shutil
import sys
import time

import keras

from archsearch.data import data_summary, load_data
from archsearch.errors import ArchsearchError, InfeasibleArchitecture, SpaceError
from archsearch.files import is_disk_full, read_json, write_json
from archsearch.model import cost
from archsearch.model.backend import device_description, keras_without_tensorflow
from archsearch.output.export import export_retrained, export_summary
from archsearch.output.progress import EpochProgress, RetrainPlan, RetrainProgress, TrialProgress
from archsearch.output.report import write_report
from archsearch.output.summary import headline, leaderboard_table
from archsearch.pipeline import baselines
from archsearch.pipeline.retrain import Evaluation, retrain, summarize
from archsearch.pipeline.transfer import check_same_source, resolve_transfer
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import plan
from archsearch.recipe.presets import preset
from archsearch.recipe.space import Train
from archsearch.records.directory import choose_run
from archsearch.records.history import EpochHistory, record_epoch, record_epochs
from archsearch.records.tables import REFERENCE, best_trials, leaderboard_frame
from archsearch.search.leases import fingerprint, lease_floor
from archsearch.search.retraining import Unit
from archsearch.search.tensorboard_logs import tensorboard_callback
from archsearch.search.trials import trials_frame
from archsearch.search.tuners import SearchStopped, make_tuner

PACKAGES = ("archsearch", "keras", "keras-tuner", "tensorflow", "jax", "numpy", "pandas", "scikit-learn")


def apply_overrides(
    space, *, tuner=None, max_trials=None, epochs=None, top_k=None, retrain_epochs=None, seeds=None, seed=None
):
    """Returns a copy of `space` with command-line values put over the file's.

    Args:
        space: the `Space` from the file.
        tuner, max_trials, seed: override `space.search`.
        epochs: fixes the training epochs of every trial.
        top_k, retrain_epochs, seeds: override `space.retrain`.

    Returns:
        A new `Space`; `None` leaves a value as the file has it.
    """
    search = {k: v for k, v in dict(tuner=tuner, max_trials=max_trials, seed=seed).items() if v is not None}
    retrain = {k: v for k, v in dict(top_k=top_k, epochs=retrain_epochs, seeds=seeds).items() if v is not None}
    train = space.train
    if epochs is not None:
        train = Train(**{**train.values, "epochs": epochs})
    return dataclasses.replace(
        space,
        train=train,
        search=dataclasses.replace(space.search, **search),
        retrain=dataclasses.replace(space.retrain, **retrain),
    )


def _writing(run_dir):
    """Where the run was writing when it stopped, from the step its `run.json` records."""
    return {"retraining": run_dir.retrain, "exporting": run_dir.best}.get(run_dir.status(), run_dir.path)


def _versions():
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _prepare(run_dir, resume, overwrite, space, log):
    """With the run's lock held: clears the run for `overwrite`, or checks that a resumed run is this space's.

    Returns:
        Whether the run continues: `resume`, unless the run recorded nothing yet (no `run.json`: killed in its
        first seconds), which then starts afresh in its directory.
    """
    if overwrite and run_dir.is_run():
        run_dir.clear()
    elif resume and not run_dir.is_run():
        log(f"{run_dir}: the run recorded nothing yet (no {run_dir.run_json.name}): starting it afresh")
        return False
    elif resume:
        previous = run_dir.read_run().get("space_fingerprint")
        if previous != space.fingerprint():
            raise ArchsearchError(
                f"{run_dir}: the space changed since this run started (fingerprint {previous} -> "
                f"{space.fingerprint()}); start a new run instead"
            )
    return bool(resume)


def run(
    space,
    results=None,
    *,
    data_dir=None,
    resume=False,
    overwrite=False,
    tensorboard=False,
    chief=None,
    workers=None,
    log=print,
):
    """Runs a space end to end: search, retrain the top-k, test, leaderboard, export.

    Every run has a directory of its own: by default a new one,
    `results/<space name>/<run id>` (see `archsearch.records.directory`). No other run is
    read, changed or deleted.

    Args:
        space: the `Space` (after `apply_overrides()`).
        results: a run directory to use exactly; refused if it already holds
            a run, unless `resume` or `overwrite`.
        data_dir: a local image folder or .npz to read instead of the
            space's source.
        resume: `True` continues `results`, or else the most recent
            unfinished run of the space; a path continues that run.
        overwrite: start the run named by `results` over, once its lock is held.
        tensorboard: also write TensorBoard logs of the search, one run per
            trial with its hyperparameters (`<run>/tensorboard`; TensorFlow backend).
        chief: an `archsearch.search.distributed.Chief`: serve the search to
            workers through it instead of training its trials here.
        workers: with `chief`, the `archsearch.search.supervisor.Workers` to start
            on this machine.
        log: where progress lines go.

    Returns:
        The leaderboard DataFrame; `leaderboard.attrs["run"]` is the run directory.

    Example:

    ```python
    from archsearch.recipe.space import load_space
    leaderboard = run(load_space("digits"))
    ```
    """
    run_dir = choose_run(space.name, results, resume=resume, overwrite=overwrite)
    with run_dir.locked():
        session = None
        try:
            resuming = _prepare(run_dir, bool(resume), overwrite, space, log)
            session = _Session(space, run_dir, data_dir=data_dir, resume=resuming, log=log)
            try:
                leaderboard = session.run(tensorboard=tensorboard, chief=chief, workers=workers)
            finally:
                # Only now: a worker whose trial was handed on while it was cut off, and which comes back
                # to finish it, still finds the chief to tell it that nothing is left.
                if chief:
                    chief.close()
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (`archsearch.cli.console`)
            if session and session.metadata:  # what this session recorded says so; an earlier one's is kept
                session.record("stopped", reason=f"interrupted by {interrupt}" if str(interrupt) else "interrupted")
            # For the command line's last line: `--results RUN --resume` continues a run that recorded
            # something; one that recorded nothing leaves no folder, and is simply started again.
            interrupt.run_dir = run_dir if run_dir.is_run() else None
            run_dir.discard()
            raise
        except Exception as error:
            run_dir.discard()
            if is_disk_full(error):
                where = getattr(error, "filename", None) or _writing(run_dir)
                raise ArchsearchError(
                    f"{where}: no space left on device; free some space, then continue the run with --resume "
                    "(what it finished is kept)"
                ) from error
            raise
    leaderboard.attrs["run"] = str(run_dir)
    return leaderboard


class _Session:
    """One session of a run (a resume starts another), with the run's lock held: what its steps share.

    It loads the data, refuses a resume on other data, fits the references
    to the data (so that one that cannot be fails before any training), and
    keeps `run.json` (`record()`); its steps (`search()`, `retrain_trial()`,
    `train_reference()`) take only what differs between calls.

    Args:
        space: the `Space`.
        run_dir: the run's `RunDir`.
        data_dir: as for `run()`.
        resume: whether the run continues (its `run.json` is read back).
        log: where progress lines go.
    """

    def __init__(self, space, run_dir, *, data_dir, resume, log):
        self.start = time.perf_counter()
        self.space, self.run_dir, self.data_dir, self.resume, self.log = space, run_dir, data_dir, resume, log
        self.previous = run_dir.read_run() if resume else {}
        self.dataset = load_data(space.data, data_dir=data_dir)
        self.summary = data_summary(self.dataset)
        self._check_same_data()
        self.references = _fitted_references(space.retrain.references, self.dataset)
        self.base, self.transfer = resolve_transfer(space, self.dataset, log, self.previous.get("transfer"))
        check_same_source(self.previous.get("transfer"), self.transfer)
        self.metadata = {}
        self.tuner = self.progress = None

    def _check_same_data(self):
        """Refuses to resume a run on other data (another --data-dir), which would mix trials of both."""
        before, summary = self.previous.get("data", {}).get("fingerprint"), self.summary
        if before and before != summary["fingerprint"]:
            raise ArchsearchError(
                f"{self.run_dir}: the data changed since this run started "
                f"(fingerprint {before} -> {summary['fingerprint']}, now {summary['source']}); "
                "resume with the data it started with, or start a new run"
            )

    def record(self, status, **extra):
        """Writes run.json with the run's status and its wall time over all sessions."""
        wall = self.previous.get("wall_seconds", 0.0) + time.perf_counter() - self.start
        self.metadata.update(extra)
        self.run_dir.write_run({**self.metadata, "status": status, "wall_seconds": round(wall, 1)})

    def run(self, *, tensorboard, chief, workers):
        """Search, retraining, leaderboard, export and report; returns the leaderboard."""
        space, run_dir, dataset, log, summary = self.space, self.run_dir, self.dataset, self.log, self.summary
        log(f"run {run_dir}")
        log(
            f"data: {summary['source']}, {summary['counts']} images of shape {summary['shape']}, "
            f"{len(summary['classes'])} classes"
        )
        if self.references:
            fitted = (
                f"{name} (R={a.point['resolution']}, {a.params:,} parameters)" for name, a in self.references.items()
            )
            log(f"references: {', '.join(fitted)}")
        self.metadata = {
            "space": space.to_dict(),
            "searched": space.searched(),
            "space_file_description": space.description,
            "space_fingerprint": space.fingerprint(),
            "data": summary,
            "command": sys.argv,
            "started": self.previous.get("started")
            or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "backend": keras.backend.backend(),
            "precision": keras.mixed_precision.dtype_policy().name,
            "device": device_description(),
            "cost_device": cost.cost_device(),
            # The memory budget the search applies: Search(max_memory=...), or else the device's (None: unknown).
            "max_memory": cost.memory_budget(space.search),
            "python": platform.python_version(),
            **({"transfer": self.transfer} if self.transfer else {}),
        }
        if chief:
            self.metadata.update(chief=str(chief), workers=workers.count if workers else 0)
        before, now = self.previous.get("cost_device"), self.metadata["cost_device"]
        if before and before != now:
            log(
                f"warning: this run's earlier trials were measured on {before}, this session's are measured on "
                f"{now}: the latency columns of {run_dir.trials_csv} mix the two devices"
            )
        if "retrained_trials" in self.previous:  # a resume retrains what the run chose, once it chose
            self.metadata["retrained_trials"] = self.previous["retrained_trials"]

        self.record("searching")
        start = time.perf_counter()
        trials = self.search(tensorboard, chief, workers)
        self.metadata["search_seconds"] = round(time.perf_counter() - start, 1)
        best = self.selected(trials)
        if best.empty:
            raise ArchsearchError(f"no trial completed; see the reasons in {run_dir.trials_csv}")

        self.record("retraining", retrained_trials=[str(t) for t in best["trial_id"]])
        start = time.perf_counter()
        self.retraining = RetrainProgress(self.retrain_plan(), best, log)
        points = {str(trial_id): self.trial_point(trial_id) for trial_id in best["trial_id"]}
        self.spread(chief, points, transfer=self.base is not None)
        rows = [
            self.retrain_trial(trial, points[str(trial["trial_id"])], position, len(best))
            for position, (_, trial) in enumerate(best.iterrows(), start=1)
        ]
        ranked = leaderboard_frame(rows)  # before the unranked rows join them
        winner = next(row for row in rows if row["trial_id"] == ranked.iloc[0]["trial_id"])
        references = {name: self.reference_point(name, winner) for name in space.retrain.references}
        self.spread(chief, {f"{REFERENCE}{name}": point for name, point in references.items()})
        rows += [self.train_reference(name, point) for name, point in references.items()]
        if chief:  # nothing left to train: the workers end, and free their GPUs for the baselines and the export
            chief.dismiss()
        self.metadata["retrain_seconds"] = round(time.perf_counter() - start, 1)
        leaderboard = leaderboard_frame(rows + _baseline_rows(dataset, log))
        run_dir.write_leaderboard(leaderboard)

        self.record("exporting")
        _, check, stored = export_retrained(run_dir, 1, run_dir.best, data_dir=self.data_dir, dataset=dataset)
        self.record("complete", export_check=check, retrain_epochs=self.retrain_epochs)
        point = {n: value for n, value in winner.items() if n in dimensions.BY_NAME}  # the others: their defaults
        architecture = plan(point, dataset.shape, dataset.num_classes, self.base)
        write_report(run_dir, stored=stored, log=log)
        log(leaderboard_table(leaderboard, space.searched()))
        log(headline(leaderboard, architecture.point, run_dir, export_summary(run_dir.best, check), self.transfer))
        return leaderboard

    @property
    def retrain_epochs(self):
        return self.space.retrain.epochs or self.space.max_epochs()

    def retrain_plan(self):
        """What the retraining will train, for the progress lines' time estimates (`RetrainPlan`)."""
        retrain, dataset = self.space.retrain, self.dataset
        return RetrainPlan(
            top_k=retrain.top_k,
            seeds=retrain.seeds,
            references=tuple(retrain.references),
            epochs=self.retrain_epochs,
            images_ratio=(len(dataset.x_train) + len(dataset.x_val)) / len(dataset.x_train),
        )

    def search(self, tensorboard, chief, workers):
        """Runs (or resumes) the Keras Tuner search, here or on workers; returns the trials table."""
        space, run_dir, dataset = self.space, self.run_dir, self.dataset
        self.progress = TrialProgress(space.search.max_trials, self.log, self.retrain_plan())
        self.tuner = tuner = make_tuner(
            space,
            dataset,
            run_dir.tuner,
            overwrite=not self.resume,
            on_epoch=self.on_epoch,
            on_trial_end=self.on_trial_end,
            lease_floor=lease_floor() if chief else None,
            base=self.base,
        )
        try:
            if chief:
                chief.serve(tuner, workers, fingerprint(space, dataset, self.base), run_dir, self.log)
            else:
                callbacks = [
                    EpochProgress(self.progress),
                    *([tensorboard_callback(run_dir.tensorboard)] if tensorboard else []),
                ]
                tuner.search(
                    dataset.x_train,
                    dataset.y_train,
                    validation_data=(dataset.x_val, dataset.y_val),
                    callbacks=callbacks,
                    verbose=0,
                )
            if tuner.oracle.stop_reason:
                raise SearchStopped(tuner.oracle.stop_reason)
        except SearchStopped as error:
            self.record("stopped", reason=str(error))
            raise
        trials = trials_frame(tuner)
        run_dir.write_trials(trials)
        return trials

    def selected(self, trials):
        """The trials to retrain: those run.json records (a resumed run keeps its choice), else `best_trials()`'s."""
        retrain, chosen = self.space.retrain, self.previous.get("retrained_trials")
        if chosen is None:
            return best_trials(trials, retrain.top_k, retrain.select, retrain.pareto_cost)
        unknown = [t for t in chosen if t not in set(trials["trial_id"])]
        if unknown:
            raise ArchsearchError(
                f"{self.run_dir.run_json}: retrained_trials names {', '.join(map(str, unknown))}, "
                f"not a trial of {self.run_dir.trials_csv}"
            )
        return trials.set_index("trial_id", drop=False).loc[chosen].reset_index(drop=True)

    def on_epoch(self, trial_id, report):
        """After each epoch of a trial (reported to the oracle, here or by a worker): a row of history.csv."""
        key = {"trial_id": trial_id, "phase": "search", "seed": None}
        record_epoch(
            self.run_dir, key, int(report["epoch"]), report["loss"], report["accuracy"], report["epoch_seconds"]
        )

    def on_trial_end(self, tuner, trial_id):
        """After each trial: trials.csv written anew, then the trial's line."""
        trials = trials_frame(tuner)
        self.run_dir.write_trials(trials)
        self.progress(trials, trial_id)

    def trial_point(self, trial_id):
        """A trial's point to retrain, typed from its hyperparameters (not from the text of its trials.csv row)."""
        values = self.tuner.oracle.get_trial(trial_id).hyperparameters.copy()
        return {**self.space.sample(values), "epochs": self.retrain_epochs}

    def reference_point(self, name, winner):
        """A reference's point to train under the winners' protocol.

        Its architecture is the preset's, fitted to the data (`Preset.architecture()`); its training knobs
        are the winner's, the retraining epochs among them, but for those the preset fixes (`Preset.train`).

        Args:
            name: the preset's name, e.g. `"resnet20"`.
            winner: the rank-1 row (`retrain_trial()`'s).
        """
        return {
            **dimensions.defaults(),
            **{n: self.references[name].point[n] for n in dimensions.RECIPE},
            **{n: winner[n] for n in dimensions.applicable() if n in dimensions.TRAIN},
            **preset(name).train,
        }

    def spread(self, chief, points, transfer=False):
        """With a chief, has its workers retrain each (point, seed) not saved yet, and waits for their results.

        Each is a `Unit` of work (`archsearch.search.retraining`); its result lands where a retraining here
        would leave it (`on_result()`), so that `retrain_trial()` and `train_reference()` then read it.

        Args:
            chief: the `archsearch.search.distributed.Chief`, or `None` (nothing to do).
            points: leaderboard row id -> point to retrain.
            transfer: whether the points start from the space's transferred base.
        """
        if not chief:
            return
        units = [
            Unit(trial_id, seed, point, transfer=transfer, keep_model=self._paths(trial_id, seed)[1] is not None)
            for trial_id, point in points.items()
            for seed in range(self.space.retrain.seeds)
            if not _saved(*self._paths(trial_id, seed))
        ]
        try:
            chief.retrain(units, self.on_result)
        except SearchStopped as error:
            self.record("stopped", reason=str(error))
            raise

    def on_result(self, unit, worker, evaluation, history, model):
        """A worker's retraining of a unit: its model (a temporary file, or `None`), history rows and test figures.

        The figures come last: once they are on disk, the unit counts as done (`_saved()`).
        """
        result, saved = self._paths(unit.trial_id, unit.seed)
        result.parent.mkdir(parents=True, exist_ok=True)
        if saved is not None:  # through a file beside it: a crash never leaves half a model under its name
            partial = saved.with_name(f".{saved.name}.partial")
            shutil.move(model, partial)
            os.replace(partial, saved)
        record_epochs(self.run_dir, {"trial_id": unit.trial_id, "phase": "retrain", "seed": unit.seed}, history)
        write_json({**evaluation, "worker": worker}, result)
        self.log(f"{unit.name}: test {evaluation['accuracy']:.4f} on {worker} ({evaluation['seconds']:.0f} s)")

    def _paths(self, trial_id, seed):
        """Where a retraining's `Evaluation` is kept, and its model or `None`: only a trial's seed 0's is kept."""
        if trial_id.startswith(REFERENCE):
            return self.run_dir.reference_result(trial_id.removeprefix(REFERENCE), seed), None
        return self.run_dir.retrained_result(trial_id, seed), self.run_dir.retrained_model(
            trial_id
        ) if seed == 0 else None

    def retrain_trial(self, trial, point, position, count):
        """Retrains one of the best trials once per seed; returns its leaderboard row.

        Args:
            trial: the trial's row of the trials table.
            point: its point to retrain (`trial_point()`).
            position, count: its place among the trials retrained, for the progress lines.

        Returns:
            The row, a dict.
        """
        trial_id = str(trial["trial_id"])
        evaluations = self._retrain_seeds(point, trial_id, f"retrain {position}/{count} [{trial_id}]", self.base)
        # The trial's own measurement of its untrained model: the same figures as trials.csv's.
        figures = {n: trial.get(n) for n in ("val_accuracy", "params", "flops", *cost.COST_COLUMNS)}
        return self._row(trial_id, point, evaluations, self.space.applicable_dimensions(), baseline=False, **figures)

    def train_reference(self, name, point):
        """Trains a reference once per seed; returns its unranked leaderboard row.

        Args:
            name: the preset's name, e.g. `"resnet20"`.
            point: its point (`reference_point()`).

        Returns:
            The row, a dict, `reference:<name>`.
        """
        fitted, trial_id = self.references[name], f"{REFERENCE}{name}"
        # Measured before it trains, as a trial's untrained model is, and as it is scored (the winner's `tta`).
        trained = plan(point, self.dataset.shape, self.dataset.num_classes)
        figures = {
            "val_accuracy": None,
            "params": fitted.params,
            "flops": fitted.flops,
            **cost.measure(trained).to_dict(),
        }
        evaluations = self._retrain_seeds(point, trial_id, f"reference {name}")
        return self._row(trial_id, point, evaluations, dimensions.applicable(), baseline=True, **figures)

    def _retrain_seeds(self, point, trial_id, label, base=None):
        """Retrains a point once per seed from 0 up, each with its line (`RetrainProgress`); returns the `Evaluation`s.

        Args:
            point: the point (recipe and training knobs, the retraining epochs among them).
            trial_id: its row's id, for history.csv and where its results are kept (`_paths()`).
            label: what its progress lines call it, e.g. `"retrain 1/2 [7]"`.
            base: the transferred base a trial of a space with `transfer` starts from (a reference has none).
        """
        evaluations = []
        for seed in range(self.space.retrain.seeds):
            self.retraining.begin(f"{label} seed {seed}")
            callbacks = [EpochProgress(self.retraining), EpochHistory(self.run_dir, trial_id, "retrain", seed)]
            evaluation = self._retrain_once(point, seed, callbacks, *self._paths(trial_id, seed), base)
            evaluations.append(evaluation)
            self.retraining.end(evaluation)
        return evaluations

    def _retrain_once(self, point, seed, callbacks, result, saved, base):
        """Retrains one (point, seed), or reads its saved result when resuming.

        Args:
            point, seed: what to train.
            callbacks: its Keras callbacks.
            result: where its `Evaluation` is kept (`RunDir.retrained_result()`, `RunDir.reference_result()`).
            saved: where its model is kept, or `None`: only a trial's seed 0's is
                (`RunDir.retrained_model()`), the one exported.
            base: as for `_retrain_seeds()`.

        Returns:
            The `Evaluation`.
        """
        if _saved(result, saved):
            return Evaluation(**read_json(result))
        model, evaluation = retrain(point, self.dataset, seed, point["epochs"], callbacks=callbacks, base=base)
        result.parent.mkdir(parents=True, exist_ok=True)
        if saved is not None:
            with keras_without_tensorflow():
                model.save(saved)
        write_json({n: v for n, v in dataclasses.asdict(evaluation).items() if v is not None}, result)  # no worker
        return evaluation

    def _row(self, trial_id, point, evaluations, applicable, **figures):
        """A leaderboard row: the point's `applicable` dimensions (the others blank), `figures` and the test figures.

        `figures`: `baseline`, `val_accuracy`, `params`, `flops` and the cost columns.
        """
        stats = summarize(evaluations)
        recall = stats.pop("test_recall")
        workers = [e.worker or "local" for e in evaluations]  # local: trained by the run's process
        return {
            "trial_id": trial_id,
            **{name: point[name] for name in applicable},
            **figures,
            **stats,
            # In a run with workers, the one of each seed, in seed order (a column of its own: one process has none).
            **({"workers": " ".join(workers)} if set(workers) != {"local"} else {}),
            **{f"test_recall_{name}": r for name, r in zip(self.dataset.class_names, recall)},
        }


def _saved(result, model):
    """Whether a retraining is done: its `Evaluation` is on disk, and its model where one is kept."""
    return result.exists() and (model is None or model.exists())


def _fitted_references(names, dataset):
    """Fits each reference to the data: a dict from its name to its `Architecture`.

    Raises:
        SpaceError: naming the first reference the data's images are too small for, and why.
    """
    fitted = {}
    for name in names:
        try:
            fitted[name] = preset(name).architecture(dataset.shape, dataset.num_classes)
        except InfeasibleArchitecture as error:
            shape = "x".join(map(str, dataset.shape))
            raise SpaceError(
                f"retrain: references: {name} does not fit this data's {shape} images ({error}); "
                "leave it out of Retrain(references=...)"
            ) from None
    return fitted


def _baseline_rows(dataset, log):
    """The baselines' leaderboard rows; none, with a line saying why, where they would not fit in memory."""
    needed, memory = baselines.memory_needed(dataset), cost.host_memory()
    if memory and needed > baselines.MEMORY_FRACTION * memory:
        log(
            f"baselines: left out: fitting raw pixels would hold about {needed / 2**30:.1f} GiB in memory, "
            f"more than {baselines.MEMORY_FRACTION:.0%} of this machine's {memory / 2**30:.1f} GiB"
        )
        return []
    squares_params, train_accuracy, squares = baselines.least_squares(dataset)
    mlp_params, mlp = baselines.mlp(dataset)
    rows = []
    for name, evaluation, count in (("least_squares", squares, squares_params), ("mlp", mlp, mlp_params)):
        rows.append(
            {  # one fit: no standard deviation (unknown, not zero)
                "trial_id": f"baseline:{name}",
                "baseline": True,
                "test_accuracy": evaluation.accuracy,
                "test_accuracy_std": None,
                "test_balanced_error_rate": evaluation.balanced_error_rate,
                "test_balanced_error_rate_std": None,
                "params": count,
                "seeds": 1,
                "train_seconds": evaluation.seconds,
                **{f"test_recall_{n}": r for n, r in zip(dataset.class_names, evaluation.recall)},
            }
        )
    rows[0]["train_accuracy"] = train_accuracy
    return rows
