"""Which trained network a space's `Transfer` names, where it came from, and the leak it must not hide.

`resolve_transfer()` turns the declaration into the base the search and the
retraining build on (`archsearch.model.transfer.describe_base()`) and the
provenance run.json records. A source run is read through its records: its
winner (rank 1 of its leaderboard) is the retrained model its export was made
from, seed 0's, with the same weights.
"""

from pathlib import Path

from archsearch.errors import ArchsearchError, SpaceError
from archsearch.model.transfer import describe_base
from archsearch.records.directory import RunDir, is_run, resolve_run


def resolve_transfer(space, dataset, log=None, previous=None):
    """Loads a space's transfer source and describes its base, fitted to the data.

    Args:
        space: the `Space`; without `transfer`, nothing is loaded.
        dataset: the loaded `Dataset` of the space's data.
        log: told which run a space's folder resolved to.
        previous: run.json's `transfer` of a run being resumed: the run a
            space's folder resolved to then is the source again, not its
            most recent complete run now.

    Returns:
        A tuple `(base, provenance)`: an `archsearch.recipe.transfer.Base`
        and a JSON-ready dict for run.json's `transfer`; `(None, None)`
        without `transfer`.

    Raises:
        ArchsearchError: for a source that is missing, not finished, cannot
            be loaded, or whose training data holds the target's test split.
    """
    transfer = space.transfer
    if transfer is None:
        return None, None
    kind = transfer.kind()
    provenance = {"kind": kind, **transfer.to_dict()}
    if kind == "run":
        source = (previous or {}).get("run") or transfer.source
        load, where = _from_run(source, space.data, dataset, provenance, log)
    elif kind == "keras_file":
        path = Path(transfer.source)
        if not path.is_file():
            raise SpaceError(f"transfer: source={transfer.source!r}: no such file")
        load, where = {"keras_file": str(path.resolve())}, str(path)
        if is_run(path.parent.parent):  # a model of a run's retrain/: that run's data is known
            provenance["run"] = str(path.parent.parent)
            check_leak(RunDir(path.parent.parent), space.data, dataset)
    else:
        load, where = _application(transfer, space), transfer.source
    base = describe_base(load, transfer.features, dataset.shape, where)
    provenance.update(
        base=base.name,
        features=base.features,
        base_params=base.params,
        base_trainable_layers=base.weight_layers,
        load=load,
        digest=base.digest,
    )
    return base, provenance


def check_same_source(previous, provenance):
    """Refuses to resume a transferred run on another source than it started with (say, a newer run).

    Args:
        previous: run.json's `transfer` from the run's first session, or `None`.
        provenance: this session's, from `resolve_transfer()`.

    Raises:
        ArchsearchError: naming both sources.
    """
    if not previous:
        return
    keys = [key for key in ("base", "features", "digest", "trial_id") if key in previous]
    if any(previous[key] != provenance.get(key) for key in keys):
        before = previous.get("file") or previous.get("source")
        now = provenance.get("file") or provenance.get("source")
        raise ArchsearchError(
            f"transfer: the source changed since this run started ({before}, sha256 {previous.get('digest')} -> "
            f"{now}, sha256 {provenance.get('digest')}); resume with the source it started with, or start a new run"
        )


def _application(transfer, space):
    """How to load a keras.applications source: its name, weights file, arguments and the space's resolution."""
    weights = transfer.weights
    if weights is None:
        raise SpaceError(
            f"transfer: source={transfer.source!r}: weights=None would start from random weights; give the "
            "network's weights file without its top (weights='...notop.h5'), or weights='imagenet' to download them"
        )
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise SpaceError(f"transfer: weights={weights!r}: no such file")
        weights = str(Path(weights).resolve())
    resolution = space.declarations()["resolution"]
    return {
        "application": transfer.source,
        "weights": weights,
        "arguments": transfer.arguments or {},
        "resolution": resolution,
    }


def _from_run(source, data, dataset, provenance, log):
    """The winner of a finished run: its retrained model, after the leak check; fills in the provenance."""
    run_dir = resolve_run(source, log)
    meta = run_dir.read_run()
    leaderboard = run_dir.read_leaderboard()
    ranked = leaderboard[leaderboard["rank"] == 1]
    if meta.get("status") != "complete" or ranked.empty:
        raise ArchsearchError(f"transfer: {run_dir}: not a complete run (status {meta.get('status')!r})")
    trial_id = ranked.iloc[0]["trial_id"]
    saved = run_dir.retrained_model(trial_id, 0)
    if not saved.is_file():
        raise ArchsearchError(f"transfer: {run_dir}: its winner's retrained model {saved} is missing")
    check_leak(run_dir, data, dataset)
    provenance.update(
        run=str(run_dir),
        trial_id=str(trial_id),
        file=str(saved),
        space_fingerprint=meta.get("space_fingerprint"),
        data={key: meta["data"].get(key) for key in ("source", "classes", "fingerprint", "counts")},
        splits={key: meta["space"]["data"].get(key) for key in ("train_split", "test_split")},
        test_accuracy=float(ranked.iloc[0]["test_accuracy"]),
    )
    return {"keras_file": str(saved.resolve())}, f"run {run_dir}"


def check_leak(run_dir, data, dataset):
    """Refuses a source run that trained on the target's test images, itself or through its own source.

    The detectable case: the source read the same data source (the same
    resolved folder, archive, file or dataset name), trained on the split
    the target tests on (by name: two slices of one tensorflow-datasets
    split are not compared), and kept a class the target has. The source's
    training data (its training and validation splits, which its retraining
    fits on) then holds test images of the target, and the target's test
    accuracy would be inflated. A source run that transferred from another
    run is checked through that one too.

    Args:
        run_dir: the source run (a `RunDir`).
        data: the target's `Data` declaration.
        dataset: the target's loaded `Dataset`.

    Raises:
        ArchsearchError: naming the run, the split and the classes.
    """
    meta = run_dir.read_run()
    upstream = meta.get("transfer") or {}
    if upstream.get("run") and is_run(upstream["run"]):
        check_leak(RunDir(upstream["run"]), data, dataset)
    source_data = meta["space"]["data"]
    if meta["data"]["source"] != dataset.source or source_data.get("train_split", "train") != data.test_split:
        return
    shared = sorted(set(meta["data"]["classes"]) & set(dataset.class_names))
    if shared:
        raise ArchsearchError(
            f"transfer: {run_dir} trained on {dataset.source}'s {data.test_split!r} split, which this space tests "
            f"on (test_split={data.test_split!r}), with its classes {', '.join(shared)}: its features have seen "
            "the test images, and the test accuracy would not be honest; transfer from a run trained on another "
            "split or other data"
        )
