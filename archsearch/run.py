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
import numpy as np

from archsearch import baselines, dimensions
from archsearch.data import data_summary, load_data
from archsearch.errors import ArchsearchError
from archsearch.export import export_model, export_summary, stored_dataset
from archsearch.results import (
    LEADERBOARD, RUN, TRIALS, best_trials, leaderboard_frame, read_json, trials_frame, write_csv, write_json,
)
from archsearch.retrain import Evaluation, retrain, summarize
from archsearch.search import SearchStopped, make_tuner
from archsearch.space import Train

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


class _Progress:
    """Writes trials.csv and prints one line after every trial."""

    def __init__(self, results, max_trials, log):
        self.results, self.max_trials, self.log = results, max_trials, log
        self.start = time.perf_counter()
        self.done_here = 0

    def __call__(self, tuner):
        trials = trials_frame(tuner)
        write_csv(trials, self.results / TRIALS)
        self.done_here += 1
        last = trials.iloc[-1]
        trained = int((trials["status"] != "infeasible").sum())
        elapsed = time.perf_counter() - self.start
        remaining = elapsed / self.done_here * max(0, self.max_trials - trained)
        best = trials.loc[trials["status"] == "completed", "val_accuracy"].max()
        score = last["reason"]
        if last["status"] == "completed":
            score = (f"completed, val_accuracy={last['val_accuracy']:.4f} "
                     f"(trained in {last['seconds']:.1f} s, {last['compile_seconds']:.1f} s of it compiling)")
        self.log(
            f"trial {trained}/{self.max_trials} [{last['trial_id']}] {score} | "
            f"best {best:.4f} | elapsed {_clock(elapsed)}, remaining ~{_clock(remaining)}"
        )


def _clock(seconds):
    return str(datetime.timedelta(seconds=int(seconds)))


def _prepare(results, resume, overwrite, space):
    """Refuses to clobber a previous run; clears it with `overwrite`; checks a resumed space."""
    run_file = results / RUN
    if run_file.exists() and overwrite:
        shutil.rmtree(results)
    elif run_file.exists() and not resume:
        raise ArchsearchError(
            f"{results} already holds a run; pass --resume to continue it or --overwrite to start over"
        )
    elif run_file.exists():
        previous = read_json(run_file).get("space_fingerprint")
        if previous != space.fingerprint():
            raise ArchsearchError(
                f"{results}: the space changed since this run started (fingerprint {previous} -> "
                f"{space.fingerprint()}); pass --overwrite to start over"
            )
    results.mkdir(parents=True, exist_ok=True)


def run(space, results=None, *, data_dir=None, resume=False, overwrite=False, log=print):
    """Runs a space end to end: search, retrain the top-k, test, leaderboard, export.

    Args:
        space: the `Space` (after `apply_overrides()`).
        results: the results directory; default `results/<space name>`.
        data_dir: a local image folder or .npz to read instead of the
            space's source.
        resume: continue the run found in `results`.
        overwrite: delete the run found in `results` and start over.
        log: where progress lines go.

    Returns:
        The leaderboard DataFrame.

    Example:

    ```python
    from archsearch.space import load_space
    leaderboard = run(load_space("search_spaces/digits.py"))
    ```
    """
    results = Path(results or Path("results") / space.name)
    _prepare(results, resume, overwrite, space)
    lock = filelock.FileLock(str(results / ".lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise ArchsearchError(f"{results} is in use by another archsearch run (lock {results / '.lock'})") from None
    with lock:
        return _run_locked(space, results, data_dir, resume, log)


def _run_locked(space, results, data_dir, resume, log):
    dataset = load_data(space.data, data_dir=data_dir)
    summary = data_summary(dataset)
    log(f"data: {summary['source']}, {summary['counts']} images of shape {summary['shape']}, {len(summary['classes'])} classes")
    metadata = {
        "space": space.to_dict(),
        "space_file_description": space.description,
        "space_fingerprint": space.fingerprint(),
        "data": summary,
        "command": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "backend": keras.backend.backend(),
        "precision": keras.mixed_precision.dtype_policy().name,
        "device": device_description(),
        "python": platform.python_version(),
        "status": "searching",
    }
    write_json(metadata, results / RUN)

    start = time.perf_counter()
    trials = _search(space, dataset, results, resume, metadata, log)
    metadata["search_seconds"] = round(time.perf_counter() - start, 1)
    best = best_trials(trials, space.retrain.top_k)
    if best.empty:
        raise ArchsearchError(f"no trial completed; see the reasons in {results / TRIALS}")

    write_json({**metadata, "status": "retraining"}, results / RUN)
    epochs = space.retrain.epochs or space.max_epochs()
    start = time.perf_counter()
    rows = [_retrain_trial(trial, position, len(best), space, dataset, epochs, results, log)
            for position, (_, trial) in enumerate(best.iterrows(), start=1)]
    metadata["retrain_seconds"] = round(time.perf_counter() - start, 1)
    leaderboard = leaderboard_frame(rows + _baseline_rows(dataset))
    write_csv(leaderboard, results / LEADERBOARD)

    write_json({**metadata, "status": "exporting"}, results / RUN)
    stem = _retrain_stem(results, best.iloc[0]["trial_id"], 0)
    stored = stored_dataset(space.data, dataset, data_dir=data_dir)
    check = export_model(keras.saving.load_model(stem.with_suffix(".keras")), results / "best", stored, read_json(stem.with_suffix(".json"))["accuracy"])
    log(f"exported the winner: {export_summary(results / 'best', check)}")
    write_json({**metadata, "status": "complete", "export_check": check, "retrain_epochs": epochs}, results / RUN)
    return leaderboard


def _search(space, dataset, results, resume, metadata, log):
    """Runs (or resumes) the Keras Tuner search; returns the trials table."""
    tuner = make_tuner(space, dataset, results, overwrite=not resume, on_trial_end=_Progress(results, space.search.max_trials, log))
    try:
        tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
    except SearchStopped as error:
        write_json({**metadata, "status": "stopped", "reason": str(error)}, results / RUN)
        raise
    trials = trials_frame(tuner)
    write_csv(trials, results / TRIALS)
    return trials


def _retrain_trial(trial, position, count, space, dataset, epochs, results, log):
    """Retrains one of the best trials once per seed; returns its leaderboard row."""
    point = {n: dimensions.BY_NAME[n].parse(str(trial[n])) for n in dimensions.RECIPE + dimensions.TRAIN}
    point["epochs"] = epochs
    evaluations = []
    for seed in range(space.retrain.seeds):
        evaluation = _retrain_once(point, dataset, seed, epochs, _retrain_stem(results, trial["trial_id"], seed))
        evaluations.append(evaluation)
        log(f"retrain {position}/{count} [{trial['trial_id']}] seed {seed}: test_accuracy={evaluation.accuracy:.4f} in {evaluation.seconds:.0f} s")
    stats = summarize(evaluations)
    recall = stats.pop("test_recall")
    return {
        "trial_id": trial["trial_id"], **point, "val_accuracy": trial["val_accuracy"],
        "params": trial["params"], "flops": trial["flops"], **stats, "baseline": False,
        **{f"test_recall_{name}": r for name, r in zip(dataset.class_names, recall)},
    }


def _retrain_stem(results, trial_id, seed):
    return results / "retrain" / f"trial_{trial_id}_seed{seed}"


def _retrain_once(point, dataset, seed, epochs, stem):
    """Retrains one (architecture, seed), or reads its saved result when resuming.

    Only seed 0's model is kept (as `<stem>.keras`): it is the one exported.

    Returns:
        The `Evaluation`.
    """
    record, saved = stem.with_suffix(".json"), stem.with_suffix(".keras")
    if record.exists() and (seed != 0 or saved.exists()):
        return Evaluation(**read_json(record))
    model, evaluation = retrain(point, dataset, seed, epochs)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if seed == 0:
        model.save(saved)
    write_json(dataclasses.asdict(evaluation), record)
    return evaluation


def _baseline_rows(dataset):
    train_accuracy, test = baselines.least_squares(dataset)
    params, mlp = baselines.mlp(dataset)
    pixels = int(np.prod(dataset.shape))
    rows = []
    for name, evaluation, count in (
        ("least_squares", test, (pixels + 1) * dataset.num_classes),
        ("mlp", mlp, params),
    ):
        rows.append({
            "trial_id": f"baseline:{name}", "baseline": True, "test_accuracy": evaluation.accuracy,
            "test_accuracy_std": 0.0, "test_balanced_error_rate": evaluation.balanced_error_rate,
            "test_balanced_error_rate_std": 0.0, "params": count, "seeds": 1, "train_seconds": evaluation.seconds,
            **{f"test_recall_{n}": r for n, r in zip(dataset.class_names, evaluation.recall)},
        })
    rows[0]["train_accuracy"] = train_accuracy
    return rows
