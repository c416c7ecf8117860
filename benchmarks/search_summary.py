"""Speed figures of a finished (or stopped) `archsearch run`: trials per hour, compile share, achieved FLOP/s.

Reads `trials.csv` and `run.json` of a results directory:

- trials per hour: trials that trained (completed or failed; infeasible
  samples cost no training) per hour of `search_seconds`, the search's wall
  time in run.json (of its last session, when resumed), or of
  `--search-seconds` for a search stopped before it wrote that;
- compile share: the sum of `compile_seconds` over the sum of `seconds`
  (training time) of completed trials, and the median of the per-trial shares;
- achieved TFLOP/s: 3x the planned forward FLOPs per training image, times
  the images trained, over the training seconds, summed over completed
  trials; as a fraction of the GPU's bf16 peak, from `BF16_PEAK_TFLOPS` by
  the device named in run.json, or `--peak-tflops`;
- once retrained, the rank-1 architecture's training seconds per seed with
  compilation left out (the first epoch's time less a typical epoch's, from
  `history.csv`), and their mean as the seconds to `--target` test accuracy
  when its mean over seeds reached it: airbench's convention (a fixed
  schedule, one test evaluation at its end, compilation not counted).

    python benchmarks/search_summary.py results/cifar10
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# Dense bfloat16 peak of the GPU's data sheet (SXM parts), TFLOP/s.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_tflops_of(device):
    """The bf16 peak of the GPU a device description names, or `None` (a CPU, or unknown)."""
    return next((peak for name, peak in BF16_PEAK_TFLOPS.items() if name in (device or "")), None)


def summarize(results, peak_tflops=None, search_seconds=None, target=0.94):
    """Returns the speed figures of the run in `results` as a dict."""
    results = Path(results)
    trials = pd.read_csv(results / "trials.csv")
    meta = json.loads((results / "run.json").read_text())
    search_seconds = meta.get("search_seconds") or search_seconds
    peak_tflops = peak_tflops or peak_tflops_of(meta.get("device"))
    train_images = meta["data"]["counts"]["train"]
    done = trials[trials["status"] == "completed"]
    trained = trials[trials["status"].isin(["completed", "failed"])]
    images = (train_images // done["batch_size"]) * done["batch_size"] * done["epochs"]
    tflops = float((3 * done["flops"] * images).sum() / done["seconds"].sum() / 1e12)
    figures = {
        "results": str(results),
        "device": meta.get("device"),
        "backend": meta.get("backend"),
        "precision": meta.get("precision"),
        "trials_trained": len(trained),
        "trials_completed": len(done),
        "trials_infeasible": int((trials["status"] == "infeasible").sum()),
        "search_seconds": search_seconds,
        "trials_per_hour": round(len(trained) * 3600 / search_seconds, 1) if search_seconds else None,
        "training_share_of_search": round(float(trained["seconds"].sum() / search_seconds), 3)
        if search_seconds
        else None,
        "compile_share": round(float(done["compile_seconds"].sum() / done["seconds"].sum()), 3),
        "compile_share_median": round(float((done["compile_seconds"] / done["seconds"]).median()), 3),
        "achieved_tflops": float(f"{tflops:.3g}"),
        "fraction_of_bf16_peak": round(tflops / peak_tflops, 4) if peak_tflops else None,
        "best_val_accuracy": round(float(done["val_accuracy"].max()), 4),
    }
    board = results / "leaderboard.csv"
    if board.exists():
        ranked = pd.read_csv(board, dtype={"trial_id": str})
        first = ranked[ranked["rank"] == 1].iloc[0]
        figures["rank1_test_accuracy"] = round(float(first["test_accuracy"]), 4)
        figures["rank1_test_accuracy_std"] = round(float(first["test_accuracy_std"]), 4)
        figures["retrain_seconds"] = meta.get("retrain_seconds")
        seconds = training_seconds_without_compile(results / "history.csv", first["trial_id"])
        figures["rank1_train_seconds_without_compile"] = seconds
        figures[f"rank1_seconds_to_{target:g}"] = (
            round(float(np.mean(seconds)), 2) if seconds and first["test_accuracy"] >= target else None
        )
    return figures


def training_seconds_without_compile(history, trial_id):
    """Per retrained seed of a trial: its epochs' seconds, less the first epoch's excess over a typical one."""
    if not history.exists():
        return []
    epochs = pd.read_csv(history, dtype={"trial_id": str})
    retrained = epochs[(epochs["trial_id"] == trial_id) & (epochs["phase"] == "retrain")]
    seconds = []
    for _, seed in retrained.sort_values("epoch").groupby("seed"):
        times = seed["seconds"].to_numpy()
        compile_seconds = max(0.0, times[0] - float(np.median(times[1:]))) if len(times) > 1 else 0.0
        seconds.append(round(float(times.sum() - compile_seconds), 2))
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results directory of `archsearch run`")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak (default: from BF16_PEAK_TFLOPS)")
    parser.add_argument("--search-seconds", type=float, help="the search's wall time, where run.json lacks it")
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy for the rank-1 seconds to target")
    args = parser.parse_args(argv)
    print(json.dumps(summarize(args.results, args.peak_tflops, args.search_seconds, args.target), indent=2))


if __name__ == "__main__":
    sys.exit(main())
