"""The benchmark scripts keep working: a tiny ResNet-9 run without the PyTorch peer, and a search summary."""

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archsearch.pipeline.runner import apply_overrides, run
from archsearch.recipe.architecture import plan

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import training_recipe  # noqa: E402
import transfer  # noqa: E402

import memory_estimate  # noqa: E402
import search_summary  # noqa: E402
import trace_summary  # noqa: E402


def test_resnet9_benchmark_runs_both_keras_paths_in_rotating_order(data_cifar_archive, tmp_path):
    out = tmp_path / "resnet9.csv"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "resnet9.py"),
        "--data-dir",
        str(data_cifar_archive),
        "--limit",
        "10",
        "--test-limit",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--repeats",
        "2",
        "--no-peer",
        "--out",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = pd.read_csv(out)
    assert list(rows["system"]) == ["archsearch", "keras", "keras", "archsearch"]
    assert (rows["params"] == 4_872_330).all() and (rows["images"] == 88).all()  # 90 train images, full batches of 8
    assert (rows["images_per_second"] > 0).all() and rows["seconds_to_target"].isna().all()
    assert "overhead ratio archsearch / bare keras: median" in result.stdout


def test_memory_estimate_benchmark_measures_a_toy_point_in_its_own_process(tmp_path):
    out = tmp_path / "memory.csv"
    command = [sys.executable, str(ROOT / "benchmarks" / "memory_estimate.py"), "--points", "toy", "--out", str(out)]
    result = subprocess.run([*command, "--batch-sizes", "8", "32", "--steps", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = pd.read_csv(out)
    assert list(rows.columns) == memory_estimate.COLUMNS and list(rows["batch_size"]) == [8, 32]
    point, shape, classes = memory_estimate.TOY["toy"]
    for _, row in rows.iterrows():
        planned = plan({**point, "batch_size": int(row["batch_size"])}, shape, classes)
        assert row["estimate_bytes"] == planned.memory_estimate() and row["params"] == planned.params
        assert row["measured_bytes"] > 4 * planned.params  # the weights, and whatever the steps took besides
        assert row["relative_error"] == round(
            (row["estimate_bytes"] - row["measured_bytes"]) / row["measured_bytes"], 3
        )
    assert "toy: per image of batch, estimate" in result.stdout


def test_search_summary_of_a_finished_run(digits_npz, tmp_path, tiny_space):
    results = tmp_path / "tiny"
    run(apply_overrides(tiny_space(digits_npz), retrain_epochs=3, seeds=2), results, log=lambda line: None)
    figures = search_summary.summarize(results, target=0.0)
    trials = pd.read_csv(results / "trials.csv")
    meta = json.loads((results / "run.json").read_text())
    assert figures["trials_trained"] == 3 and figures["search_seconds"] == meta["search_seconds"] > 0
    assert figures["trials_per_hour"] == round(3 * 3600 / meta["search_seconds"], 1)
    assert figures["compile_share"] == round(trials["compile_seconds"].sum() / trials["seconds"].sum(), 3)
    assert figures["achieved_tflops"] > 0 and figures["fraction_of_bf16_peak"] is None  # a CPU has no bf16 peak here
    assert figures["best_val_accuracy"] == round(trials["val_accuracy"].max(), 4)
    assert search_summary.peak_tflops_of("gpu:0 NVIDIA H100 80GB HBM3") == 989.0

    # The rank-1 architecture's retrainings, compilation left out: all epochs less the first one's excess.
    first = pd.read_csv(results / "leaderboard.csv", dtype={"trial_id": str}).iloc[0]
    history = pd.read_csv(results / "history.csv", dtype={"trial_id": str})
    seeds = history[(history["trial_id"] == first["trial_id"]) & (history["phase"] == "retrain")].groupby("seed")[
        "seconds"
    ]
    expected = [round(s.sum() - max(0.0, s.iloc[0] - s.iloc[1:].median()), 2) for _, s in seeds]
    assert len(expected) == 2 and figures["rank1_train_seconds_without_compile"] == expected
    # A mean of rounded seconds, rounded.
    assert figures["rank1_seconds_to_0"] == pytest.approx(sum(expected) / 2, abs=0.0051)
    assert search_summary.summarize(results, target=1.01)["rank1_seconds_to_1.01"] is None  # never reached


def test_trace_summary_finds_a_streams_busy_time_idle_gaps_and_costliest_ops(tmp_path):
    # A GPU-shaped trace: one compute stream with two fusions, a 400 us wait for the host, then a convolution.
    def op(name, ts, dur):
        return {"ph": "X", "pid": 1, "tid": 7, "name": name, "ts": ts, "dur": dur}

    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #13(Compute)"}},
        op("fusion.12", 0, 100),
        op("fusion.7", 100, 50),
        op("convolution_3", 550, 450),
        {"ph": "X", "pid": 2, "tid": 1, "name": "train_step", "ts": 0, "dur": 1000},
    ]
    folder = tmp_path / "plugins" / "profile" / "run"
    folder.mkdir(parents=True)
    with gzip.open(folder / "host.trace.json.gz", "wt") as file:
        json.dump({"traceEvents": events}, file)

    frame = trace_summary.events_of(trace_summary.find_trace(tmp_path))
    assert trace_summary.busy_and_gaps(frame["start"][frame["tid"] == 7], frame["end"][frame["tid"] == 7], gap=100) == (
        600.0,
        [400.0],
    )
    text = trace_summary.summarize(frame, gap=100)
    assert "traced window: 1.0 ms, 4 events" in text
    stream = next(line for line in text.splitlines() if "Stream #13(Compute)" in line and "/device:GPU:0" in line)
    assert stream.split()[-5:] == ["3", "0.600", "0.600", "1", "0.400"]  # events, busy ms, share, gaps, gap ms
    assert [trace_summary.op_kind(n) for n in ("fusion.12", "convolution_3", "copy")] == [
        "fusion",
        "convolution",
        "copy",
    ]


def test_training_recipe_scores_a_tta_row_from_the_same_models_and_summarizes_over_seeds(monkeypatch):
    from types import SimpleNamespace

    from archsearch.recipe import dimensions

    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)  # noqa: E731
    dataset = SimpleNamespace(
        x_train=images(16),
        y_train=np.arange(16) % 2,
        x_val=images(6),
        y_val=np.arange(6) % 2,
        x_test=images(6),
        y_test=np.arange(6) % 2,
        shape=(8, 8, 1),
        num_classes=2,
    )
    scored, scores = [], training_recipe.scores
    monkeypatch.setattr(
        training_recipe, "scores", lambda model, p, data: scored.append((id(model), p["tta"])) or scores(model, p, data)
    )
    point = {**dimensions.defaults(), "width": 4, "stages": 1, "blocks_per_stage": 1, "batch_size": 8}
    rows = [
        row
        for seed in (0, 1)
        for name in ("current", "label_smoothing")
        for row in training_recipe.run_seed(name, *training_recipe.TRAINED[name], point, dataset, seed, epochs=1)
    ]
    assert [row["row"] for row in rows[:3]] == ["current", "tta", "label_smoothing"]
    assert [row["tta"] for row in rows[:3]] == [False, True, False] and rows[2]["label_smoothing"] == 0.2
    # current and tta: one trained model, scored without and with the mirror; label_smoothing: a model of its own
    assert scored[0][0] == scored[1][0] != scored[2][0] and [tta for _, tta in scored[:3]] == [False, True, False]
    summary = training_recipe.summarize(pd.DataFrame(rows), ["current", "label_smoothing", "tta"])
    assert list(summary["row"]) == ["current", "label_smoothing", "tta"] and set(summary["seeds"]) == {2}
    for name in ("current", "tta"):
        accuracy = [row["test_accuracy"] for row in rows if row["row"] == name]
        figures = summary[summary["row"] == name].iloc[0]
        assert figures["test_accuracy"] == pytest.approx(np.mean(accuracy))
        assert figures["test_accuracy_std"] == pytest.approx(np.std(accuracy, ddof=1), nan_ok=True)
    change = summary.set_index("row")["test_accuracy_change"]
    assert change["tta"] == pytest.approx(summary.loc[2, "test_accuracy"] - summary.loc[0, "test_accuracy"])


def test_the_committed_training_recipe_table_is_its_seeds_summarized():
    seeds = pd.read_csv(ROOT / "results" / "bench" / "training_recipe_seeds.csv")
    committed = pd.read_csv(ROOT / "results" / "bench" / "training_recipe.csv")
    assert set(seeds.groupby("row").size()) == {3}
    summary = training_recipe.summarize(seeds, list(committed["row"]))
    pd.testing.assert_frame_equal(
        summary[committed.columns].round(4), committed.round(4), check_dtype=False, check_exact=False
    )


def test_the_committed_transfer_table_is_its_seeds_summarized_with_each_choice_made_on_validation():
    seeds = pd.read_csv(ROOT / "results" / "bench" / "transfer_seeds.csv")
    committed = pd.read_csv(ROOT / "results" / "bench" / "transfer.csv")
    summary = transfer.summarize(seeds)
    pd.testing.assert_frame_equal(summary, committed, check_dtype=False, check_exact=False, atol=1e-4)
    required = ["images_per_class", "method", "test_accuracy", "test_accuracy_std", "seeds", "train_seconds"]
    assert list(committed.columns[: len(required)]) == required
    # Each trained method's learning rate is the one its validation split scored best (the smaller on a tie).
    selections = seeds[seeds["stage"] == "select"]
    for (size, method), tried in selections.groupby(["images_per_class", "method"]):
        best = tried.sort_values(["val_accuracy", "learning_rate"], ascending=[False, True]).iloc[0]
        chosen = committed[(committed["images_per_class"] == size) & (committed["method"] == method)].iloc[0]
        assert chosen["learning_rate"] == best["learning_rate"] and chosen["seeds"] == 2
    assert set(committed["images_per_class"]) == {25, 100, 400} and len(committed) == 3 * len(transfer.METHODS)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_the_memory_sampler_counts_every_process_under_the_run(tmp_path):
    import larger_than_memory

    child = subprocess.Popen(
        [sys.executable, "-c", "import numpy, time; a = numpy.ones(64 << 20, 'uint8'); time.sleep(30)"]
    )
    try:
        sampler = larger_than_memory.Sampler(os.getpid(), interval=0.05)
        sampler.start()
        deadline = time.monotonic() + 20
        while sampler.peak["processes"] < 2 or sampler.peak["anon"] < 64 << 20:
            assert time.monotonic() < deadline, sampler.peak
            time.sleep(0.05)
        sampler.stopped.set()
        sampler.join()
    finally:
        child.kill()
        child.wait()
    assert sampler.peak["rss"] >= sampler.peak["anon"] + sampler.peak["file"] - (1 << 20)
    larger_than_memory.make_folder(tmp_path / "images", images=2, size=16)
    assert len(list((tmp_path / "images" / "train").glob("*/*.jpg"))) == 20
    assert len(list((tmp_path / "images" / "test").glob("*/*.jpg"))) == 10
