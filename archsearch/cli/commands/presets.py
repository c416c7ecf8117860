"""`archsearch presets`: the named networks a space can start from, with their sizes, one row each."""

import io
import json
import shutil
import sys

#: The most columns the table takes, as the leaderboard's.
MAX_WIDTH = 120

COLUMNS = ("name", "input_shape", "classes", "params", "trainable_params", "flops", "source")


def add_parser(commands):
    p = commands.add_parser("presets", help="list the named networks (Recipe.preset, start_from, references)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default): for a person, within 120 columns; csv or json: the same columns, for a program",
    )
    p.set_defaults(handler=handle)


def table(rows, width=MAX_WIDTH):
    """Renders the presets' rows for a screen: counts with thousands separators, the source wrapped.

    Args:
        rows: from `archsearch.recipe.presets.presets_table()`.
        width: the most columns to use.

    Returns:
        The table as text, no line wider than `width` where the counts fit
        (the sources wrap at their spaces, or go where their longest word would not fit).
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    counts = ("classes", "params", "trainable_params", "flops")
    cells = [[row["name"], row["input_shape"], *(f"{row[name]:,}" for name in counts)] for row in rows]
    grid = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    headers = ("name", "input shape", "classes", "params", "trainable params", "FLOPs")
    # As wide as the values, no wider: a longer header wraps at its space, leaving the source room.
    fits = [max(max(len(row[i]) for row in cells), *map(len, header.split())) for i, header in enumerate(headers)]
    for i, (header, fit) in enumerate(zip(headers, fits)):
        grid.add_column(header, justify="left" if i < 2 else "right", width=fit)
    room = width - sum(fit + 2 for fit in fits) - 2  # each column's padding and divider, and the edges
    longest = max(len(word) for row in rows for word in row["source"].split())
    if room >= longest:  # else the sources go (CSV and JSON have them), rather than break their words
        grid.add_column("source", overflow="fold")  # the one column whose values wrap, at their spaces
        cells = [[*row, item["source"]] for row, item in zip(cells, rows)]
    for row in cells:
        grid.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")


def handle(args):
    import pandas as pd

    from archsearch.recipe.presets import presets_table

    rows = presets_table()
    if args.format == "csv":
        sys.stdout.write(pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False))
    elif args.format == "json":
        # The image shape as a list, as `describe --format json` gives it.
        records = [{**row, "input_shape": [int(side) for side in row["input_shape"].split("x")]} for row in rows]
        print(json.dumps(records, indent=2))
    else:
        width = min(shutil.get_terminal_size().columns, MAX_WIDTH) if sys.stdout.isatty() else MAX_WIDTH
        print(table(rows, width))
