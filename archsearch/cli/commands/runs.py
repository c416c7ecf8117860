"""`archsearch runs results/SPACE`: the runs of a space, one line each, unfinished and stopped ones too."""

import sys

import pandas as pd

from archsearch.errors import ArchsearchError


def add_parser(commands):
    p = commands.add_parser("runs", help="list the runs of a space, one line each")
    p.add_argument("results", help="the space's results folder, e.g. results/digits")
    p.add_argument(
        "--format",
        choices=("table", "csv"),
        default="table",
        help="table: one aligned line per run; csv: every column of the runs table",
    )
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.cli.console import note
    from archsearch.output.summary import clock, percent
    from archsearch.records.directory import UNRECORDED, runs_frame

    frame = runs_frame(args.results)
    if frame.empty:
        raise ArchsearchError(f"{args.results}: no runs here (a run is a folder holding run.json)")
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
        return
    shown = pd.DataFrame(
        {
            "run": frame["run"],
            "status": frame["status"],
            "best test accuracy": [percent(m, s) for m, s in zip(frame["test_accuracy"], frame["test_accuracy_std"])],
            "trials": frame["trials"].astype("string").fillna(""),
            "wall time": [clock(s) for s in frame["wall_seconds"]],
        }
    )
    print(shown.to_string(index=False))
    if (frame["status"] == UNRECORDED).any():
        note(
            f"{UNRECORDED}: the run has recorded nothing yet (it is starting, or was killed before it could); "
            "`archsearch run SPACE --resume` starts a killed one afresh"
        )
