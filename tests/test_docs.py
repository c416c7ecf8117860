"""README.md stays true to the code."""

import re
from pathlib import Path

from archsearch.recipe.dimensions import DIMENSIONS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_documents_every_dimension_as_defined_in_table_order():
    rows = ["| dimension | group | default | allowed | what it does |", "|---|---|---|---|---|"]
    for d in DIMENSIONS:
        default = repr(d.default) if isinstance(d.default, str) else d.default
        rows.append(f"| `{d.name}` | {d.group} | `{default}` | {d.expected()} | {d.help} |")
    table = "\n".join(rows) + "\n\n"
    assert table in README, f"README's dimension table is out of date; it should read:\n{table}"


def test_readme_gives_the_test_command_that_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "    python -m pytest\n" in README
    assert ci.strip().splitlines()[-1] == "python -m pytest"


def test_files_a_user_clones_name_only_files_in_the_repository():
    root = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "README.md"):
        for mentioned in re.findall(r"\b([\w./-]+\.md)\b", (root / name).read_text()):
            assert (root / mentioned).exists() or (root / name).parent.joinpath(mentioned).exists(), (
                f"{name} names {mentioned}, which a clone lacks"
            )


def test_readme_gives_every_preset_with_its_trainable_parameters():
    from archsearch.recipe.presets import presets_table

    for row in presets_table():
        assert f"`{row['name']}`" in README and f"{row['trainable_params']:,}" in README, row["name"]


def test_readme_lists_every_bundled_space_with_the_question_it_asks():
    from archsearch.cli.commands.spaces import rows

    for space in rows():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{space['name']}` |")), None)
        assert row, f"README's table of bundled spaces has no row for {space['name']}"
        question = space["question"]
        assert question[0].lower() + question[1:] in row or question in row, (space["name"], row)
