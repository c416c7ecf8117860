"""`archsearch report RUN`: writes a finished run's report.html."""

from archsearch.cli.commands import RUN_HELP
from archsearch.cli.console import note


def add_parser(commands):
    p = commands.add_parser("report", help="write a finished run's report.html: figures, leaderboard, facts")
    p.add_argument("results", help=RUN_HELP)
    p.add_argument(
        "--data-dir",
        metavar="PATH",
        help="local copy of the run's data (as `run --data-dir`), for the winner's confusion matrix and misclassified "
        "images",
    )
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.output.report import write_report
    from archsearch.records.directory import resolve_run

    path = write_report(resolve_run(args.results, log=note), data_dir=args.data_dir, log=note)
    print(f"report: {path}")
