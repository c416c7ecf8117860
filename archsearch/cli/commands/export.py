"""`archsearch export RUN --out DIR`: exports a retrained model of a finished run."""

from archsearch.cli.commands import RUN_HELP
from archsearch.cli.console import note


def add_parser(commands):
    p = commands.add_parser("export", help="export a retrained model of a finished run")
    p.add_argument("results", help=RUN_HELP)
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--quantize", choices=("int8",), help="also write model_int8.tflite, full-integer quantized")
    p.set_defaults(handler=handle)


def handle(args):
    from archsearch.output.export import export_retrained, export_summary
    from archsearch.records.directory import resolve_run

    run_dir = resolve_run(args.results, log=note)
    trial_id, check, _ = export_retrained(run_dir, args.rank, args.out, data_dir=args.data_dir, quantize=args.quantize)
    print(f"exported rank {args.rank} (trial {trial_id}, seed 0): {export_summary(args.out, check)}")
