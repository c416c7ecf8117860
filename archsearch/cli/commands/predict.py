"""`archsearch predict RUN PATH...`: classifies image files with a run's exported model, as CSV."""

import os
import sys

from archsearch.cli.console import note
from archsearch.errors import ArchsearchError


def add_parser(commands):
    p = commands.add_parser("predict", help="classify image files with a run's exported model; CSV out")
    p.add_argument(
        "results",
        help="a run directory, a space's results folder (its latest complete run), "
        "or a folder `archsearch export` wrote",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders of them, or .tar.gz / .zip archives")
    p.add_argument("--out", help="CSV file to write (default: standard output)")
    p.add_argument("--batch-size", type=int, default=256, help="images per prediction batch (default 256)")
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.output.export import MODEL_JSON
    from archsearch.output.predict import predict as predict_images
    from archsearch.records.directory import resolve_run

    # An export folder is used as it is; a space's folder stands for its latest complete run.
    results = args.results
    if not os.path.isfile(os.path.join(results, MODEL_JSON)):
        try:
            results = resolve_run(results, log=note)
        except ArchsearchError:
            raise ArchsearchError(
                f"{results}: no exported model ({MODEL_JSON} and model.keras) and no complete run here"
            ) from None
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
