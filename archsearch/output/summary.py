"""What a person reads at the end of a run: the winner in words, and a leaderboard that fits a screen.

The CSV keeps every column for scripts; the printed table keeps the
dimensions the space searched and the figures, in at most 120 columns,
with blanks where a value does not apply.
"""

import io
import re
import shutil
import sys
import textwrap

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table

from archsearch.recipe import dimensions
from archsearch.records import tables

MAX_WIDTH = 120
_DECLARATION = re.compile(r"^(choice|int_range|uniform|log_uniform)\(")


def describe_architecture(point, transfer=None):
    """The architecture of a point in words.

    Args:
        point: a planned point (`Architecture.point`: `stages` resolved to a number).
        transfer: a transferred run's provenance (run.json's `transfer`): the
            network is then its source's base, trained as the point's
            `transfer` says, and a new head.

    Returns:
        A string such as `"vgg, width 16, 3 stages x 2 convs, max-pool, gap head, R=32"`.

    Example:

    >>> describe_architecture({"family": "resnet", "width": 32, "stages": 2, "blocks_per_stage": 2,
    ...     "downsample": "strided", "head": "mlp", "resolution": 32, "bottleneck": True})
    'resnet, width 32, 2 stages x 2 bottleneck blocks, strided, mlp head, R=32'
    >>> describe_architecture({"transfer": "two_phase", "head": "gap"}, {"base": "MobileNetV2"})
    'MobileNetV2 base (two_phase), gap head'
    """
    if transfer:
        return f"{transfer['base']} base ({point['transfer']}), {_head_words(point)}"
    unit = "conv" if point["family"] == "vgg" else ("bottleneck block" if point.get("bottleneck") else "block")
    blocks = point["blocks_per_stage"]
    if isinstance(blocks, tuple):
        stages = f"{'-'.join(map(str, blocks))} {unit}s"
    else:
        stages = f"{point['stages']} stage{'s' * (point['stages'] != 1)} x {blocks} {unit}{'s' * (blocks != 1)}"
    downsample = {"maxpool": "max-pool", "strided": "strided", "block": "halving in blocks"}[point["downsample"]]
    if point["downsample"] != "block" and point.get("halve_last") is False:
        downsample += " but after the last stage"
    parts = [point["family"], f"width {point['width']}", stages, downsample]
    if point.get("stem", "none") != "none":
        stem_width = point.get("stem_width", "auto")
        parts.append(f"{point['stem']} stem" + ("" if stem_width in ("auto", point["width"]) else f" of {stem_width}"))
    if point.get("shortcut") == "zero_pad":
        parts.append("zero-pad shortcuts")
    if point.get("batch_norm") is False:
        parts.append("no batch norm")
    if point.get("padding", "same") != "same":
        parts.append(f"{point['padding']} padding")
    parts += [_head_words(point), f"R={point['resolution']}"]
    return ", ".join(parts)


def _head_words(point):
    if point["head"] == "mlp" and point.get("head_layers", 1) > 1:
        return f"mlp head of {point['head_layers']} x {point.get('head_units')}"
    return f"{point['head']} head"


def percent(mean, std=None, sign="%"):
    """Formats a fraction as a percentage, with ` ± std` when a std is known; blank when missing.

    Example:

    >>> percent(0.99583, 0.002), percent(0.5), percent(None)
    ('99.58% ± 0.20', '50.00%', '')
    """
    if mean is None or pd.isna(mean):
        return ""
    return f"{100 * float(mean):.2f}{sign}" + (
        f" ± {100 * float(std):.2f}" if std is not None and not pd.isna(std) else ""
    )


def clock(seconds):
    """Formats seconds as `H:MM:SS`; blank when missing.

    Example:

    >>> clock(3725.4), clock(None)
    ('1:02:05', '')
    """
    if seconds is None or pd.isna(seconds):
        return ""
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def row_name(trial_id):
    """What a leaderboard row is called on screen: the trial's id, or an unranked row's name in words.

    Example:

    >>> row_name("7"), row_name("baseline:least_squares"), row_name("reference:resnet20")
    ('7', 'least squares', 'reference resnet20')
    """
    trial_id = str(trial_id)
    if trial_id.startswith(tables.BASELINE):
        return trial_id.removeprefix(tables.BASELINE).replace("_", " ")
    if trial_id.startswith(tables.REFERENCE):
        return f"reference {trial_id.removeprefix(tables.REFERENCE)}"
    return trial_id


def _known(value):
    return value is not None and not pd.isna(value)


def comparison(winner, reference):
    """How the winner compares with a reference: test accuracy in points, both with their spread, and size.

    Args:
        winner: the rank-1 row of a leaderboard (a dict or a Series).
        reference: a `reference:<preset>` row of the same leaderboard.

    Returns:
        A string such as `"+1.3 points over resnet20 (91.20% ± 0.40 vs 89.90% ± 0.60) with 0.3x its
        parameters"`; figures over one seed have no standard deviation, and say so; a gap no wider
        than the larger standard deviation says that it is within it.

    Example:

    >>> reference = {"trial_id": "reference:resnet20", "test_accuracy": 0.899, "test_accuracy_std": 0.006,
    ...     "params": 270_810}
    >>> comparison({"test_accuracy": 0.912, "test_accuracy_std": 0.004, "params": 81_000}, reference)
    '+1.3 points over resnet20 (91.20% ± 0.40 vs 89.90% ± 0.60) with 0.3x its parameters'
    >>> comparison({"test_accuracy": 0.8966, "test_accuracy_std": None, "params": 102},
    ...     {**reference, "test_accuracy_std": None})
    '0.2 points under resnet20 (89.66% vs 89.90%, one seed each) with 1/2,655 of its parameters'
    >>> comparison({"test_accuracy": 0.9020, "test_accuracy_std": 0.004, "params": 81_000}, reference)
    '+0.3 points over resnet20 (90.20% ± 0.40 vs 89.90% ± 0.60, within one std) with 0.3x its parameters'
    """
    points = 100 * (float(winner["test_accuracy"]) - float(reference["test_accuracy"]))
    if round(points, 1) == 0:
        over = "level with"
    else:
        over = f"+{points:.1f} points over" if points > 0 else f"{-points:.1f} points under"
    figures = " vs ".join(percent(row["test_accuracy"], row["test_accuracy_std"]) for row in (winner, reference))
    spreads = [100 * float(row["test_accuracy_std"]) for row in (winner, reference) if _known(row["test_accuracy_std"])]
    if not spreads:
        figures += ", one seed each"
    elif abs(points) <= max(spreads):
        figures += ", within one std"
    ratio = int(winner["params"]) / int(reference["params"])
    if ratio < 0.1:
        size = f"1/{1 / ratio:,.0f} of its parameters"
    else:
        size = f"{ratio:.2g}x its parameters" if ratio < 10 else f"{ratio:,.0f}x its parameters"
    return f"{over} {str(reference['trial_id']).removeprefix(tables.REFERENCE)} ({figures}) with {size}"


def headline(leaderboard, point, run_dir, export_line, transfer=None):
    """The lines a run ends with: the winner, its test figures, against each reference, the baselines, and where.

    Args:
        leaderboard: the run's leaderboard (rank 1 first, then the unranked rows).
        point: the winner's planned point, for `describe_architecture()`.
        run_dir: the run directory.
        export_line: what the export wrote (`export.export_summary()`).
        transfer: a transferred run's provenance, for `describe_architecture()`.

    Returns:
        A multi-line string; with one seed, the figures carry no `±` and say so.
    """
    first = leaderboard.iloc[0]
    seeds = int(first["seeds"])
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    baselines = tables.baselines(leaderboard)
    lines = [
        f"best: {describe_architecture(point, transfer)} (trial {first['trial_id']})",
        f"  test accuracy {percent(first['test_accuracy'], first['test_accuracy_std'])}, "
        f"BER {percent(first['test_balanced_error_rate'], first['test_balanced_error_rate_std'])} "
        f"({over}), {int(first['params']):,} parameters",
        *(f"  {comparison(first, reference)}" for _, reference in tables.references(leaderboard).iterrows()),
    ]
    if not baselines.empty:
        lines.append(
            "  baselines: "
            + ", ".join(f"{row_name(row.trial_id)} {percent(row.test_accuracy)}" for row in baselines.itertuples())
        )
    lines += [
        f"run: {run_dir} (report.html, leaderboard.csv, trials.csv, run.json)",
        f"export: {export_line}",
    ]
    return "\n".join(lines)


def searched_dimensions(meta, frame):
    """The dimensions a run's space searched: from run.json, else those that vary among the ranked rows."""
    if meta.get("searched") is not None:
        return list(meta["searched"])
    declared = (meta.get("space") or {}).get("dimensions")
    if declared:
        return [name for name, value in declared.items() if isinstance(value, str) and _DECLARATION.match(value)]
    ranked = frame[~frame["baseline"].astype(bool)]  # a reference differs from the trials in unsearched dimensions too
    return [name for name in dimensions.RECIPE + dimensions.TRAIN if name in ranked and ranked[name].nunique() > 1]


def cell(value):
    """Formats a table value: floats to 3 significant digits, blank when missing."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _column_widths(headers, values, budget, floor=5):
    """Column widths: wide enough for every value and, while the budget allows, for each header whole.

    Values are never cut. Over the budget, headers fold at their spaces, the
    widest saving first, down to their longest word; still over, they fold
    within words, down to their values' width (at least `floor`).

    Example:

    >>> _column_widths(["blocks per stage", "learning rate"], [["2"], ["0.00238"]], budget=30)
    [16, 13]
    >>> _column_widths(["blocks per stage", "learning rate"], [["2"], ["0.00238"]], budget=20)
    [6, 13]
    """
    value_widths = [max(map(len, column), default=1) for column in values]
    widths = [max(v, len(h)) for h, v in zip(headers, value_widths)]
    words = [max(v, len(max(h.split(), key=len))) for h, v in zip(headers, value_widths)]
    for narrower in (words, [max(v, min(w, floor)) for v, w in zip(value_widths, words)]):
        for i in sorted(range(len(widths)), key=lambda i: narrower[i] - widths[i]):
            if sum(widths) <= budget:
                return widths
            widths[i] = narrower[i]
    return widths


def _whole_width(columns):
    """Columns a table of these cells takes with no header folded within a word, nor any value."""
    return sum(max([len(max(h.split(), key=len))] + [len(c) for c in cells]) + 2 for h, cells in columns.items())


def unranked_caption(frame):
    """What a leaderboard's unranked rows are, in words; `None` where it has none."""
    kinds = []
    if not tables.references(frame).empty:
        kinds.append("the references (presets fitted to the data, trained as the winners are, over the same seeds)")
    if not tables.baselines(frame).empty:
        kinds.append("the lecture notes' baselines")
    return f"unranked rows: {' and '.join(kinds)}, on the same splits" if kinds else None


def pareto_caption(frame):
    """What a leaderboard's `pareto` column means, in words, naming the cost it counts."""
    return (
        f"front: on the test split's Pareto front of test accuracy against {tables.front_cost(frame)} among the "
        "ranked rows (leaderboard.csv's pareto); it chooses nothing"
    )


def _display_columns(frame, searched):
    """A leaderboard's cells as a person reads them: the rows' names, and each shown column's cells by header."""
    rows = frame.to_dict("records")
    names = [row_name(r["trial_id"]) for r in rows]
    # A reference is named by its preset, not by values of the searched dimensions (leaderboard.csv has them).
    searched_cells = [
        {} if str(r["trial_id"]).startswith(tables.REFERENCE) else {name: r.get(name) for name in searched}
        for r in rows
    ]
    # The notes' baselines are one fit each; runs written before that gave them a standard deviation of 0.
    one_fit = [str(r["trial_id"]).startswith(tables.BASELINE) for r in rows]
    columns = {
        "rank": [cell(row["rank"]) for row in rows],
        **{name.replace("_", " "): [cell(cells.get(name)) for cells in searched_cells] for name in searched},
        "val acc": [percent(row.get("val_accuracy"), sign="") for row in rows],
        "test acc %": [
            percent(row["test_accuracy"], None if fit else row.get("test_accuracy_std"), sign="")
            for row, fit in zip(rows, one_fit)
        ],
        "test BER %": [
            percent(row["test_balanced_error_rate"], None if fit else row.get("test_balanced_error_rate_std"), sign="")
            for row, fit in zip(rows, one_fit)
        ],
        "params": ["" if pd.isna(row["params"]) else f"{int(row['params']):,}" for row in rows],
        # Measured before training (`archsearch.model.cost`); runs made before that have no column.
        **({"latency ms": [cell(row[tables.LATENCY]) for row in rows]} if tables.LATENCY in frame else {}),
        "front": [{True: "yes", False: "no"}.get(mark, "") for mark in tables.on_test_front(frame).tolist()],
    }
    return names, columns


def text_table(
    columns, width=MAX_WIDTH, caption=None, no_wrap=("rank", "trial", "unranked"), left=("trial", "unranked")
):
    """Renders a table of `columns` (header -> cells, strings) in at most `width` columns.

    The columns named in `no_wrap` keep their cells whole on one line; the
    others fold their headers at their spaces, and within a word only where
    the table would not fit otherwise. Those named in `left` are aligned left,
    the others right. The caption follows the table, wrapped at `width`.

    Example:

    >>> print(text_table({"trial": ["04", "least squares"], "test acc %": ["99.58 ± 0.20", "93.61"]}))
    trial            test acc %
    ───────────────────────────
    04             99.58 ± 0.20
    least squares         93.61
    """
    names = list(columns)
    gaps = 2 * len(names)  # each column's right padding and the divider after it (the last's: none)
    fixed = sum(max([len(name)] + [len(c) for c in columns[name]]) for name in names if name in no_wrap)
    folding = [name for name in names if name not in no_wrap]
    widths = dict(zip(folding, _column_widths(folding, [columns[n] for n in folding], width - fixed - gaps)))
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,  # the box's edges are blanks: off, they leave the values their two columns
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for name in names:
        justify = "left" if name in left else "right"
        if name in no_wrap:
            table.add_column(name, justify=justify, no_wrap=True)
        else:
            table.add_column(name, justify=justify, width=widths[name], no_wrap=False, overflow="fold")
    for row in zip(*columns.values()):
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, soft_wrap=False).print(table)
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()).strip("\n")
    return text + ("\n" + textwrap.fill(caption, width) if caption else "")


def text_tables(columns, keys, figures, width=MAX_WIDTH, caption=None, **options):
    """Renders `columns` as one `text_table()`, or as two where one would fold a header within a word.

    Args:
        columns: header -> cells, strings.
        keys: the headers that name a row (e.g. rank and trial), in both tables when there are two.
        figures: the headers of the second table's columns; the others make the first.
        width: the most columns to use.
        caption: printed after the last table.
        **options: `no_wrap` and `left`, as for `text_table()`.
    """
    if _whole_width(columns) <= width:
        return text_table(columns, width, caption, **options)
    first = {name: cells for name, cells in columns.items() if name not in figures}
    second = {name: cells for name, cells in columns.items() if name in keys or name in figures}
    return text_table(first, width, None, **options) + "\n\n" + text_table(second, width, caption, **options)


FIGURES = ("val acc", "test acc %", "test BER %", "params", "latency ms", "front")  # the printed figures' headers


def leaderboard_table(frame, searched, width=None):
    """Renders a leaderboard for a screen: the ranked rows' table, then the unranked rows' (references, baselines).

    The ranked rows show rank, trial, the searched dimensions and the
    figures; where that does not fit `width` with every header's words
    whole, the dimensions and the figures make two tables, each with rank and
    trial. The unranked rows, which have no values of the searched dimensions
    to show, have a table of their names and test figures of their own, so
    that a name (`least squares`, `reference resnet20`) never wraps.
    Accuracy and BER are percentages, mean ± std over the seeds; `latency ms`
    is leaderboard.csv's `latency_ms` (batch 1, per image) where measured; `front`
    (leaderboard.csv's `pareto`) marks the ranked rows on the test split's Pareto front (`tables.on_test_front()`).

    Args:
        frame: the leaderboard DataFrame (as written to leaderboard.csv).
        searched: names of the dimensions to show.
        width: the most columns to use (default: the terminal's, at most 120).

    Returns:
        The tables as text, at most `width` columns wide where the values allow.
    """
    if width is None:
        width = min(shutil.get_terminal_size().columns, MAX_WIDTH) if sys.stdout.isatty() else MAX_WIDTH
    trials, columns = _display_columns(frame, searched)
    ranked = frame["rank"].notna().tolist()
    shown = {"rank": columns.pop("rank"), "trial": trials, **columns}
    board = {name: [c for c, keep in zip(cells, ranked) if keep] for name, cells in shown.items()}
    parts = [text_tables(board, ("rank", "trial"), FIGURES, width, pareto_caption(frame))]
    if not all(ranked):
        others = {"unranked": [t for t, keep in zip(trials, ranked) if not keep]}
        for name in ("test acc %", "test BER %", "params", "latency ms"):
            cells = [c for c, keep in zip(columns.get(name, []), ranked) if not keep]
            if any(cells):  # the baselines have no latency
                others[name] = cells
        parts.append(text_table(others, width, unranked_caption(frame)))
    return "\n\n".join(parts)


def leaderboard_markdown(frame, searched):
    """A leaderboard as a Markdown table: the printed table's columns and cells, blank where a value does not apply.

    Args:
        frame: the leaderboard DataFrame (as written to leaderboard.csv).
        searched: names of the dimensions to show (`searched_dimensions()`).

    Returns:
        The table as text.
    """
    trials, columns = _display_columns(frame, searched)
    names = list(columns)
    shown = pd.DataFrame({names[0]: columns[names[0]], "trial": trials, **{n: columns[n] for n in names[1:]}})
    return shown.to_markdown(
        index=False, disable_numparse=True, colalign=["right", "left"] + ["right"] * len(names[1:])
    )
