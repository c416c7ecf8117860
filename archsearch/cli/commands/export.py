"""`archsearch export RUN --out DIR`: exports a retrained model of a finished run."""

from archsearch.cli.commands import RUN_HELP
from archsearch.cli.console import note
from archsearch.errors import ArchsearchError


def add_parser(commands):
    p = commands.add_parser("export", help="export a retrained model of a finished run")
    p.add_argument("results", help=RUN_HELP)
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write model.keras, saved_model/, model.onnx, model.tflite and model.json to (replaced)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rank", type=int, default=1, metavar="N", help="the leaderboard rank to export (default 1)")
    which.add_argument(
        "--pick",
        choices=("best", "fastest", "smallest"),
        help="choose by validation figures: best is rank 1; fastest (lowest latency_ms) or smallest (fewest params) "
        "among the retrained models within --within points of the best validation accuracy",
    )
    p.add_argument(
        "--within",
        type=float,
        metavar="POINTS",
        help="for --pick fastest/smallest: validation accuracy points (default 1.0)",
    )
    p.add_argument(
        "--data-dir",
        metavar="PATH",
        help="local copy of the run's data (as `run --data-dir`), on whose test split the export is checked",
    )
    p.add_argument("--quantize", choices=("int8",), help="also write model_int8.tflite, full-integer quantized")
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.output.export import export_retrained, export_summary
    from archsearch.records.directory import resolve_run

    if args.within is not None and args.pick not in ("fastest", "smallest"):
        raise ArchsearchError("export: --within applies only with --pick fastest or --pick smallest")
    run_dir = resolve_run(args.results, log=note)
    rank = _picked_rank(run_dir.read_leaderboard(), args.pick, args.within) if args.pick else args.rank
    trial_id, check, _ = export_retrained(run_dir, rank, args.out, data_dir=args.data_dir, quantize=args.quantize)
    print(f"exported rank {rank} (trial {trial_id}, seed 0): {export_summary(args.out, check)}")


def _picked_rank(leaderboard, how, within):
    """Picks a rank by validation figures (`tables.pick()`), prints which and why; returns it."""
    from archsearch.output.summary import percent
    from archsearch.records.tables import LATENCY, PICK_COSTS, pick

    within = 1.0 if within is None else within
    row, candidates = pick(leaderboard, how, within)
    accuracy = percent(row["val_accuracy"])
    if how == "best":
        print(f"picked rank 1 (trial {row['trial_id']}): the best validation accuracy, {accuracy}")
        return 1
    cost = PICK_COSTS[how]
    unit = " ms" if cost == LATENCY else " parameters"
    figure = (lambda v: f"{float(v):.3g}{unit}") if cost == LATENCY else (lambda v: f"{int(v):,}{unit}")
    others = ", ".join(
        f"rank {other['rank']} {figure(other[cost])} at {percent(other['val_accuracy'])}"
        for _, other in candidates.iterrows()
        if other["rank"] != row["rank"]
    )
    best = percent(candidates["val_accuracy"].astype(float).max())
    among = "the only retrained model" if len(candidates) == 1 else f"among the {len(candidates)} retrained models"
    print(
        f"picked rank {row['rank']} (trial {row['trial_id']}): {how}, {figure(row[cost])} at validation accuracy "
        f"{accuracy}, {among} within {within:g} point{'s' * (within != 1)} of the best validation accuracy "
        f"({best})" + (f"; the others: {others}" if others else "")
    )
    return int(row["rank"])
