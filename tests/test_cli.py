"""The command line's own switches."""

import subprocess
import sys


def test_debug_turns_keras_tuners_tracebacks_on_for_the_whole_command(tmp_path):
    # A fresh process: archsearch.search.tuners must not yet be imported, as in a real `archsearch --debug run`.
    script = (
        "import sys\n"
        "from archsearch.cli.main import main\n"
        "try:\n"
        f"    main(['--debug', 'describe', {str(tmp_path / 'missing.py')!r}])\n"
        "except Exception:\n"
        "    pass\n"
        "import archsearch.search.tuners, keras_tuner.src.config\n"
        "print(keras_tuner.src.config.DEBUG)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "True"


def test_a_reader_that_goes_away_gets_no_traceback():
    process = subprocess.Popen(
        [sys.executable, "-m", "archsearch", "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # The reader leaves before the command has written a line (it takes a second to start): all of
    # its output would otherwise fit in the pipe's buffer, and the command could end before it noticed.
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
