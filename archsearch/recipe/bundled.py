"""The space files that ship inside the package, and which file a command's SPACE names.

The bundled spaces are package data (`archsearch/spaces/*.py`, read with
`importlib.resources`), not modules: a space file is run by `load_space()`,
never imported. This module imports only the standard library, so that a
command refuses a SPACE that names nothing before it loads anything heavy.
"""

import importlib.resources
from pathlib import Path

from archsearch.errors import SpaceError

#: Where the bundled spaces were before they moved into the package. README's older commands and runs'
#: recorded commands name them so; `search_spaces/NAME.py` still means bundled NAME where no such file exists.
FORMER_FOLDER = "search_spaces"


def bundled_spaces():
    """Returns the space files that ship with archsearch, by name.

    The package is to be installed as files (as pip installs a wheel), not
    run from a zip archive: each space is handed on as a `Path`, which
    `load_space()` reads and records.

    Returns:
        A dict from name (the file's stem, e.g. `"digits"`) to the file's
        `Path`, sorted by name.

    Example:

    >>> bundled_spaces()["digits"].name
    'digits.py'
    """
    folder = importlib.resources.files("archsearch") / "spaces"
    files = sorted(Path(entry) for entry in folder.iterdir() if entry.name.endswith(".py"))
    return {file.stem: file for file in files}


def space_file(space):
    """Returns the space file that a command's SPACE names.

    In this order: an existing file; for a bare name, `NAME.py` in the
    current folder (what `archsearch init NAME` writes); a bundled space's
    name, with or without `.py`; else `search_spaces/NAME.py` names bundled
    NAME (where the bundled spaces were before they moved into the package).

    Args:
        space: a path such as `"my_space.py"`, a name such as `"my_space"`
            (for `my_space.py` here), or a bundled space's name such as `"digits"`.

    Returns:
        The file's `Path`.

    Raises:
        SpaceError: naming SPACE and the bundled spaces, when it is none of these.

    Example:

    >>> space_file("digits") == space_file("search_spaces/digits.py") == bundled_spaces()["digits"]
    True
    """
    path = Path(space)
    if path.is_file():
        return path
    here = Path(f"{space}.py")
    if is_space_name(str(space)) and here.is_file():
        return here
    bundled = bundled_spaces()
    name = path.name.removesuffix(".py")
    if name in bundled and path.parts in ((path.name,), (FORMER_FOLDER, f"{name}.py")):
        return bundled[name]
    raise SpaceError(f"{space}: no such space file or bundled space (bundled: {', '.join(bundled)})")


def is_space_name(name):
    """Whether `name` can name a space: letters, digits, `-` and `_` (it names the space's results folder)."""
    return isinstance(name, str) and bool(name) and name.replace("-", "").replace("_", "").isalnum()
