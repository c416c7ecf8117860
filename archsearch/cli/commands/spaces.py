"""`archsearch spaces`: the space files that ship with archsearch, each with the question it asks."""

import ast
import csv
import json
import shutil
import sys
import textwrap
from pathlib import Path

from archsearch.recipe.bundled import bundled_spaces

#: The most columns the table takes, as the leaderboard's. A copy of `archsearch.output.summary.MAX_WIDTH`, not an
#: import: that module loads pandas and rich, and `spaces` is to answer at once (a test keeps Keras out of it).
MAX_WIDTH = 120


def add_parser(commands):
    p = commands.add_parser("spaces", help="list the bundled spaces (`archsearch run NAME` runs one)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default): each name and question, for a person; csv or json: with each file, for a program",
    )
    p.set_defaults(handler=handle)


def question(path):
    """Returns the first line of a space file's docstring: the question the space asks.

    The file is parsed, not run, so listing the spaces loads neither Keras
    nor the data.

    Args:
        path: the space file.

    Returns:
        The docstring's first line, or `""` where the file has none.
    """
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return (docstring or "").strip().split("\n")[0]


def rows():
    """Returns one dict per bundled space: `name`, `question` and `file` (its path), by name."""
    return [{"name": name, "question": question(path), "file": str(path)} for name, path in bundled_spaces().items()]


def table(spaces, width=MAX_WIDTH):
    """Renders the spaces for a screen: each name, then its question wrapped to `width` columns.

    Args:
        spaces: from `rows()`.
        width: the most columns to use.

    Returns:
        The table as text, with a last line that says where the files are and how to use them.
    """
    indent = max(len(space["name"]) for space in spaces) + 2
    lines = []
    for space in spaces:
        wrapped = textwrap.wrap(
            space["question"], width=max(width - indent, 40), break_on_hyphens=False, break_long_words=False
        )
        lines.append(space["name"].ljust(indent) + wrapped[0])
        lines += [" " * indent + line for line in wrapped[1:]]
    folder = Path(spaces[0]["file"]).parent
    lines += [
        "",
        f"files: {folder}/NAME.py",
        "run one with `archsearch run NAME`; start your own from one with `archsearch init MYNAME --from NAME`",
    ]
    return "\n".join(lines)


def handle(args):
    spaces = rows()
    if args.format == "json":
        print(json.dumps(spaces, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=("name", "question", "file"), lineterminator="\n")
        writer.writeheader()
        writer.writerows(spaces)
    else:
        width = min(shutil.get_terminal_size().columns, MAX_WIDTH) if sys.stdout.isatty() else MAX_WIDTH
        print(table(spaces, width))
