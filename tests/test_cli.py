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


def _arguments_without_help():
    """Every argument of every subcommand whose help is empty, as `command argument`."""
    import argparse

    from archsearch.cli.main import _parser

    (subcommands,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in subcommands.choices.items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]


def test_every_argument_of_every_subcommand_says_what_it_does():
    missing = _arguments_without_help()
    assert not missing, f"arguments whose --help says nothing: {', '.join(missing)}"


def test_init_writes_a_commented_copy_of_a_bundled_space_under_its_new_name(tmp_path, monkeypatch, capsys):
    from archsearch.cli.main import main
    from archsearch.recipe.space import load_space

    monkeypatch.chdir(tmp_path)
    assert main(["init", "mine"]) == 0
    out = capsys.readouterr().out
    assert "wrote mine.py" in out and "archsearch run mine.py" in out
    written, bundled = load_space("mine.py"), load_space("digits")
    assert written.name == "mine" and written.description == bundled.description
    assert written.to_dict() == {**bundled.to_dict(), "name": "mine"}  # the same space, renamed
    assert "# Written by `archsearch init mine --from digits`" in (tmp_path / "mine.py").read_text()

    assert main(["init", "truck", "--from", "cifar_car_truck"]) == 0
    assert load_space("truck.py").retrain.references == ("resnet20",)


def test_init_never_writes_over_a_file_nor_takes_a_name_that_cannot_name_a_folder(tmp_path, monkeypatch, capsys):
    from archsearch.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text("# mine\n")
    assert main(["init", "mine"]) == 2
    assert "mine.py exists already" in capsys.readouterr().err
    assert (tmp_path / "mine.py").read_text() == "# mine\n"
    assert main(["init", "my space"]) == 2
    assert main(["init", "other", "--from", "nosuch"]) == 2
    assert "nosuch: no such space file or bundled space" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.py"]


def test_spaces_lists_each_bundled_space_with_the_first_line_of_its_docstring(capsys):
    import json

    from archsearch.cli.main import main
    from archsearch.recipe.bundled import bundled_spaces

    assert main(["spaces", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == list(bundled_spaces())
    digits = next(s for s in listed if s["name"] == "digits")
    assert digits["question"] == "The offline default: which small VGG or ResNet reads 8x8 handwritten digits best?"
    assert digits["file"] == str(bundled_spaces()["digits"])
    assert main(["spaces"]) == 0
    table = capsys.readouterr().out
    assert all(len(line) <= 120 for line in table.splitlines()) and "archsearch run NAME" in table
