"""Imports: commands import only what they need (reading ones no Keras, Keras Tuner or TensorFlow; describe and data
no TensorFlow), and packages import only the packages below them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RUN = next((ROOT / "results" / "digits").glob("*/leaderboard.csv")).parent
SPACES = ROOT / "archsearch" / "spaces"

PROBE = """
import sys
from archsearch.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("keras", "keras_tuner", "tensorflow", "jax") if m in sys.modules)
print("imported:", ",".join(heavy))
"""


def imported(argv):
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["leaderboard", str(COMMITTED_RUN)], ["runs", str(COMMITTED_RUN.parent)], ["presets"], ["spaces"]],
    ids=["help", "leaderboard", "runs", "presets", "spaces"],
)
def test_reading_commands_import_no_keras_or_tensorflow(argv):
    assert imported(argv) == "imported: "


@pytest.mark.parametrize("command", ["run", "worker", "describe", "data"])
def test_a_space_that_names_nothing_fails_before_keras_or_tensorflow_load(command):
    # Loading Keras takes 5-10 s; a typo in SPACE should not wait for it.
    argv = [command, "nosuch.py", *(["--chief", "127.0.0.1:1"] if command == "worker" else [])]
    assert imported(argv) == "imported: "


@pytest.mark.parametrize("command", ["describe", "data"])
def test_describe_and_data_import_no_tensorflow_nor_keras_for_local_data(command, digits_npz):
    # digits: scikit-learn's; cifar.py names a tensorflow-datasets source, read here from a local copy.
    assert imported([command, str(SPACES / "digits.py")]) == "imported: "
    assert imported([command, str(SPACES / "cifar.py"), "--data-dir", str(digits_npz)]) == "imported: "


def test_packages_import_only_the_packages_below_them():
    """import-linter's layers contract in pyproject.toml, over every import, those inside functions too."""
    lint = Path(sys.executable).with_name("lint-imports")  # import-linter's command, beside this Python
    done = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_module_map_draws_the_contracts_layers_and_every_module():
    tomllib = pytest.importorskip("tomllib")
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    expected = [sorted(name.strip() for name in layer.split("|")) for layer in reversed(layers)]
    document = (ROOT / "docs" / "architecture.md").read_text()
    headings = [line for line in document.splitlines() if line.startswith("## ") and "`archsearch." in line]
    drawn = [sorted(re.findall(r"`(archsearch\.[a-z_]+)`", heading)) for heading in headings]
    assert drawn == expected  # one section per layer, from the foundations up, as the contract has them
    modules = sorted(
        str(p.relative_to(ROOT / "archsearch"))
        for p in (ROOT / "archsearch").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and p.parent != SPACES  # the space files are data
    )
    missing = [module for module in modules if f"`{module}`" not in document]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_writing_a_run_s_files_imports_no_keras_tuner():
    # Atomic writes, the run directory and the leaderboard read and write files only: Keras Tuner is the search's.
    modules = "archsearch.files, archsearch.records.directory, archsearch.records.tables"
    heavy = "('keras', 'keras_tuner', 'tensorflow', 'jax')"
    probe = f"import sys\nimport {modules}\nprint(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
