"""`archsearch leaderboard RUN`: a finished run's leaderboard, as a table, CSV, Markdown or JSON."""

import sys

from archsearch.cli.commands import RUN_HELP
from archsearch.cli.console import note


def add_parser(commands):
    p = commands.add_parser("leaderboard", help="print a finished run's leaderboard")
    p.add_argument("results", help=RUN_HELP)
    p.add_argument(
        "--format",
        choices=("table", "csv", "markdown", "json"),
        default="table",
        help="table (default): the dimensions the space searched and the figures, in at most 120 columns; "
        "markdown: the same cells as a Markdown table; csv and json: leaderboard.csv whole",
    )
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.output.summary import leaderboard_markdown, leaderboard_table, searched_dimensions
    from archsearch.records.directory import resolve_run

    run_dir = resolve_run(args.results, log=note)
    frame = run_dir.read_leaderboard()
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif args.format == "json":
        print(frame.to_json(orient="records", indent=2))
    elif args.format == "markdown":
        print(leaderboard_markdown(frame, searched_dimensions(run_dir.read_run(), frame)))
    else:
        print(leaderboard_table(frame, searched_dimensions(run_dir.read_run(), frame)))
