"""One module per command: `add_parser(commands)` declares its options, `handle(args)` runs it."""

RUN_HELP = "a run directory, or a space's results folder (its most recent complete run)"

#: What a command's SPACE may be (`archsearch.recipe.bundled.space_file()` says which file it means).
SPACE_HELP = "a space file (my_space.py), or a bundled space's name (digits; `archsearch spaces` lists them)"

#: What `--data-dir` takes, as `archsearch.data.load` reads it.
DATA_DIR_HELP = (
    "local copy of the data, used instead of the space's source (no download): an image folder "
    "<root>/<split>/<class>/<image> (or the folder holding it), a .tar.gz / .zip / .tar of one, or a .npz "
    "(default: $ARCHSEARCH_DATA_DIR)"
)
