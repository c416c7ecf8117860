"""`archsearch export RUN --out DIR`: exports a retrained model of a finished run."""

import os

from archsearch.cli.commands import RUN_HELP
from archsearch.cli.console import note
from archsearch.errors import ArchsearchError


def add_parser(commands):
    p = commands.add_parser("export", help="export a retrained model of a finished run")
    p.add_argument("results", help=RUN_HELP)
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--data-dir")
    p.set_defaults(handler=handle)


def handle(args):
    import keras

    from archsearch.data import Data, load_data
    from archsearch.output.export import export_model, export_summary, stored_dataset
    from archsearch.records.directory import RUN, read_leaderboard, resolve_run
    from archsearch.records.tables import read_json

    args.results = str(resolve_run(args.results, log=note))
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
