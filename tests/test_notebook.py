"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel, shows no escape codes, and is stored bare."""

import os
import re
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="needs the dev extra: pip install -e '.[dev]'")
nbformat = pytest.importorskip("nbformat", reason="needs the dev extra: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="needs the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
NATIVE_LOG = re.compile(
    r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:|oneDNN custom operations|Could not find cuda drivers"
)
ESCAPE = "\x1b["  # the start of a terminal's control sequences (colours, cursor moves)


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _texts(output):
    """Every text an output shows: a stream's, each rich form's, an error's traceback."""
    if output.output_type == "stream":
        return [output.text]
    if output.output_type == "error":
        return ["\n".join(output.traceback)]
    return [value for value in output.get("data", {}).values() if isinstance(value, str)]


def test_the_stored_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    stored = [(cell.execution_count, cell.outputs) for cell in _code_cells(notebook)]
    assert stored == [(None, [])] * len(stored)


def test_the_notebook_runs_in_a_kernel_and_shows_no_escape_codes(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is this Python (ipykernel's own kernel spec) importing this checkout, in an empty folder,
    # with the tests' private data cache (ARCHSEARCH_CACHE_DIR, set by conftest.py).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error

    cells = _code_cells(notebook)
    errors = [output for cell in cells for output in cell.outputs if output.output_type == "error"]
    assert not errors
    escaped = [
        (index, text[max(0, text.index(ESCAPE) - 80) : text.index(ESCAPE) + 20])
        for index, cell in enumerate(cells)
        for output in cell.outputs
        for text in _texts(output)
        if ESCAPE in text
    ]
    assert not escaped, f"terminal escape codes in the outputs of code cells (index, context): {escaped}"
    native = [  # TensorFlow's C++ start-up lines, kept off descriptor 2 by archsearch.output.native_logs
        line
        for cell in cells
        for output in cell.outputs
        for text in _texts(output)
        for line in text.splitlines()
        if NATIVE_LOG.search(line)
    ]
    assert not native, native
    shown = {key for cell in cells for output in cell.outputs for key in output.get("data", {})}
    assert {"text/html", "image/png"} <= shown  # the leaderboard as a table, the report's figure as an image
    assert (tmp_path / "results" / "digits_quickstart").is_dir()
