"""Commands that only read files stay light: no Keras, Keras Tuner or TensorFlow imported."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RUN = next((ROOT / "results" / "digits").glob("*/leaderboard.csv")).parent

PROBE = """
import sys
from archsearch.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("keras", "keras_tuner", "tensorflow", "jax") if m in sys.modules)
print("imported:", ",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["leaderboard", str(COMMITTED_RUN)], ["runs", str(COMMITTED_RUN.parent)]],
                         ids=["help", "leaderboard", "runs"])
def test_reading_commands_import_no_keras_or_tensorflow(argv):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "imported: "
