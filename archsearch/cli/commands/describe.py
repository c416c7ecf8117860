"""`archsearch describe SPACE`: the space and sampled architectures, without training."""

import json
import math
import sys
import textwrap

import pandas as pd

from archsearch.cli.commands import DATA_DIR_HELP, SPACE_HELP


def add_parser(commands):
    p = commands.add_parser("describe", help="show a space and sample architectures, without training")
    p.add_argument("space", help=SPACE_HELP)
    p.add_argument("--sample", type=int, default=5, help="architectures to sample (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampling: the same seed, the same sample (default 0)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default): the declarations, then the samples' searched dimensions and costs in at most "
        "120 columns; csv: every dimension of each sample; json: the space and its samples",
    )
    p.add_argument("--summary", action="store_true", help="also print each sample's layer table")
    p.add_argument("--data-dir", metavar="PATH", help=DATA_DIR_HELP + "; only its shape and classes are read")
    p.add_argument(
        "--latency",
        action="store_true",
        help="also build each sample's untrained model and measure it on this machine: latency_ms, "
        "latency_ms_iqr, images_per_second, model_bytes (about a second per sample; imports Keras), and "
        "apply the search's default memory budget, this device's memory, where Search(max_memory=None)",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="estimate memory as `run --mixed-precision` trains: 2-byte activations",
    )
    p.set_defaults(handler=handle)


def _space_rows(space, sample, seed, data_dir, latency=False, mixed_precision=False):
    """Returns (declarations table, sampled points table, architectures, shape, classes) of a space.

    A planned sample's row has its `params`, `flops` and `memory_estimate_bytes`
    (a training step at its batch size: float32, or bfloat16 activations with
    `mixed_precision`, as `run --mixed-precision` trains). A sample over
    `max_params`, `max_flops` or `Search.max_memory` is marked infeasible as
    the search would mark it. With `latency`, the cost columns of its untrained
    model too, a sample over `max_latency_ms` or `max_model_bytes` is marked
    the same way, and where `Search(max_memory=None)` leaves the budget to the
    device, this device's memory applies (`archsearch.model.cost.memory_budget()`,
    the search's own); without it, describe imports no Keras to ask the device.
    """
    from archsearch.data import load_data, peek
    from archsearch.errors import InfeasibleArchitecture
    from archsearch.model import cost
    from archsearch.recipe import dimensions

    declared = pd.DataFrame(
        [
            {
                "dimension": name,
                "group": dimensions.BY_NAME[name].group,
                "value": v.describe() if hasattr(v, "describe") else repr(v),
            }
            for name, v in space.declarations().items()
            if name in space.applicable_dimensions()
        ]
    )
    shape, num_classes = peek(space.data, data_dir=data_dir)
    base = None
    if space.transfer:  # a transferred network's plan needs its source's base, loaded with Keras
        from archsearch.pipeline.transfer import resolve_transfer

        base = resolve_transfer(space, load_data(space.data, data_dir=data_dir))[0]
    activation_bytes = 2 if mixed_precision else 4
    # Without --latency, no Keras is imported to ask the device for its memory.
    budget = cost.memory_budget(space.search) if latency else space.search.max_memory
    rows, architectures = [], []
    for point in space.random_points(sample, seed):
        row = dict(point)
        try:
            architecture = planned = space.architecture(point, shape, num_classes, budget, activation_bytes, base)
            reason = ""
        except InfeasibleArchitecture as error:
            architecture, planned, reason = None, error.architecture, str(error)
        if planned:
            row.update(stages=planned.point["stages"], params=planned.params, flops=planned.flops)
            row["memory_estimate_bytes"] = planned.memory_estimate(activation_bytes=activation_bytes)
        if latency and architecture:
            measured = cost.measure(architecture)
            row.update(measured.to_dict())
            try:
                cost.check_budgets(architecture, measured, space.search)
            except InfeasibleArchitecture as error:
                architecture, reason = None, str(error)
        row["infeasible"] = reason
        architectures.append(architecture)
        rows.append(row)
    sampled = pd.DataFrame(rows)
    integers = [c for c in cost.INTEGER_COLUMNS if c in sampled]
    sampled = sampled.astype(dict.fromkeys(integers, "Int64"))
    return declared, sampled, architectures, shape, num_classes


def handle(args):
    from archsearch.recipe.bundled import space_file

    path = space_file(args.space)  # a SPACE that names nothing fails before the space's imports load
    from archsearch.recipe.space import load_space

    space = load_space(path)
    declared, sampled, architectures, shape, num_classes = _space_rows(
        space, args.sample, args.seed, args.data_dir, args.latency, args.mixed_precision
    )
    size = space.size()
    if args.format == "csv":
        sys.stdout.write(sampled.to_csv(index=False))
    elif args.format == "json":
        document = {
            "name": space.name,
            "description": space.description,
            "input_shape": list(shape),
            "num_classes": num_classes,
            "dimensions": {
                n: v.describe() if hasattr(v, "describe") else v
                for n, v in space.declarations().items()
                if n in space.applicable_dimensions()
            },
            "architectures": None if math.isinf(size) else size,
            "start_from": list(space.search.start_from),
            **({"transfer": space.transfer.to_dict()} if space.transfer else {}),
            "samples": json.loads(sampled.to_json(orient="records")),
        }
        if args.summary:
            document["summaries"] = [a.summary() if a else None for a in architectures]
        print(json.dumps(document, indent=2, default=list))
    else:
        from archsearch.output.summary import MAX_WIDTH

        for line in f"{space.name}: {space.description}".splitlines():
            print(textwrap.fill(line, MAX_WIDTH) if line else "")
        print()
        print(f"input {shape}, {num_classes} classes")
        if space.transfer:
            kind = space.transfer.kind().replace("_", " ")
            print(f"transfer: from {space.transfer.source!r} ({kind}), its base and a new head")
        print(_size_line(space))
        print(declared.to_string(index=False))
        if space.search.start_from:
            print(f"\nstarts from: {', '.join(space.search.start_from)} (the search's first trials, in order)")
        print(f"\n{args.sample} sampled (seed {args.seed}):")
        print(_sample_table(space, sampled))
    if args.summary and args.format == "table":
        for i, architecture in enumerate(architectures):
            if architecture:
                print(f"\nsample {i}: {architecture.params:,} params, {architecture.flops:,} FLOPs per image")
                print(pd.DataFrame(architecture.summary()).to_string(index=False))


def _size_line(space):
    """How big the space is, in words: the recipe's combinations (architectures), then the training knobs searched.

    Example: `architectures: 24 recipe combinations; training knobs searched: learning_rate (continuous)`.
    """
    from archsearch.output.summary import MAX_WIDTH
    from archsearch.recipe import dimensions

    declared = space.declarations()
    searched = space.searched()
    recipe = math.prod(declared[n].size() for n in searched if dimensions.BY_NAME[n].group == "recipe")
    architectures = (
        "a continuous range" if math.isinf(recipe) else f"{recipe:,} recipe combination{'s' * (recipe != 1)}"
    )
    knobs = [
        f"{n} ({'continuous' if math.isinf(declared[n].size()) else f'{declared[n].size()} values'})"
        for n in searched
        if dimensions.BY_NAME[n].group == "train"
    ]
    line = f"architectures: {architectures}; training knobs " + (f"searched: {', '.join(knobs)}" if knobs else "fixed")
    return textwrap.fill(line, MAX_WIDTH, subsequent_indent="  ")


def _sample_table(space, sampled):
    """The samples in at most 120 columns: the searched dimensions, the planned figures, why any is infeasible.

    The fixed dimensions are in the declarations above it; `stages` is shown
    as planned where the space leaves it to `"auto"`; every column is in
    `--format csv`.
    """
    from archsearch.output.summary import MAX_WIDTH, cell, text_tables

    def integers(name, scale=1, digits=0):
        if name not in sampled:
            return []
        return [("" if pd.isna(v) else f"{v / scale:,.{digits}f}") for v in sampled[name]]

    shown = [n for n in space.searched() if n in sampled]
    if "stages" not in shown and space.declarations()["stages"] == "auto":
        shown.append("stages")
    columns = {"sample": [str(i) for i in range(len(sampled))]}
    columns.update({n.replace("_", " "): [cell(v) for v in sampled[n]] for n in shown})
    figures = {
        "params": integers("params"),
        "FLOPs": integers("flops"),
        "memory MiB": integers("memory_estimate_bytes", 2**20, 1),
        "latency ms": [cell(v) for v in sampled["latency_ms"]] if "latency_ms" in sampled else [],
        "images/s": integers("images_per_second"),
        "model KiB": integers("model_bytes", 2**10, 1),
    }
    figures = {name: cells for name, cells in figures.items() if cells}
    reasons = [(i, reason) for i, reason in enumerate(sampled["infeasible"]) if reason]
    if reasons:
        figures["feasible"] = ["no" if reason else "yes" for reason in sampled["infeasible"]]
    columns.update(figures)
    table = text_tables(columns, ("sample",), list(figures), MAX_WIDTH, no_wrap=("sample",), left=())
    legend = [textwrap.fill(f"sample {i}: {reason}", MAX_WIDTH, subsequent_indent="    ") for i, reason in reasons]
    return "\n".join([table, *legend])
