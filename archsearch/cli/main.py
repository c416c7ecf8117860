"""The `archsearch` command line: run, worker, runs, describe, data, leaderboard, report, export, predict.

Errors that archsearch understands (a bad space file, missing data, an
infeasible architecture, ...) print one line and exit with status 2;
`--debug` shows the traceback instead.
"""

import argparse
import json
import math
import os
import sys

import pandas as pd

from archsearch.cli.console import interrupt_outside_gc_callbacks, quiet
from archsearch.errors import ArchsearchError


def _space_rows(space, sample, seed, data_dir):
    """Returns (declarations table, sampled points table, architectures) of a space."""
    from archsearch.recipe import dimensions
    from archsearch.data import peek
    from archsearch.errors import InfeasibleArchitecture

    declared = pd.DataFrame(
        [
            {"dimension": name, "group": dimensions.BY_NAME[name].group,
             "value": v.describe() if hasattr(v, "describe") else repr(v)}
            for name, v in space.declarations().items()
        ]
    )
    shape, num_classes = peek(space.data, data_dir=data_dir)
    rows, architectures = [], []
    for point in space.random_points(sample, seed):
        row = dict(point)
        try:
            architecture = planned = space.architecture(point, shape, num_classes)
            reason = ""
        except InfeasibleArchitecture as error:
            architecture, planned, reason = None, error.architecture, str(error)
        if planned:
            row.update(stages=planned.point["stages"], params=planned.params, flops=planned.flops)
        row["infeasible"] = reason
        architectures.append(architecture)
        rows.append(row)
    sampled = pd.DataFrame(rows).astype({"params": "Int64", "flops": "Int64"}, errors="ignore")
    return declared, sampled, architectures, shape, num_classes


def describe(args):
    from archsearch.recipe.space import load_space

    space = load_space(args.space)
    declared, sampled, architectures, shape, num_classes = _space_rows(space, args.sample, args.seed, args.data_dir)
    size = space.size()
    if args.format == "csv":
        sys.stdout.write(sampled.to_csv(index=False))
    elif args.format == "json":
        document = {
            "name": space.name, "description": space.description, "input_shape": list(shape),
            "num_classes": num_classes, "dimensions": space.to_dict()["dimensions"],
            "architectures": None if math.isinf(size) else size,
            "samples": json.loads(sampled.to_json(orient="records")),
        }
        if args.summary:
            document["summaries"] = [a.summary() if a else None for a in architectures]
        print(json.dumps(document, indent=2, default=list))
    else:
        print(f"{space.name}: {space.description}\n")
        print(f"input {shape}, {num_classes} classes")
        print("architectures: " + ("continuous space" if math.isinf(size) else f"{size:,} distinct points"))
        print(declared.to_string(index=False))
        print(f"\n{args.sample} sampled (seed {args.seed}):")
        print(sampled.to_string(index=False))
    if args.summary and args.format == "table":
        for i, architecture in enumerate(architectures):
            if architecture:
                print(f"\nsample {i}: {architecture.params:,} params, {architecture.flops:,} FLOPs per image")
                print(pd.DataFrame(architecture.summary()).to_string(index=False))


def data(args):
    from archsearch.data import data_summary, load_data
    from archsearch.recipe.space import load_space

    summary = data_summary(load_data(load_space(args.space).data, data_dir=args.data_dir))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return
    for key in ("source", "classes", "shape", "fingerprint", "cache", "seconds"):
        print(f"{key}: {summary[key]}")
    print(pd.DataFrame(summary["per_class"]).fillna(0).astype(int).to_string())
    print("total: " + ", ".join(f"{split} {count:,}" for split, count in summary["counts"].items()))


def run(args):
    from archsearch.model.backend import configure_backend
    from archsearch.search.distributed import LOOPBACK, Chief, parse_address
    from archsearch.pipeline.runner import apply_overrides, run as run_space
    from archsearch.recipe.space import load_space
    from archsearch.search.supervisor import SHARED_GPU, Workers

    if args.workers < 0:
        raise ArchsearchError(f"--workers {args.workers}: expected 0 or more")
    chief = workers = None
    if args.chief or args.workers:
        if args.tensorboard:
            raise ArchsearchError("--tensorboard writes its logs where trials train: it does not go with --workers or --chief")
        chief = Chief(*parse_address(args.chief) if args.chief else (LOOPBACK, 0))
        workers = Workers(args.workers, _worker_command(args))
        if workers.gpus:  # the chief builds a model on the first GPU, which its first worker uses
            os.environ.update(SHARED_GPU)
    configure_backend(mixed_precision=args.mixed_precision)

    space = apply_overrides(
        load_space(args.space), tuner=args.tuner, max_trials=args.max_trials, epochs=args.epochs,
        top_k=args.top_k, retrain_epochs=args.retrain_epochs, seeds=args.seeds, seed=args.seed,
    )
    run_space(space, args.results, data_dir=args.data_dir, resume=args.resume or False, overwrite=args.overwrite,
              tensorboard=args.tensorboard, chief=chief, workers=workers)


def _worker_command(args):
    """The `archsearch worker` command line, before `--chief`, for the space and trial options of `args`."""
    command = [sys.executable, "-m", "archsearch", *(["--debug"] if args.debug else []), "worker", args.space]
    for option in ("data_dir", "tuner", "epochs", "seed"):
        if getattr(args, option) is not None:
            command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return command + (["--mixed-precision"] if args.mixed_precision else [])


def worker(args):
    import socket

    from archsearch.model.backend import configure_backend
    from archsearch.output.progress import EpochProgress
    from archsearch.search.distributed import parse_address, work
    from archsearch.pipeline.runner import apply_overrides
    from archsearch.recipe.space import load_space
    from archsearch.search.supervisor import Workers, exit_with_supervisor

    address = parse_address(args.chief)
    if args.workers < 1:
        raise ArchsearchError(f"--workers {args.workers}: expected 1 or more")
    if args.workers > 1:
        base = args.id or socket.gethostname()
        workers = Workers(args.workers, _worker_command(args), ids=[f"{base}-{i}" for i in range(args.workers)])
        workers.start(args.chief, args.results)
        try:
            workers.wait()
        finally:
            workers.stop()
        if any(workers.exits.values()):
            raise ArchsearchError(f"not every worker ended well: {workers.summary()}")
        return
    exit_with_supervisor(_note)
    configure_backend(mixed_precision=args.mixed_precision)
    space = apply_overrides(load_space(args.space), tuner=args.tuner, epochs=args.epochs, seed=args.seed)
    worker_id = args.id or f"{socket.gethostname()}-{os.getpid()}"
    work(space, address, worker_id=worker_id, data_dir=args.data_dir, results=args.results,
         trial_callbacks=lambda trial_id: [EpochProgress(f"{worker_id} trial {trial_id}")])


def runs(args):
    from archsearch.records.directory import runs_frame
    from archsearch.output.summary import clock, percent

    frame = runs_frame(args.results)
    if frame.empty:
        raise ArchsearchError(f"{args.results}: no runs here (a run is a folder holding run.json)")
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
        return
    shown = pd.DataFrame({
        "run": frame["run"], "status": frame["status"],
        "best test accuracy": [percent(m, s) for m, s in zip(frame["test_accuracy"], frame["test_accuracy_std"])],
        "trials": frame["trials"].astype("string").fillna(""),
        "wall time": [clock(s) for s in frame["wall_seconds"]],
    })
    print(shown.to_string(index=False))


def leaderboard(args):
    from archsearch.records.directory import read_leaderboard, read_run, resolve_run
    from archsearch.output.summary import leaderboard_table, searched_dimensions

    run_dir = resolve_run(args.results, log=_note)
    frame = read_leaderboard(run_dir)
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    elif args.format == "markdown":
        print(frame[[c for c in frame.columns if not c.startswith("test_recall_")]].to_markdown(index=False))
    else:
        print(leaderboard_table(frame, searched_dimensions(read_run(run_dir), frame)))


def _note(line):
    """A remark for the person at the terminal, kept out of the output scripts read."""
    print(line, file=sys.stderr)


def report(args):
    from archsearch.output.report import write_report
    from archsearch.records.directory import resolve_run

    path = write_report(resolve_run(args.results, log=_note), data_dir=args.data_dir, log=_note)
    print(f"report: {path}")


def export(args):
    import keras

    from archsearch.data import Data, load_data
    from archsearch.output.export import export_model, export_summary, stored_dataset
    from archsearch.records.tables import read_json
    from archsearch.records.directory import RUN, read_leaderboard, resolve_run

    args.results = str(resolve_run(args.results, log=_note))
    frame = read_leaderboard(args.results)
    ranked = frame[frame["rank"] == args.rank]
    if ranked.empty:
        raise ArchsearchError(f"{args.results}: no rank {args.rank} in the leaderboard (ranks 1 to {int(frame['rank'].max())})")
    trial_id = ranked.iloc[0]["trial_id"]
    stem = os.path.join(args.results, "retrain", f"trial_{trial_id}_seed0")
    if not os.path.exists(stem + ".keras"):
        raise ArchsearchError(f"{stem}.keras: the retrained model of rank {args.rank} is missing; rerun with --resume")
    model = keras.saving.load_model(stem + ".keras")
    data_declaration = Data(**read_json(os.path.join(args.results, RUN))["space"]["data"])
    stored = stored_dataset(data_declaration, load_data(data_declaration, data_dir=args.data_dir), data_dir=args.data_dir)
    check = export_model(model, args.out, stored, read_json(stem + ".json")["accuracy"], crop_to_aspect_ratio=data_declaration.crop_to_aspect_ratio)
    print(f"exported rank {args.rank} (trial {trial_id}, seed 0): {export_summary(args.out, check)}")


def predict(args):
    from archsearch.output.export import MODEL_JSON
    from archsearch.output.predict import predict as predict_images
    from archsearch.records.directory import resolve_run

    # An export folder is used as it is; a space's folder stands for its latest complete run.
    results = args.results
    if not os.path.isfile(os.path.join(results, MODEL_JSON)):
        try:
            results = resolve_run(results, log=_note)
        except ArchsearchError:
            raise ArchsearchError(f"{results}: no exported model ({MODEL_JSON} and model.keras) and no complete run here") from None
    try:
        classified, unreadable = predict_images(results, args.paths, args.out, batch_size=args.batch_size)
    except BrokenPipeError:  # the reader of standard output (say, `head`) stopped: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's documentation advises
        return 0
    if args.out or unreadable:
        into = f" into {args.out}" if args.out else ""
        skipped = f"; skipped {len(unreadable)} unreadable file(s), named above" if unreadable else ""
        print(f"archsearch predict: classified {classified:,} image(s){into}{skipped}", file=sys.stderr)
    return 1 if unreadable else 0


def _trial_options(p):
    """The options a chief and its workers must be given alike: they change what a trial trains."""
    p.add_argument("--data-dir", help="local image folder or .npz to use instead of downloading (or ARCHSEARCH_DATA_DIR)")
    from archsearch.recipe.dimensions import TUNERS

    p.add_argument("--tuner", choices=TUNERS)
    p.add_argument("--epochs", type=int, help="training epochs of every trial")
    p.add_argument("--seed", type=int, help="seed of the search")
    p.add_argument("--mixed-precision", action="store_true", help="compute in bfloat16, keep weights in float32 (for GPUs)")


def _parser():
    parser = argparse.ArgumentParser(prog="archsearch", description="Search the VGG/ResNet recipe for the best image classifier.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("run", help="search, retrain, test, write results and export the winner")
    p.add_argument("space", help="a space file, e.g. search_spaces/cifar.py")
    p.add_argument("--results", metavar="DIR", help="use exactly this run directory (default: a new one, results/<space name>/<run id>)")
    _trial_options(p)
    p.add_argument("--max-trials", type=int)
    p.add_argument("--top-k", type=int, help="architectures to retrain")
    p.add_argument("--retrain-epochs", type=int)
    p.add_argument("--seeds", type=int, help="retrainings per architecture")
    p.add_argument("--resume", nargs="?", const=True, metavar="RUN",
                   help="continue a run: the one --results names, else RUN, else the space's most recent unfinished run")
    p.add_argument("--overwrite", action="store_true", help="start the run that --results names over (deletes it)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard logs, one run per trial with its hyperparameters, to <run>/tensorboard")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="train the trials in N worker processes on this machine (one per GPU), this one serving them")
    p.add_argument("--chief", metavar="HOST:PORT",
                   help="serve the search at HOST:PORT to workers started with `archsearch worker SPACE --chief HOST:PORT` "
                        "(default with --workers: 127.0.0.1 and a free port); no authentication: see the README")
    p.set_defaults(handler=run)

    p = commands.add_parser("worker", help="train trials of a search that `archsearch run --chief` serves")
    p.add_argument("space", help="the chief's space file")
    p.add_argument("--chief", required=True, metavar="HOST:PORT", help="where the chief serves the search")
    _trial_options(p)
    p.add_argument("--id", help="this worker's name (default: host name and process id); a worker restarted "
                                "with the same name gets its unfinished trial back")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run N worker processes here (one per GPU), named ID-0, ID-1, ..., restarted when they die")
    p.add_argument("--results", metavar="RUN",
                   help="the chief's run directory, where this machine shares the chief's disk (Hyperband needs it)")
    p.set_defaults(handler=worker)

    p = commands.add_parser("describe", help="show a space and sample architectures, without training")
    p.add_argument("space")
    p.add_argument("--sample", type=int, default=5, help="architectures to sample (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--summary", action="store_true", help="also print each sample's layer table")
    p.add_argument("--data-dir", help="local copy of the data (only its shape and classes are read)")
    p.set_defaults(handler=describe)

    p = commands.add_parser("data", help="load a space's data and report its splits")
    p.add_argument("space")
    p.add_argument("--data-dir")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=data)

    p = commands.add_parser("runs", help="list the runs of a space, one line each")
    p.add_argument("results", help="the space's results folder, e.g. results/digits")
    p.add_argument("--format", choices=("table", "csv"), default="table")
    p.set_defaults(handler=runs)

    p = commands.add_parser("leaderboard", help="print a finished run's leaderboard")
    p.add_argument("results", help="a run directory, or a space's results folder (its most recent complete run)")
    p.add_argument("--format", choices=("table", "csv", "markdown", "json"), default="table")
    p.set_defaults(handler=leaderboard)

    p = commands.add_parser("report", help="write a finished run's report.html: figures, leaderboard, facts")
    p.add_argument("results", help="a run directory, or a space's results folder (its most recent complete run)")
    p.add_argument("--data-dir", help="local copy of the data, for the winner's confusion matrix and misclassified images")
    p.set_defaults(handler=report)

    p = commands.add_parser("export", help="export a retrained model of a finished run")
    p.add_argument("results", help="a run directory, or a space's results folder (its most recent complete run)")
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--data-dir")
    p.set_defaults(handler=export)

    p = commands.add_parser("predict", help="classify image files with a run's exported model; CSV out")
    p.add_argument("results", help="a run directory, a space's results folder (its latest complete run), or a folder `archsearch export` wrote")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of them, or .tar.gz / .zip archives")
    p.add_argument("--out", help="CSV file to write (default: standard output)")
    p.add_argument("--batch-size", type=int, default=256, help="images per prediction batch (default 256)")
    p.set_defaults(handler=predict)
    return parser


def main(argv=None):
    """Runs one command, e.g. `main(["leaderboard", "results/digits"])`; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.debug:
        import archsearch.search.tuners  # noqa: F401  its import turns Keras Tuner's tracebacks off: import it first
        from archsearch.compat.keras_tuner import show_tracebacks

        show_tracebacks(True)
    try:
        return args.handler(args) or 0
    except ArchsearchError as error:
        if args.debug:
            raise
        print(f"archsearch: error: {error}", file=sys.stderr)
        return 2


def console_main():
    """Entry point of the `archsearch` console script and `python -m archsearch`: `main()`, quietly.

    The filter on standard error (`archsearch.cli.console.quiet()`) is set up for
    the whole process, so it is done here, in the program's entry point, and
    not in `main()`, which tests call in their own process.
    """
    debug = "--debug" in sys.argv[1:]
    if not debug:
        quiet()
    interrupt_outside_gc_callbacks()
    try:
        return main()
    except KeyboardInterrupt:
        if debug:
            raise
        print("archsearch: interrupted; an interrupted run continues with `archsearch run SPACE --resume`", file=sys.stderr)
        return 130
