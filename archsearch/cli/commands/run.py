"""`archsearch run SPACE`: search, retrain, test, write results and export the winner."""

import os

from archsearch.cli.commands import SPACE_HELP
from archsearch.cli.commands.worker import trial_options, worker_command
from archsearch.errors import ArchsearchError
from archsearch.recipe.bundled import space_file


def add_parser(commands):
    p = commands.add_parser("run", help="search, retrain, test, write results and export the winner")
    p.add_argument("space", help=SPACE_HELP)
    p.add_argument(
        "--results",
        metavar="DIR",
        help="use exactly this run directory (default: a new one, results/<space name>/<run id>)",
    )
    trial_options(p)
    p.add_argument(
        "--max-trials",
        type=int,
        metavar="N",
        help="search trials to run, over the space's Search(max_trials=...) (hyperband: a cap on its own schedule)",
    )
    p.add_argument(
        "--top-k", type=int, metavar="K", help="architectures to retrain and test, over the space's Retrain(top_k=...)"
    )
    p.add_argument(
        "--retrain-epochs", type=int, metavar="N", help="epochs of each retraining, over Retrain(epochs=...)"
    )
    p.add_argument(
        "--seeds", type=int, metavar="S", help="retrainings per architecture (seeds 0, 1, ...), over Retrain(seeds=...)"
    )
    again = p.add_mutually_exclusive_group()  # one continues a run, the other deletes it
    again.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN",
        help="continue a run: the one --results names, else RUN, else the space's most recent unfinished run",
    )
    again.add_argument("--overwrite", action="store_true", help="start the run that --results names over (deletes it)")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard logs, one run per trial with its hyperparameters, to <run>/tensorboard",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="train the trials in N worker processes on this machine (one per GPU), this one serving them",
    )
    p.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="serve the search at HOST:PORT to workers started with `archsearch worker SPACE --chief HOST:PORT` "
        "(default with --workers: 127.0.0.1 and a free port); no authentication: see the README",
    )
    p.set_defaults(handler=handle)


def handle(args):
    # A SPACE that names nothing fails at once, and a broken space file within seconds, before Keras and
    # TensorFlow load (that alone takes 5-10 s).
    path = space_file(args.space)
    from archsearch.recipe.space import load_space

    space = load_space(path)
    from archsearch.model.backend import configure_backend
    from archsearch.pipeline.runner import apply_overrides
    from archsearch.pipeline.runner import run as run_space
    from archsearch.search.distributed import LOOPBACK, Chief, parse_address
    from archsearch.search.supervisor import SHARED_GPU, Workers

    if args.workers < 0:
        raise ArchsearchError(f"--workers {args.workers}: expected 0 or more")
    chief = workers = None
    if args.chief or args.workers:
        if args.tensorboard:
            raise ArchsearchError(
                "--tensorboard writes its logs where trials train: it does not go with --workers or --chief"
            )
        chief = Chief(*parse_address(args.chief) if args.chief else (LOOPBACK, 0))
        workers = Workers(args.workers, worker_command(args))
        if workers.gpus:  # the chief builds a model on the first GPU, which its first worker uses
            os.environ.update(SHARED_GPU)
    configure_backend(mixed_precision=args.mixed_precision)

    space = apply_overrides(
        space,
        tuner=args.tuner,
        max_trials=args.max_trials,
        epochs=args.epochs,
        top_k=args.top_k,
        retrain_epochs=args.retrain_epochs,
        seeds=args.seeds,
        seed=args.seed,
    )
    run_space(
        space,
        args.results,
        data_dir=args.data_dir,
        resume=args.resume or False,
        overwrite=args.overwrite,
        tensorboard=args.tensorboard,
        chief=chief,
        workers=workers,
    )
