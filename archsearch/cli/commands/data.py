"""`archsearch data SPACE`: loads a space's data and reports its splits."""

import json

import pandas as pd


def add_parser(commands):
    p = commands.add_parser("data", help="load a space's data and report its splits")
    p.add_argument("space")
    p.add_argument("--data-dir")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=handle)


def handle(args):
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
