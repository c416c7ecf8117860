"""`archsearch describe`: the space, its size and sampled architectures, without training."""

import argparse
import io
import json
from pathlib import Path

import pandas as pd

from archsearch.cli.commands import describe as describe_command
from archsearch.cli.main import main
from archsearch.model.builder import build_model
from archsearch.recipe.architecture import plan
from archsearch.recipe.dimensions import RECIPE, TRAIN

ROOT = Path(__file__).resolve().parents[1]
CIFAR = str(ROOT / "archsearch" / "spaces" / "cifar.py")


def describe(capsys, *args):
    assert main(["describe", *args]) == 0
    return capsys.readouterr().out


def test_csv_has_every_dimension_and_params_equal_keras_count(capsys):
    frame = pd.read_csv(io.StringIO(describe(capsys, CIFAR, "--sample", "20", "--format", "csv")))
    assert len(frame) == 20
    assert {*RECIPE, *TRAIN, "params", "flops", "infeasible"} <= set(frame.columns)
    for _, row in frame[frame["infeasible"].isna()].head(6).iterrows():
        point = {name: row[name] for name in (*RECIPE, *TRAIN)}
        point = {k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()}
        model = build_model(plan(point, (32, 32, 3), 10))
        assert model.count_params() == row["params"]


def test_json_parses_and_agrees_with_csv(capsys):
    document = json.loads(describe(capsys, CIFAR, "--sample", "5", "--format", "json", "--seed", "4"))
    frame = pd.read_csv(io.StringIO(describe(capsys, CIFAR, "--sample", "5", "--format", "csv", "--seed", "4")))
    assert document["input_shape"] == [32, 32, 3] and document["num_classes"] == 10
    assert document["architectures"] is None  # learning_rate is continuous
    assert [s["params"] for s in document["samples"]] == [None if pd.isna(p) else int(p) for p in frame["params"]]


def test_the_same_seed_gives_the_same_sample(capsys):
    assert describe(capsys, CIFAR, "--format", "csv", "--seed", "3") == describe(
        capsys, CIFAR, "--format", "csv", "--seed", "3"
    )


def test_summary_prints_each_layer_with_shape_and_params(capsys):
    out = describe(capsys, str(ROOT / "archsearch" / "spaces" / "cifar_car_truck.py"), "--sample", "2", "--summary")
    assert "output_shape" in out and "predictions" in out and "stage1" in out


def test_the_size_line_counts_the_architectures_and_names_the_continuous_knobs_apart(capsys):
    out = describe(capsys, CIFAR, "--sample", "1")
    # family 2 x width 3 x stages 3 x blocks 3 x downsample 2 x batch_norm 2; the learning rate is a training knob
    assert "\narchitectures: 216 recipe combinations; training knobs searched: learning_rate (continuous)\n" in out
    fixed = describe(capsys, str(ROOT / "archsearch" / "spaces" / "cifar10_gpu.py"), "--sample", "1")
    assert "architectures: 4 recipe combinations; training knobs searched: learning_rate (continuous)" in fixed


def test_the_table_fits_120_columns_with_the_searched_dimensions_and_says_why_a_sample_is_infeasible(capsys):
    for space in sorted((ROOT / "archsearch" / "spaces").glob("*.py")):
        out = describe(capsys, str(space), "--sample", "20")
        assert max(len(line) for line in out.splitlines()) <= 120, space.name
    out = describe(capsys, CIFAR, "--sample", "5")
    table = out[out.index("5 sampled") :]
    header = " ".join(line for line in table.splitlines()[1:5])
    for name in ("family", "width", "stages", "downsample", "batch", "norm", "learning", "params", "FLOPs"):
        assert name in header.split(), name
    assert "growth" not in table and "head_units" not in table  # fixed: in the declarations above
    assert "feasible" in header and "sample 1: max_params=1000000: the architecture has 2,697,162 parameters" in table


def test_every_option_has_help():
    commands = argparse.ArgumentParser().add_subparsers()
    describe_command.add_parser(commands)
    actions = commands.choices["describe"]._actions
    assert all(action.help for action in actions), [action.dest for action in actions if not action.help]


def test_bad_space_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.py"
    path.write_text("from archsearch import *\nspace = Space(name='b', recipe=Recipe(widht=3))\n")
    assert main(["describe", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.py:2" in err and "widht" in err and "Traceback" not in err


def test_the_presets_a_search_starts_from_are_named(tmp_path, capsys):
    path = tmp_path / "start.py"
    path.write_text(
        "from archsearch import *\n"
        "space = Space(name='s', recipe=Recipe.preset('resnet20', width=choice(16, 32)),\n"
        "    search=Search(start_from=('resnet20',)))\n"
    )
    assert "starts from: resnet20 (the search's first trials, in order)" in describe(capsys, str(path), "--sample", "1")
    assert json.loads(describe(capsys, str(path), "--sample", "1", "--format", "json"))["start_from"] == ["resnet20"]
    assert "starts from" not in describe(capsys, CIFAR, "--sample", "1")


def test_latency_measures_each_planned_sample_and_marks_those_over_the_space_s_budget(capsys, tmp_path):
    digits = ROOT / "archsearch" / "spaces" / "digits.py"
    plain = pd.read_csv(io.StringIO(describe(capsys, str(digits), "--sample", "2", "--format", "csv")))
    assert (plain["memory_estimate_bytes"] > 0).all() and "latency_ms" not in plain
    measured = pd.read_csv(io.StringIO(describe(capsys, str(digits), "--sample", "2", "--format", "csv", "--latency")))
    for column in ("latency_ms", "images_per_second", "model_bytes", "memory_estimate_bytes"):
        assert (measured[column] > 0).all(), column
    tight = tmp_path / "tight.py"
    tight.write_text(digits.read_text().replace("search=Search(", "search=Search(max_model_bytes=1000, ", 1))
    refused = pd.read_csv(io.StringIO(describe(capsys, str(tight), "--sample", "2", "--format", "csv", "--latency")))
    assert refused["infeasible"].str.startswith("max_model_bytes=1000: the model saved as .keras takes").all()


def test_the_memory_budget_and_precision_are_the_search_s(capsys, tmp_path):
    digits = ROOT / "archsearch" / "spaces" / "digits.py"
    full = pd.read_csv(io.StringIO(describe(capsys, str(digits), "--sample", "3", "--format", "csv")))
    half = pd.read_csv(
        io.StringIO(describe(capsys, str(digits), "--sample", "3", "--format", "csv", "--mixed-precision"))
    )
    assert (half["memory_estimate_bytes"] < full["memory_estimate_bytes"]).all()  # 2-byte activations
    tight = tmp_path / "tight.py"
    tight.write_text(digits.read_text().replace("search=Search(", "search=Search(max_memory=1000, ", 1))
    refused = pd.read_csv(io.StringIO(describe(capsys, str(tight), "--sample", "3", "--format", "csv")))
    assert refused["infeasible"].str.startswith("max_memory=1000").all()
