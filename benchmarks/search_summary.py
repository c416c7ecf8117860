"""Speed figures of a finished (or stopped) `archsearch run`: trials per hour, compile share, achieved FLOP/s.

Reads `trials.csv` and `run.json` of a results directory:

- trials per hour: trials that trained (completed or failed; infeasible
  samples cost no training) per hour of `search_seconds`, the search's wall
  time in run.json (of its last session, when resumed);
- compile share: the sum of `compile_seconds` over the sum of `seconds`
  (training time) of completed trials, and the median of the per-trial shares;
- achieved TFLOP/s: 3x the planned forward FLOPs per training image, times
  the images trained, over the training seconds, summed over completed
  trials; against `--peak-tflops` when given.

    python benchmarks/search_summary.py results/cifar10 --peak-tflops 989
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def summarize(results, peak_tflops=None):
    """Returns the speed figures of the run in `results` as a dict."""
    results = Path(results)
    trials = pd.read_csv(results / "trials.csv")
    meta = json.loads((results / "run.json").read_text())
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
        "search_seconds": meta.get("search_seconds"),
        "trials_per_hour": round(len(trained) * 3600 / meta["search_seconds"], 1) if meta.get("search_seconds") else None,
        "training_share_of_search": round(float(trained["seconds"].sum() / meta["search_seconds"]), 3) if meta.get("search_seconds") else None,
        "compile_share": round(float(done["compile_seconds"].sum() / done["seconds"].sum()), 3),
        "compile_share_median": round(float((done["compile_seconds"] / done["seconds"]).median()), 3),
        "achieved_tflops": round(tflops, 3),
        "fraction_of_bf16_peak": round(tflops / peak_tflops, 4) if peak_tflops else None,
        "best_val_accuracy": round(float(done["val_accuracy"].max()), 4),
    }
    board = results / "leaderboard.csv"
    if board.exists():
        ranked = pd.read_csv(board)
        first = ranked[ranked["rank"] == 1].iloc[0]
        figures["rank1_test_accuracy"] = round(float(first["test_accuracy"]), 4)
        figures["rank1_test_accuracy_std"] = round(float(first["test_accuracy_std"]), 4)
        figures["retrain_seconds"] = meta.get("retrain_seconds")
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results directory of `archsearch run`")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak, e.g. 989 for an H100 SXM")
    args = parser.parse_args(argv)
    print(json.dumps(summarize(args.results, args.peak_tflops), indent=2))


if __name__ == "__main__":
    sys.exit(main())
