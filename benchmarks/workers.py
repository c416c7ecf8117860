"""The search's wall time on 2 worker processes against 1 (and against no workers), on one space.

Each repeat runs the same search three ways, in an order that rotates from
one repeat to the next: in one process, `--workers 1` and `--workers 2`. The
search is the space's own (its trials are seeded, so the three train the same
trials); retraining is cut to one seed of one epoch, as it runs on the chief
alone whatever the workers. From each run it reads `search_seconds` in
`run.json` (the chief's wall time from the start of the search to its end:
with workers, their start-up, TensorFlow's import and the data's loading
included) and the trials' own training seconds in `trials.csv`.

    python benchmarks/workers.py --repeats 3 --out results/bench/workers.csv

Not part of the test suite: it takes minutes.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"one process": [], "1 worker": ["--workers", "1"], "2 workers": ["--workers", "2"]}


def measure(space, setting, folder):
    """Runs one search; returns its row of figures."""
    results = folder / setting.replace(" ", "_")
    command = [
        sys.executable,
        "-m",
        "archsearch",
        "run",
        space,
        "--results",
        str(results),
        "--top-k",
        "1",
        "--seeds",
        "1",
        "--retrain-epochs",
        "1",
        *SETTINGS[setting],
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    meta = json.loads((results / "run.json").read_text())
    trials = pd.read_csv(results / "trials.csv")
    trained = trials[trials["status"] == "completed"]
    return {
        "setting": setting,
        "search_seconds": meta["search_seconds"],
        "trials": len(trained),
        "trial_seconds_sum": round(trained["seconds"].sum(), 1),
        "trial_seconds_mean": round(trained["seconds"].mean(), 2),
        "best_val_accuracy": trained["val_accuracy"].max(),
        "command_seconds": round(wall, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="digits")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True, help="CSV file, one row per run")
    args = parser.parse_args()
    rows, names = [], list(SETTINGS)
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for setting in order:
                row = {"repeat": repeat, **measure(args.space, setting, Path(scratch) / str(repeat))}
                print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
                rows.append(row)
    frame = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    medians = frame.groupby("setting")[["search_seconds", "trial_seconds_mean"]].median()
    print(medians.to_string())
    one = medians.loc["1 worker", "search_seconds"]
    print(f"search time, 1 worker / 2 workers (median): {one / medians.loc['2 workers', 'search_seconds']:.2f}")


if __name__ == "__main__":
    main()
