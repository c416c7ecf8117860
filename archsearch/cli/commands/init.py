"""`archsearch init NAME [--from SPACE]`: writes NAME.py here, a space file to start from."""

import ast
from pathlib import Path

from archsearch.errors import ArchsearchError, SpaceError
from archsearch.recipe.bundled import is_space_name, space_file

#: What `init` puts after the copied docstring (which stays first: it is the space's description).
HEADER = """
# Written by `archsearch init {name} --from {source}`: a copy of that space, named {name}.
# The docstring's first line above is the question this space asks; `describe` and report.html show it.
# Each dimension below is a fixed value or a declaration (choice, int_range, uniform, log_uniform);
# the ones left out take their defaults (README, "The dimensions"). Then:
#   archsearch describe {file}    # the space and sample architectures, without training
#   archsearch run {file}         # search, retrain, test, export; results in results/{name}/
"""


def add_parser(commands):
    p = commands.add_parser("init", help="write NAME.py here: a commented space file to start from")
    p.add_argument("name", help="the new space's name (letters, digits, - and _): its file and its results folder")
    p.add_argument(
        "--from",
        dest="source",
        default="digits",
        metavar="SPACE",
        help="the space to copy: a bundled space's name (`archsearch spaces`) or a space file (default: digits)",
    )
    p.set_defaults(handler=handle)


def renamed(text, name, where):
    """Returns a space file's text with its `Space(name=...)` set to `name`, and nothing else changed.

    Args:
        text: the space file's source.
        name: the new name.
        where: the file, for the error.

    Returns:
        The new source.

    Raises:
        SpaceError: where the file has no `Space(name="...")` call to rename.

    Example:

    >>> renamed('space = Space(name="digits", data=Data("digits"))', "mine", "s.py")
    'space = Space(name="mine", data=Data("digits"))'
    >>> renamed('space = archsearch.Space(name="digits")', "mine", "s.py")
    'space = archsearch.Space(name="mine")'
    """
    for node in ast.walk(ast.parse(text)):
        # `Space(...)` after `from archsearch import Space`, or `archsearch.Space(...)` after `import archsearch`.
        called = getattr(node, "func", None)
        if isinstance(node, ast.Call) and "Space" in (getattr(called, "id", None), getattr(called, "attr", None)):
            value = next((k.value for k in node.keywords if k.arg == "name"), None)
            if isinstance(value, ast.Constant) and value.lineno == value.end_lineno:
                lines = text.splitlines(keepends=True)
                line = lines[value.lineno - 1]
                # ast's columns count UTF-8 bytes; the line is sliced as bytes to match them.
                encoded = line.encode()
                new = encoded[: value.col_offset] + f'"{name}"'.encode() + encoded[value.end_col_offset :]
                lines[value.lineno - 1] = new.decode()
                return "".join(lines)
    raise SpaceError(f'{where}: found no Space(name="...") to rename')


def with_header(text, header):
    """Returns `text` with `header` placed right after its docstring (or first, without one)."""
    module = ast.parse(text)
    if ast.get_docstring(module) is None:
        return header.lstrip("\n") + text
    lines = text.splitlines(keepends=True)
    end = module.body[0].end_lineno
    return "".join(lines[:end]) + header + "".join(lines[end:])


def handle(args):
    name = args.name.removesuffix(".py")
    if not is_space_name(name):
        raise ArchsearchError(
            f"init {args.name}: a space's name takes letters, digits, '-' and '_' (it names its results folder)"
        )
    source = space_file(args.source)
    target = Path(f"{name}.py")
    text = renamed(source.read_text(encoding="utf-8"), name, source)
    text = with_header(text, HEADER.format(name=name, source=args.source, file=target))
    try:
        with open(target, "x", encoding="utf-8") as file:  # "x": never over a file that is there
            file.write(text)
    except FileExistsError:
        raise ArchsearchError(f"{target} exists already: choose another NAME, or move that file away") from None
    print(f"wrote {target}: a copy of {args.source} ({source}), named {name}")
    print(f"run it with: archsearch run {target}    (or first, without training: archsearch describe {target})")
