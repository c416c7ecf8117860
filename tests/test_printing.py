"""What a run prints: every line of a real short digits run, the time left, the export line, and the tables."""

import argparse
import contextlib
import io
import re
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from archsearch.cli.commands import leaderboard as leaderboard_command
from archsearch.cli.main import main
from archsearch.files import read_json
from archsearch.output.progress import EpochProgress, RetrainPlan, RetrainProgress
from archsearch.output.summary import MAX_WIDTH, headline, leaderboard_table, row_name, searched_dimensions
from archsearch.pipeline.retrain import Evaluation
from archsearch.records.directory import RunDir

ROOT = Path(__file__).resolve().parents[1]
CLOCK = r"\d:\d\d:\d\d"


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """The offline default space run small from the command line: its run directory and every line it printed."""
    results = tmp_path_factory.mktemp("printed") / "digits"
    small = ["--max-trials", "2", "--epochs", "2", "--top-k", "2", "--seeds", "2", "--retrain-epochs", "2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", "digits", *small, "--results", str(results)]) == 0
    return results, out.getvalue().splitlines()


def _left(line, name):
    """The seconds a line says are left after `name`, as in `search ~0:01:05 left`."""
    hours, minutes, seconds = re.search(rf"{name}~(\d):(\d\d):(\d\d) left", line).groups()
    return 3600 * int(hours) + 60 * int(minutes) + int(seconds)


def test_every_line_of_a_run_fits_120_columns(printed):
    _, lines = printed
    assert max(len(line) for line in lines) <= MAX_WIDTH, max(lines, key=len)


def test_a_trial_line_gives_its_figures_and_the_search_s_and_run_s_time_left(printed):
    _, lines = printed
    trial_lines = [line for line in lines if line.startswith("trial ")]
    pattern = (
        rf"trial ([12])/2 \[0[01]\] val \d\.\d{{4}} \(\d+\.\d s, \d+\.\d compiling\) \| best \d\.\d{{4}} \| "
        rf"{CLOCK} in, ~{CLOCK} left \(run ~{CLOCK}\)"
    )
    assert [re.fullmatch(pattern, line).group(1) for line in trial_lines] == ["1", "2"], trial_lines


def test_the_time_left_counts_down_at_every_epoch(printed):
    _, lines = printed
    first_trial = next(i for i, line in enumerate(lines) if line.startswith("trial 1/2 "))
    epochs = [line for line in lines if line.startswith("  trial 2/2, search ~")]
    assert len(epochs) == 2 and all(re.search(rf"search ~{CLOCK} left, run ~{CLOCK} left: epoch", e) for e in epochs)
    # Read anew at each epoch, not frozen at the trial's start: it has moved on from the last trial line's.
    searched = [_left(lines[first_trial], ", "), *(_left(line, "search ") for line in epochs)]
    assert searched == sorted(searched, reverse=True) and searched[-1] < searched[0]
    retraining = [line for line in lines if line.startswith("  retrain ")]
    assert len(retraining) == 8 and all(re.search(rf"seed \d, retraining ~{CLOCK} left: epoch", e) for e in retraining)
    for first, second in zip(retraining[::2], retraining[1::2]):  # within one training it never rises
        assert _left(second, "retraining ") <= _left(first, "retraining ")


def test_the_retraining_says_what_it_will_train_and_how_long_and_each_training_the_time_left(printed):
    results, lines = printed
    announced = next(line for line in lines if line.startswith("retraining "))
    estimate = re.fullmatch(
        rf"retraining 2 trials x 2 seeds, 2 epochs each: ~({CLOCK}), from the search's trial times", announced
    )
    assert estimate, announced
    ends = [line for line in lines if re.match(r"retrain [12]/2 \[0[01]\] seed [01]: ", line)]
    pattern = rf"retrain [12]/2 \[0[01]\] seed [01]: test \d\.\d{{4}} \(\d+ s\) \| retraining {CLOCK} in, ~{CLOCK} left"
    assert len(ends) == 4 and all(re.fullmatch(pattern, line) for line in ends), ends
    assert _left(ends[-1], ", ") == 0
    # The estimate from the trials' times is of the right size (this machine is shared: within a factor of 4).
    hours, minutes, seconds = map(int, estimate.group(1).split(":"))
    spent = read_json(results / "run.json")["retrain_seconds"]
    assert spent / 4 <= 3600 * hours + 60 * minutes + seconds <= spent * 4


def test_the_export_lines_name_the_figure_checked_seed_0_s_as_its_retraining_line_printed_it(printed):
    results, lines = printed
    start = lines.index(f"export: {results / 'best'}")
    files, check = lines[start + 1 : start + 3]
    assert re.fullmatch(r"  model\.keras \([\d.,]+ KiB\), saved_model/ \([\d.,]+ KiB\), .*", files)
    winner = RunDir(results).read_leaderboard().iloc[0]["trial_id"]
    accuracy = read_json(results / "retrain" / f"trial_{winner}_seed0.json")["accuracy"]
    assert check == (
        f"  seed 0's model: reloaded, each file classifies {accuracy:.2%} of the 360 test images right, "
        "as its retraining measured"
    )
    assert any(line.startswith(f"retrain 1/2 [{winner}] seed 0: test {accuracy:.4f} ") for line in lines)


def test_the_headline_gives_mean_and_std_over_the_seeds(printed):
    _, lines = printed
    assert any(re.search(r"\(mean ± std over 2 seeds\), [\d,]+ parameters$", line) for line in lines)


def test_with_one_seed_the_headline_shows_no_mean_and_std():
    board = pd.DataFrame(
        [
            {
                "trial_id": "04",
                "rank": 1,
                "test_accuracy": 0.9958,
                "test_accuracy_std": None,
                "test_balanced_error_rate": 0.0042,
                "test_balanced_error_rate_std": None,
                "params": 28_938,
                "seeds": 1,
                "baseline": False,
            }
        ]
    )
    point = {"family": "resnet", "width": 32, "stages": 1, "blocks_per_stage": 2, "downsample": "maxpool"}
    text = headline(board, {**point, "head": "gap", "resolution": 8}, "results/digits/x", "results/digits/x/best")
    assert "  test accuracy 99.58%, BER 0.42% (one seed), 28,938 parameters" in text.splitlines()
    assert "±" not in text


@pytest.mark.parametrize("width", [100, 120])
def test_the_printed_leaderboard_keeps_every_name_whole(printed, width):
    results, lines = printed
    frame = RunDir(results).read_leaderboard()
    table = leaderboard_table(frame, searched_dimensions(RunDir(results).read_run(), frame), width=width)
    assert max(len(line) for line in table.splitlines()) <= width
    rows = table.splitlines()
    for trial_id in frame["trial_id"]:
        name = row_name(trial_id)
        assert any(re.match(rf"\s*(\d+\s+)?{re.escape(name)}(\s|$)", row) for row in rows), name
    for header in ("resolution", "family", "width", "blocks", "learning", "acc", "params", "latency", "front"):
        assert re.search(rf"(^|\s){header}(\s|$)", table, re.M), header  # no header folds within a word
    if width == MAX_WIDTH:
        assert "\n".join(rows[:8]) in "\n".join(lines)  # what the run printed


def test_leaderboard_markdown_shows_what_the_space_searched_and_csv_is_the_file(printed, capsys):
    results, _ = printed
    assert main(["leaderboard", str(results), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out.splitlines()
    headers = [cell.strip() for cell in markdown[0].strip("|").split("|")]
    assert headers == [
        "rank",
        "trial",
        "resolution",
        "family",
        "width",
        "blocks per stage",
        "learning rate",
        "val acc",
        "test acc %",
        "test BER %",
        "params",
        "latency ms",
        "front",
    ]
    assert "<NA>" not in "\n".join(markdown) and "nan" not in "\n".join(markdown).lower()
    assert any("| least squares " in line for line in markdown) and max(map(len, markdown)) < 200
    assert main(["leaderboard", str(results), "--format", "csv"]) == 0
    assert capsys.readouterr().out == (results / "leaderboard.csv").read_text()


def test_every_leaderboard_option_has_help():
    commands = argparse.ArgumentParser().add_subparsers()
    leaderboard_command.add_parser(commands)
    actions = commands.choices["leaderboard"]._actions
    assert all(action.help for action in actions), [action.dest for action in actions if not action.help]


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_retraining_estimate_starts_from_the_trials_and_follows_the_measured_times():
    plan = RetrainPlan(top_k=2, seeds=2, references=("resnet20",), epochs=16, images_ratio=1.25)
    trials = pd.DataFrame(
        {"trial_id": ["7", "3"], "seconds": [7.0, 11.0], "compile_seconds": [3.0, 3.0], "epochs": [8, 8]}
    )
    lines, timer = [], _Clock()
    progress = RetrainProgress(plan, trials, lines.append, timer=timer)
    # 3 + 4 x 16/8 x 1.25 = 13 s and 3 + 8 x 2.5 = 23 s per training; the reference at their mean, 18 s.
    assert lines == [
        "retraining 2 trials, then resnet20 x 2 seeds, 16 epochs each: ~0:01:48, from the search's trial times"
    ]
    progress.begin("retrain 1/2 [7] seed 0")
    progress.training_began()
    timer.now = 5.0
    assert progress.label() == "retrain 1/2 [7] seed 0, retraining ~0:01:43 left"  # counts down within a training
    timer.now = 26.0  # twice its estimate
    progress.end(Evaluation(accuracy=0.9, balanced_error_rate=0.1, recall=[0.9], seconds=25.0))
    # Trial 7's second seed as its first took, the others at twice their estimates: 26 + 2 x (2 x 23 + 2 x 18).
    assert lines[-1] == "retrain 1/2 [7] seed 0: test 0.9000 (25 s) | retraining 0:00:26 in, ~0:03:10 left"
    progress.begin("retrain 1/2 [7] seed 1")  # resumed from its saved result: no training, nothing measured
    progress.end(Evaluation(accuracy=0.8, balanced_error_rate=0.2, recall=[0.8], seconds=24.0))
    assert lines[-1] == "retrain 1/2 [7] seed 1: test 0.8000 (24 s, resumed) | retraining 0:00:26 in, ~0:02:44 left"


def test_a_long_progress_line_goes_on_over_indented_lines():
    from archsearch.output.progress import fit_line

    line = "trial 3/8 [02] infeasible: " + "max_memory=512MiB: a training step needs an estimated 2.1 GiB " * 3
    folded = fit_line(line).splitlines()
    assert len(folded) > 1 and all(len(part) <= MAX_WIDTH for part in folded)
    assert all(part.startswith("    ") for part in folded[1:]) and " ".join(p.strip() for p in folded) == line.strip()


class _Ticking:
    """A progress source whose label changes every time it is read."""

    def __init__(self):
        self.reads = 0

    def label(self):
        self.reads += 1
        return f"read {self.reads}"


class _Descriptions(keras.callbacks.Callback):
    """Records the bar's description at each epoch's start, after `EpochProgress` updated it."""

    def __init__(self, progress):
        super().__init__()
        self.progress, self.seen = progress, []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(self.progress.bar.tasks[0].description)


def test_the_terminal_bar_s_label_is_read_anew_at_every_epoch(tty_stream):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    progress = EpochProgress(_Ticking(), tty_stream)
    descriptions = _Descriptions(progress)
    model.fit(np.zeros((8, 2)), np.zeros(8), batch_size=4, epochs=3, verbose=0, callbacks=[progress, descriptions])
    assert descriptions.seen == ["read 2", "read 3", "read 4"]  # read 1: when the bar was made
