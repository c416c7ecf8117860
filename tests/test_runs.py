"""Run directories and what a person sees: runs never collide, resume picks the right one, quiet and readable output."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from archsearch.cli.main import main
from archsearch.errors import ArchsearchError
from archsearch.output.progress import EpochProgress
from archsearch.output.summary import MAX_WIDTH, describe_architecture, leaderboard_table, searched_dimensions
from archsearch.pipeline.runner import run
from archsearch.recipe.presets import preset
from archsearch.recipe.space import load_space
from archsearch.records.directory import list_runs, read_leaderboard, read_run, run_status, runs_frame

ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow, absl, CUDA, oneDNN and LiteRT print, and Python's warnings of dependencies.
NOISE = re.compile(
    r"absl|oneDNN|cudart|cuda_|cpu_feature_guard|cuInit|^[IWEF]\d{4} |Warning:|TF_CPP|XNNPACK|TensorFlow Lite",
    re.MULTILINE,
)


def checksums(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def two_runs(digits_npz, tmp_path_factory, tiny_space):
    """Two runs of one space with no results directory named, from a fresh working folder."""
    workdir = tmp_path_factory.mktemp("project")
    before = Path.cwd()
    os.chdir(workdir)
    try:
        lines = []
        first = run(tiny_space(digits_npz), log=lines.append)
        first_dir = Path(first.attrs["run"])
        sums = checksums(workdir / first_dir)
        second = run(tiny_space(digits_npz), log=lines.append)
    finally:
        os.chdir(before)
    return workdir, workdir / first_dir, workdir / second.attrs["run"], sums, lines


def test_two_runs_of_a_space_leave_two_complete_runs_and_the_first_unchanged(two_runs):
    workdir, first, second, sums, _ = two_runs
    assert first != second and first.parent == second.parent == workdir / "results" / "tiny"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(_\d+)?", first.name) and first.name < second.name
    assert list_runs(workdir / "results" / "tiny") == [first, second]
    assert [run_status(r) for r in (first, second)] == ["complete", "complete"]
    assert checksums(first) == sums


def test_a_run_ends_with_a_headline_and_a_narrow_leaderboard(two_runs):
    _, _, second, _, lines = two_runs
    text = lines[-1]
    assert re.search(
        r"^best: (vgg|resnet), width \d+, 1 stage x 1 (conv|block), max-pool, gap head, R=8 \(trial \d+\)$", text, re.M
    )
    assert re.search(r"test accuracy \d+\.\d\d%, BER \d+\.\d\d% \(one seed\)", text)
    assert "baselines: least squares" in text and f"run: results/tiny/{second.name}" in text
    assert all(len(line) <= MAX_WIDTH for line in lines[-2].splitlines())


def test_runs_command_lists_each_run_with_its_status_and_figures(two_runs, capsys):
    workdir, first, second, *_ = two_runs
    frame = runs_frame(workdir / "results" / "tiny")
    assert list(frame["run"]) == [first.name, second.name] and set(frame["status"]) == {"complete"}
    assert (
        (frame["trials"] == 3).all()
        and frame["test_accuracy"].between(0, 1).all()
        and (frame["wall_seconds"] > 0).all()
    )
    assert main(["runs", str(workdir / "results" / "tiny")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].split()[:2] == [first.name, "complete"]


def test_leaderboard_of_a_space_folder_uses_its_latest_complete_run_and_says_so(two_runs, capsys):
    workdir, _, second, *_ = two_runs
    assert main(["leaderboard", str(workdir / "results" / "tiny"), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert f"using the most recent complete run, {workdir / 'results' / 'tiny' / second.name}" in captured.err
    assert captured.out == (second / "leaderboard.csv").read_text()


def test_resume_continues_the_most_recent_unfinished_run_or_the_one_named(
    two_runs, digits_npz, tmp_path, monkeypatch, tiny_space
):
    workdir, first, second, *_ = two_runs
    root = tmp_path / "results" / "tiny"
    shutil.copytree(first, root / first.name)
    for name in ("2999-01-01_00-00-00", "2998-01-01_00-00-00"):  # two runs stopped during export
        shutil.copytree(second, root / name, ignore=shutil.ignore_patterns("best", ".lock"))
        meta = read_run(root / name)
        (root / name / "run.json").write_text(json.dumps({**meta, "status": "exporting"}))
    monkeypatch.chdir(tmp_path)

    resumed = run(tiny_space(digits_npz), resume=True, log=lambda line: None)
    assert Path(resumed.attrs["run"]) == Path("results/tiny/2999-01-01_00-00-00")
    assert (
        run_status(root / "2999-01-01_00-00-00") == "complete"
        and (root / "2999-01-01_00-00-00" / "best" / "model.keras").exists()
    )
    assert run_status(root / "2998-01-01_00-00-00") == "exporting"

    run(tiny_space(digits_npz), resume=str(root / "2998-01-01_00-00-00"), log=lambda line: None)
    assert run_status(root / "2998-01-01_00-00-00") == "complete"
    figures = ["rank", "trial_id", "test_accuracy", "test_accuracy_std"]  # the retrainings were read back, not redone
    assert (
        read_leaderboard(root / "2998-01-01_00-00-00")[figures]
        .head(2)
        .equals(read_leaderboard(second)[figures].head(2))
    )

    with pytest.raises(ArchsearchError, match="no unfinished run to resume"):
        run(tiny_space(digits_npz), resume=True, log=lambda line: None)


def test_overwrite_only_applies_to_a_named_run(digits_npz, tmp_path, monkeypatch, tiny_space):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ArchsearchError, match="--overwrite starts one named run over: name it with --results DIR"):
        run(tiny_space(digits_npz), overwrite=True, log=lambda line: None)
    assert not (tmp_path / "results").exists()


def test_a_run_prints_no_startup_noise_whatever_the_log_level(digits_npz, tmp_path):
    space = tmp_path / "space.py"
    space.write_text(
        '"""Tiny."""\nfrom archsearch import *\n'
        f"space = Space(name='quiet', data=Data({str(digits_npz)!r}, validation=0.25), recipe=Recipe(resolution=8, "
        "width=4, stages=1, blocks_per_stage=1),\n"
        "    train=Train(epochs=2, batch_size=64), search=Search(tuner='random', max_trials=1), "
        "retrain=Retrain(top_k=1, epochs=1, seeds=1))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    done = subprocess.run(
        [sys.executable, "-m", "archsearch", "run", str(space)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert not NOISE.search(done.stdout + done.stderr), done.stdout + done.stderr
    assert done.stderr == ""
    assert "  trial 1/1: epoch 2/2, loss " in done.stdout  # epochs are shown as they go, a line each off a terminal
    assert "\nbest: vgg, width 4, 1 stage x 1 conv" in done.stdout


def _fake_leaderboard(space, rows=3):
    """A leaderboard shaped like a run of `space` would write, from sampled points, with a reference."""
    ranked = [
        {
            **point,
            "rank": i + 1,
            "trial_id": f"{i:02d}",
            "baseline": False,
            "val_accuracy": 0.9123,
            "test_accuracy": 0.9345,
            "test_accuracy_std": 0.0123,
            "test_balanced_error_rate": 0.0655,
            "test_balanced_error_rate_std": 0.0123,
            "params": 1_234_567,
        }
        for i, point in enumerate(space.random_points(rows, 0))
    ]
    reference = {
        **preset("resnet110").architecture().point,
        "trial_id": "reference:resnet110",
        "baseline": True,
        "test_accuracy": 0.9345,
        "test_accuracy_std": 0.0123,
        "test_balanced_error_rate": 0.0655,
        "test_balanced_error_rate_std": 0.0123,
        "params": 1_734_001,
    }
    baselines = [
        {
            "trial_id": f"baseline:{name}",
            "baseline": True,
            "test_accuracy": 0.5,
            "test_balanced_error_rate": 0.5,
            "params": 1_027_002,
        }
        for name in ("least_squares", "mlp")
    ]
    return pd.DataFrame(ranked + [reference] + baselines).convert_dtypes()


@pytest.mark.parametrize("space_file", sorted((ROOT / "archsearch" / "spaces").glob("*.py")), ids=lambda p: p.stem)
def test_the_printed_leaderboard_of_every_bundled_space_fits_120_columns(space_file):
    space = load_space(space_file)
    table = leaderboard_table(_fake_leaderboard(space), space.searched(), width=MAX_WIDTH)
    assert max(len(line) for line in table.splitlines()) <= MAX_WIDTH
    assert "1,234,567" in table and "93.45 ± 1.23" in table  # the figures are shown whole, not cut
    assert "1,734,001" in table and "resnet110" in table


@pytest.mark.parametrize(
    "run_dir", sorted(p.parent for p in (ROOT / "results").glob("*/*/leaderboard.csv")), ids=lambda p: p.parent.name
)
def test_the_printed_leaderboard_of_every_committed_run_fits_120_columns(run_dir):
    frame = read_leaderboard(run_dir)
    table = leaderboard_table(frame, searched_dimensions(read_run(run_dir), frame), width=MAX_WIDTH)
    assert max(len(line) for line in table.splitlines()) <= MAX_WIDTH
    assert "…" not in table and "nan" not in table.lower()


def test_the_winner_in_words():
    point = {
        "family": "vgg",
        "width": 16,
        "stages": 3,
        "blocks_per_stage": 2,
        "downsample": "maxpool",
        "head": "mlp",
        "resolution": 32,
        "batch_norm": False,
        "stem": "none",
    }
    assert describe_architecture(point) == "vgg, width 16, 3 stages x 2 convs, max-pool, no batch norm, mlp head, R=32"


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_epoch_progress_is_a_line_per_epoch_in_logs_and_a_bar_on_a_terminal(terminal, tty_stream, capsys):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    stream = tty_stream if terminal else None
    model.fit(
        np.zeros((8, 2)),
        np.zeros(8),
        batch_size=4,
        epochs=3,
        verbose=0,
        callbacks=[EpochProgress("retrain 1/1 seed 0", stream)],
    )
    if terminal:
        assert "retrain 1/1 seed 0" in stream.text and "━" in stream.text  # rich's bar
    else:
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(",")[0] for line in lines] == [f"  retrain 1/1 seed 0: epoch {e}/3" for e in (1, 2, 3)]
        assert all(re.search(r"loss \d\.\d{4}, accuracy \d\.\d{4} \(\d+\.\d s\)$", line) for line in lines)


def test_real_data_tests_skip_with_their_reason_when_the_variable_is_unset(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ARCHSEARCH_TEST_CIFAR"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-q",
            str(ROOT / "tests" / "test_data.py") + "::test_the_shared_cifar10_archive_loads_whole",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "set ARCHSEARCH_TEST_CIFAR=/path/to/cifar10-jpg.tar.gz to run" in done.stdout


def test_resume_on_the_command_line_without_an_unfinished_run_is_a_clear_error(
    digits_npz, tmp_path, monkeypatch, capsys
):
    space = tmp_path / "space.py"
    space.write_text(f"from archsearch import *\nspace = Space(name='none_yet', data=Data({str(digits_npz)!r}))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(space), "--resume"]) == 2
    assert "results/none_yet: no unfinished run to resume" in capsys.readouterr().err
    assert main(["run", str(space), "--resume", str(tmp_path / "elsewhere")]) == 2
    assert f"{tmp_path / 'elsewhere'}: no run to resume here (no run.json)" in capsys.readouterr().err


def test_an_interrupted_run_says_how_to_resume_instead_of_a_traceback(tmp_path):
    space = tmp_path / "space.py"
    space.write_text(
        "from archsearch import *\nspace = Space(name='slow', data=Data('digits'), train=Train(epochs=1000), "
        "search=Search(max_trials=50))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "archsearch", "run", str(space)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not list((tmp_path / "results" / "slow").glob("*/tuner")) and time.time() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # once: one press of Ctrl-C must do
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130
    (stopped,) = (tmp_path / "results" / "slow").iterdir()
    assert (
        err.strip().splitlines()[-1] == "archsearch: interrupted; the run continues with "
        f"`archsearch run {space} --results {stopped.relative_to(tmp_path)} --resume`"
    )
    assert "Traceback" not in err
    recorded = read_run(stopped)
    assert recorded["status"] == "stopped" and recorded["reason"] == "interrupted by Ctrl-C"


def test_overwrite_never_deletes_a_run_that_holds_its_lock(two_runs, digits_npz, tmp_path, tiny_space):
    import filelock

    _, first, *_ = two_runs
    busy = tmp_path / "busy"
    shutil.copytree(first, busy, ignore=shutil.ignore_patterns(".lock"))
    before = checksums(busy)
    with filelock.FileLock(str(busy / ".lock")):  # as a run still going holds it
        with pytest.raises(ArchsearchError, match="in use by another archsearch run"):
            run(tiny_space(digits_npz), busy, overwrite=True, log=lambda line: None)
    assert {path: digest for path, digest in checksums(busy).items() if path.name != ".lock"} == before


def test_a_finished_run_lets_go_of_its_lock(two_runs):
    import filelock

    _, first, *_ = two_runs
    filelock.FileLock(str(first / ".lock")).acquire(timeout=0)  # raises Timeout while anyone holds it


@pytest.mark.parametrize(
    "run_dir", sorted(p.parent for p in (ROOT / "results").glob("*/*/leaderboard.csv")), ids=lambda p: p.parent.name
)
def test_every_committed_architecture_re_plans_to_the_counts_its_run_recorded(run_dir):
    from archsearch.recipe.architecture import plan
    from archsearch.recipe.dimensions import point_of

    meta = read_run(run_dir)
    shape, classes = tuple(meta["data"]["shape"]), len(meta["data"]["classes"])
    trials = pd.read_csv(run_dir / "trials.csv")
    leaderboard = read_leaderboard(run_dir)
    rows = [row for _, row in trials[trials["status"] == "completed"].iterrows()]
    rows += [row for _, row in leaderboard[~leaderboard["baseline"].astype(bool)].iterrows()]
    assert rows
    for row in rows:
        architecture = plan(point_of(row), shape, classes)
        assert (architecture.params, architecture.flops) == (row["params"], row["flops"]), row["trial_id"]


def test_a_space_written_before_the_new_dimensions_keeps_its_fingerprint_so_its_runs_resume():
    from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice

    space = Space(
        name="before",
        data=Data("digits"),
        recipe=Recipe(family=choice("vgg", "resnet"), width=choice(8, 16), stem="conv7"),
        train=Train(epochs=2),
        search=Search(max_trials=3),
        retrain=Retrain(top_k=1, seeds=1),
    )
    assert space.fingerprint() == "bd21ccfaa0592bf6"  # as computed before halve_last, padding, stem_width, ...
