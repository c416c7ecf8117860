"""README.md stays true to the code."""

from pathlib import Path

from archsearch.dimensions import DIMENSIONS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_documents_every_dimension_as_defined():
    for d in DIMENSIONS:
        default = repr(d.default) if isinstance(d.default, str) else d.default
        row = f"| `{d.name}` | {d.group} | `{default}` | {d.expected()} | {d.help} |"
        assert row in README, f"README's dimension table is out of date for {d.name}:\n{row}"


def test_readme_gives_the_test_command_that_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "    python -m pytest\n" in README
    assert ci.strip().splitlines()[-1] == "python -m pytest"
