"""`archsearch run`: search, retrain the best, test once, write results, export the winner.

Each step leaves its output in the results directory as soon as it is done
(`trials.csv` after every trial, one JSON per retraining), so a run that is
stopped can be resumed with `resume=True` without redoing finished work.
"""

import dataclasses
import datetime
import importlib.metadata
import platform
import shutil
import sys
import time
from pathlib import Path

import filelock
import keras

from archsearch.pipeline import baselines

from archsearch.recipe import dimensions
from archsearch.model.backend import keras_without_tensorflow
from archsearch.recipe.architecture import plan
from archsearch.data import data_summary, load_data
from archsearch.search.leases import fingerprint, lease_floor
from archsearch.errors import ArchsearchError
from archsearch.output.export import export_model, export_summary, stored_dataset
from archsearch.records.history import EpochHistory, record_epoch
from archsearch.output.progress import EpochProgress, TrialProgress
from archsearch.output.report import write_report
from archsearch.records.tables import best_trials, leaderboard_frame, read_json, trials_frame, write_csv, write_json
from archsearch.pipeline.retrain import Evaluation, retrain, summarize
from archsearch.records.directory import LEADERBOARD, RUN, TRIALS, is_run, latest_unfinished, new_run_dir
from archsearch.search.tuners import SearchStopped, make_tuner
from archsearch.recipe.space import Train
from archsearch.output.summary import headline, leaderboard_table
from archsearch.search.tensorboard_logs import tensorboard_callback

PACKAGES = ("archsearch", "keras", "keras-tuner", "tensorflow", "jax", "numpy", "pandas", "scikit-learn")


def apply_overrides(space, *, tuner=None, max_trials=None, epochs=None, top_k=None, retrain_epochs=None, seeds=None, seed=None):
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


def _versions():
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def device_description():
    """What the model trains on, e.g. `cuda:0 NVIDIA H100 80GB HBM3` or `cpu (x86_64)`."""
    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return ", ".join(f"{g.name} {tf.config.experimental.get_device_details(g).get('device_name', '')}".strip() for g in gpus)
    return f"cpu ({platform.processor() or platform.machine()})"


def _run_dir(space, results, resume, overwrite):
    """The run directory a command means (see `run()`); creates a new one when starting afresh."""
    if resume not in (False, None, True):
        results = resume  # --resume DIR
    if results is not None:
        results = Path(results)
        if resume and not is_run(results):
            raise ArchsearchError(f"{results}: no run to resume here (no {RUN})")
        if is_run(results) and not (resume or overwrite):
            raise ArchsearchError(
                f"{results} already holds a run; pass --resume to continue it or --overwrite to start over"
            )
        return results
    root = Path("results") / space.name
    if overwrite:
        raise ArchsearchError("--overwrite starts one named run over: name it with --results DIR")
    return latest_unfinished(root) if resume else new_run_dir(root)


def _prepare(results, resume, overwrite, space):
    """With the run's lock held: clears the run for `overwrite`, or checks that a resumed run is this space's."""
    if overwrite and is_run(results):
        for entry in results.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    elif resume:
        previous = read_json(results / RUN).get("space_fingerprint")
        if previous != space.fingerprint():
            raise ArchsearchError(
                f"{results}: the space changed since this run started (fingerprint {previous} -> "
                f"{space.fingerprint()}); start a new run instead"
            )


def _check_same_data(results, previous, summary):
    """Refuses to resume a run on other data (another --data-dir), which would mix trials of both."""
    before = previous.get("data", {}).get("fingerprint")
    if before and before != summary["fingerprint"]:
        raise ArchsearchError(
            f"{results}: the data changed since this run started (fingerprint {before} -> {summary['fingerprint']}, "
            f"now {summary['source']}); resume with the data it started with, or start a new run"
        )


def run(space, results=None, *, data_dir=None, resume=False, overwrite=False, tensorboard=False, chief=None, workers=None,
        log=print):
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
    leaderboard = run(load_space("search_spaces/digits.py"))
    ```
    """
    results = _run_dir(space, results, resume, overwrite)
    results.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(results / ".lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise ArchsearchError(f"{results} is in use by another archsearch run (lock {results / '.lock'})") from None
    try:  # not `with lock:`, which would take it a second time and leave it held once at the end
        _prepare(results, bool(resume), overwrite, space)
        leaderboard = _run_locked(space, results, data_dir, bool(resume), tensorboard, chief, workers, log)
    finally:
        lock.release()
    leaderboard.attrs["run"] = str(results)
    return leaderboard


def _run_locked(space, results, data_dir, resume, tensorboard, chief, workers, log):
    session_start = time.perf_counter()
    previous = read_json(results / RUN) if resume else {}
    dataset = load_data(space.data, data_dir=data_dir)
    summary = data_summary(dataset)
    _check_same_data(results, previous, summary)
    log(f"run {results}")
    log(f"data: {summary['source']}, {summary['counts']} images of shape {summary['shape']}, {len(summary['classes'])} classes")
    metadata = {
        "space": space.to_dict(),
        "searched": space.searched(),
        "space_file_description": space.description,
        "space_fingerprint": space.fingerprint(),
        "data": summary,
        "command": sys.argv,
        "started": previous.get("started") or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "backend": keras.backend.backend(),
        "precision": keras.mixed_precision.dtype_policy().name,
        "device": device_description(),
        "python": platform.python_version(),
    }
    if chief:
        metadata.update(chief=str(chief), workers=workers.count if workers else 0)

    def record(status, **extra):
        """Writes run.json with the run's status and its wall time over all sessions."""
        wall = previous.get("wall_seconds", 0.0) + time.perf_counter() - session_start
        metadata.update(extra)
        write_json({**metadata, "status": status, "wall_seconds": round(wall, 1)}, results / RUN)

    record("searching")
    start = time.perf_counter()
    tuner, trials = _search(space, dataset, results, resume, tensorboard, chief, workers, record, log)
    metadata["search_seconds"] = round(time.perf_counter() - start, 1)
    best = best_trials(trials, space.retrain.top_k)
    if best.empty:
        raise ArchsearchError(f"no trial completed; see the reasons in {results / TRIALS}")

    record("retraining")
    epochs = space.retrain.epochs or space.max_epochs()
    start = time.perf_counter()
    rows = [_retrain_trial(trial, tuner.oracle.get_trial(trial["trial_id"]).hyperparameters, position, len(best),
                           space, dataset, epochs, results, log)
            for position, (_, trial) in enumerate(best.iterrows(), start=1)]
    metadata["retrain_seconds"] = round(time.perf_counter() - start, 1)
    leaderboard = leaderboard_frame(rows + _baseline_rows(dataset))
    write_csv(leaderboard, results / LEADERBOARD)

    record("exporting")
    stem = _retrain_stem(results, best.iloc[0]["trial_id"], 0)
    stored = stored_dataset(space.data, dataset, data_dir=data_dir)
    check = export_model(keras.saving.load_model(stem.with_suffix(".keras")), results / "best", stored, read_json(stem.with_suffix(".json"))["accuracy"],
                         crop_to_aspect_ratio=space.data.crop_to_aspect_ratio)
    record("complete", export_check=check, retrain_epochs=epochs)
    winner_row = next(row for row in rows if row["trial_id"] == leaderboard.iloc[0]["trial_id"])
    architecture = plan({n: winner_row[n] for n in dimensions.RECIPE + dimensions.TRAIN}, dataset.shape, dataset.num_classes)
    write_report(results, stored=stored, log=log)
    log(leaderboard_table(leaderboard, space.searched()))
    log(headline(leaderboard, architecture.point, results, export_summary(results / "best", check)))
    return leaderboard


def _search(space, dataset, results, resume, tensorboard, chief, workers, record, log):
    """Runs (or resumes) the Keras Tuner search, here or on workers; returns the tuner and the trials table."""
    progress = TrialProgress(results, space.search.max_trials, log)

    def on_epoch(trial_id, report):
        key = {"trial_id": trial_id, "phase": "search", "seed": None}
        record_epoch(results, key, int(report["epoch"]), report["loss"], report["accuracy"], report["epoch_seconds"])

    tuner = make_tuner(space, dataset, results, overwrite=not resume, on_epoch=on_epoch, on_trial_end=progress,
                       lease_floor=lease_floor() if chief else None)
    try:
        if chief:
            chief.serve(tuner, workers, fingerprint(space, dataset), results, log)
        else:
            tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val),
                         callbacks=[EpochProgress(progress), *([tensorboard_callback(results)] if tensorboard else [])], verbose=0)
        if tuner.oracle.stop_reason:
            raise SearchStopped(tuner.oracle.stop_reason)
    except SearchStopped as error:
        record("stopped", reason=str(error))
        raise
    trials = trials_frame(tuner)
    write_csv(trials, results / TRIALS)
    return tuner, trials


def _retrain_trial(trial, hyperparameters, position, count, space, dataset, epochs, results, log):
    """Retrains one of the best trials once per seed; returns its leaderboard row.

    Its point comes typed from the trial's hyperparameters, not from the text of its trials.csv row.
    """
    point = {**space.sample(hyperparameters.copy()), "epochs": epochs}
    evaluations = []
    for seed in range(space.retrain.seeds):
        label = f"retrain {position}/{count} [{trial['trial_id']}] seed {seed}"
        callbacks = [EpochProgress(label), EpochHistory(results, trial["trial_id"], "retrain", seed)]
        evaluation = _retrain_once(point, dataset, seed, epochs, _retrain_stem(results, trial["trial_id"], seed), callbacks)
        evaluations.append(evaluation)
        log(f"{label}: test_accuracy={evaluation.accuracy:.4f} in {evaluation.seconds:.0f} s")
    stats = summarize(evaluations)
    recall = stats.pop("test_recall")
    return {
        "trial_id": trial["trial_id"], **point, "val_accuracy": trial["val_accuracy"],
        "params": trial["params"], "flops": trial["flops"], **stats, "baseline": False,
        **{f"test_recall_{name}": r for name, r in zip(dataset.class_names, recall)},
    }


def _retrain_stem(results, trial_id, seed):
    return results / "retrain" / f"trial_{trial_id}_seed{seed}"


def _retrain_once(point, dataset, seed, epochs, stem, callbacks):
    """Retrains one (architecture, seed), or reads its saved result when resuming.

    Only seed 0's model is kept (as `<stem>.keras`): it is the one exported.

    Returns:
        The `Evaluation`.
    """
    record, saved = stem.with_suffix(".json"), stem.with_suffix(".keras")
    if record.exists() and (seed != 0 or saved.exists()):
        return Evaluation(**read_json(record))
    model, evaluation = retrain(point, dataset, seed, epochs, callbacks=callbacks)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if seed == 0:
        with keras_without_tensorflow():
            model.save(saved)
    write_json(dataclasses.asdict(evaluation), record)
    return evaluation


def _baseline_rows(dataset):
    squares_params, train_accuracy, squares = baselines.least_squares(dataset)
    mlp_params, mlp = baselines.mlp(dataset)
    rows = []
    for name, evaluation, count in (("least_squares", squares, squares_params), ("mlp", mlp, mlp_params)):
        rows.append({  # one fit: no standard deviation (unknown, not zero)
            "trial_id": f"baseline:{name}", "baseline": True, "test_accuracy": evaluation.accuracy,
            "test_accuracy_std": None, "test_balanced_error_rate": evaluation.balanced_error_rate,
            "test_balanced_error_rate_std": None, "params": count, "seeds": 1, "train_seconds": evaluation.seconds,
            **{f"test_recall_{n}": r for n, r in zip(dataset.class_names, evaluation.recall)},
        })
    rows[0]["train_accuracy"] = train_accuracy
    return rows
