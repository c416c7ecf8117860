"""`archsearch worker SPACE --chief HOST:PORT`: trains the trials, then the retraining, that a chief serves."""

import os
import sys

from archsearch.cli.commands import DATA_DIR_HELP, SPACE_HELP
from archsearch.cli.console import note
from archsearch.errors import ArchsearchError
from archsearch.recipe.bundled import space_file
from archsearch.recipe.dimensions import TUNERS


def trial_options(p):
    """The options a chief and its workers must be given alike: they change what a trial trains."""
    p.add_argument("--data-dir", metavar="PATH", help=DATA_DIR_HELP)
    p.add_argument("--tuner", choices=tuple(TUNERS), help="Keras Tuner's search, over the space's Search(tuner=...)")
    p.add_argument(
        "--epochs", type=int, metavar="N", help="training epochs of every trial, over the space's Train(epochs=...)"
    )
    p.add_argument(
        "--seed", type=int, metavar="S", help="seed of the search's sampling, over the space's Search(seed=...)"
    )
    p.add_argument(
        "--mixed-precision", action="store_true", help="compute in bfloat16, keep weights in float32 (for GPUs)"
    )


def worker_command(args):
    """The `archsearch worker` command line, before `--chief`, for the space and trial options of `args`."""
    command = [sys.executable, "-m", "archsearch", *(["--debug"] if args.debug else []), "worker", args.space]
    for option in ("data_dir", "tuner", "epochs", "seed"):
        if getattr(args, option) is not None:
            command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    return command + (["--mixed-precision"] if args.mixed_precision else [])


def add_parser(commands):
    p = commands.add_parser(
        "worker", help="train the trials and retraining of a search that `archsearch run --chief` serves"
    )
    p.add_argument("space", help="the chief's space, as the chief was given it: " + SPACE_HELP)
    p.add_argument("--chief", required=True, metavar="HOST:PORT", help="where the chief serves the search")
    trial_options(p)
    p.add_argument(
        "--id",
        help="this worker's name (default: host name and process id); a worker restarted "
        "with the same name gets its unfinished trial back",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes here (one per GPU), named ID-0, ID-1, ..., restarted when they die",
    )
    p.add_argument(
        "--results",
        metavar="RUN",
        help="the chief's run directory, where this machine shares the chief's disk (Hyperband needs it)",
    )
    p.set_defaults(handler=handle)


def handle(args):
    # Before Keras and TensorFlow load (5-10 s), and before any worker process starts: a SPACE that
    # names nothing fails at once, and a broken space file within seconds.
    path = space_file(args.space)
    from archsearch.recipe.space import load_space

    space = load_space(path)
    import socket

    from archsearch.model.backend import configure_backend
    from archsearch.output.progress import EpochProgress
    from archsearch.pipeline.retrain import retrain
    from archsearch.pipeline.runner import apply_overrides
    from archsearch.pipeline.transfer import resolve_transfer
    from archsearch.records.directory import RunDir
    from archsearch.search.distributed import parse_address, work
    from archsearch.search.supervisor import Workers, exit_with_supervisor

    address = parse_address(args.chief)
    if args.workers < 1:
        raise ArchsearchError(f"--workers {args.workers}: expected 1 or more")
    if args.workers > 1:
        base = args.id or socket.gethostname()
        workers = Workers(args.workers, worker_command(args), ids=[f"{base}-{i}" for i in range(args.workers)])
        workers.start(args.chief, args.results)
        try:
            workers.wait()
        finally:
            workers.stop()
        if any(workers.exits.values()):
            raise ArchsearchError(f"not every worker ended well: {workers.summary()}")
        return
    exit_with_supervisor(note)
    configure_backend(mixed_precision=args.mixed_precision)
    space = apply_overrides(space, tuner=args.tuner, epochs=args.epochs, seed=args.seed)
    worker_id = args.id or f"{socket.gethostname()}-{os.getpid()}"
    work(
        space,
        address,
        worker_id=worker_id,
        retrain=retrain,
        data_dir=args.data_dir,
        tuner_dir=RunDir(args.results).tuner if args.results else None,
        trial_callbacks=lambda trial_id: [EpochProgress(f"{worker_id} trial {trial_id}")],
        unit_callbacks=lambda unit: [EpochProgress(f"{worker_id} {unit.name}")],
        base_for=lambda dataset: resolve_transfer(space, dataset)[0],
    )
