"""`archsearch data SPACE`: loads a space's data and reports its splits."""

import json

import pandas as pd

from archsearch.cli.commands import DATA_DIR_HELP, SPACE_HELP
from archsearch.recipe.bundled import space_file


def add_parser(commands):
    p = commands.add_parser("data", help="load a space's data and report its splits")
    p.add_argument("space", help=SPACE_HELP)
    p.add_argument("--data-dir", metavar="PATH", help=DATA_DIR_HELP)
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default), for a person; json: the same facts, for a program",
    )
    p.set_defaults(handler=handle)


def handle(args):
    path = space_file(args.space)  # a SPACE that names nothing fails before the data's imports load
    from archsearch.data import data_summary, load_data
    from archsearch.recipe.space import load_space

    summary = data_summary(load_data(load_space(path).data, data_dir=args.data_dir))
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return
    for key in ("source", "classes", "shape", "fingerprint", "cache", "seconds"):
        print(f"{key}: {summary[key]}")
    print(pd.DataFrame(summary["per_class"]).fillna(0).astype(int).to_string())
    print("total: " + ", ".join(f"{split} {count:,}" for split, count in summary["counts"].items()))
