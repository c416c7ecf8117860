"""Kills a tiny run with SIGKILL at uniformly random moments, resumes it, and checks what it ends with.

One uninterrupted run first gives the run's wall time T. Then, per kill: a
fresh run starts, is killed (its whole process group, which only it and its
decoding workers are in) at a moment drawn uniformly from [0, T], and is
resumed with `--resume` until it exits. A resumed run passes when its
`run.json` says complete, `trials.csv` holds no trial twice and as many
trials as the budget, and `leaderboard.csv`, `best/model.keras` and
`best/saved_model/saved_model.pb` exist. Every resume is the one command the
README gives, `--results DIR --resume`, whatever moment the kill came at: a
run killed before it wrote `run.json` (`killed_while: starting`) is started
afresh in its directory by it.

    python benchmarks/random_kills.py --kills 20 --out results/bench/random_kills.json

Not part of the test suite: it takes minutes (about 30 s per kill on two CPU cores).
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

MAX_TRIALS = 4
TIMEOUT = 600  # seconds for one command; a run that takes longer has hung

SPACE = """from archsearch import *
space = Space(name="kills", data=Data({npz!r}, validation=0.25),
    recipe=Recipe(family=choice("vgg", "resnet"), width=choice(4, 8), resolution=8, stages=1, blocks_per_stage=1),
    train=Train(epochs=2, batch_size=64), search=Search(tuner="random", max_trials={trials}, seed=1),
    retrain=Retrain(top_k=2, epochs=1, seeds=2))
"""


def setup(folder):
    """Writes scikit-learn's digits as a .npz and a tiny space file on it; returns the space file."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None], digits.target
    np.savez(folder / "digits.npz", x_train=x[:600], y_train=y[:600], x_test=x[1500:], y_test=y[1500:])
    space = folder / "space.py"
    space.write_text(SPACE.format(npz=str(folder / "digits.npz"), trials=MAX_TRIALS))
    return space


def command(space, results, resume):
    return [
        sys.executable,
        "-m",
        "archsearch",
        "run",
        str(space),
        "--results",
        str(results),
        *(["--resume"] if resume else []),
    ]


def start(space, results, resume, log):
    # A session of its own: the kill reaches the run's decoding workers too, and nothing else.
    return subprocess.Popen(
        command(space, results, resume), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def finish(space, results, log):
    """Runs `--results DIR --resume` until it exits (a killed run, or one not started yet); returns its exit status."""
    process = start(space, results, True, log)
    try:
        return process.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return "timeout"


def check(results, status):
    """Returns the problems of a finished run, [] when it is whole."""
    if status != 0:
        return [f"exit status {status}"]
    problems = []
    meta = json.loads((results / "run.json").read_text())
    if meta.get("status") != "complete":
        problems.append(f"run.json status {meta.get('status')}")
    trials = pd.read_csv(results / "trials.csv", dtype={"trial_id": str})
    if trials["trial_id"].duplicated().any():
        problems.append(f"trials twice: {sorted(trials['trial_id'][trials['trial_id'].duplicated()])}")
    if (trials["status"] != "infeasible").sum() != MAX_TRIALS:
        problems.append(f"{len(trials)} trials, expected {MAX_TRIALS}")
    for name in ("leaderboard.csv", "best/model.keras", "best/saved_model/saved_model.pb"):
        if not (results / name).exists():
            problems.append(f"no {name}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", help="JSON file for the figure and every kill's record")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="archsearch-kills-"))
    space = setup(folder)
    with open(folder / "log.txt", "w") as log:
        start_time = time.perf_counter()
        reference = finish(space, folder / "reference", log)
        wall = time.perf_counter() - start_time
        assert not check(folder / "reference", reference), check(folder / "reference", reference)
        records = []
        for kill in range(args.kills):
            results = folder / f"run{kill:02d}"
            moment = rng.uniform(0, wall)
            process = start(space, results, False, log)
            time.sleep(moment)
            exited = process.poll() is not None
            if not exited:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            state = (
                json.loads((results / "run.json").read_text()).get("status")
                if (results / "run.json").exists()
                else None
            )
            problems = check(results, finish(space, results, log))
            records.append(
                {
                    "kill": kill,
                    "seconds": round(moment, 2),
                    "killed_while": "finished" if exited else state or "starting",
                    "passed": not problems,
                    "problems": problems,
                }
            )
            print(json.dumps(records[-1]), flush=True)
    passed = sum(r["passed"] for r in records)
    figure = {
        "figure": f"{passed}/{len(records)}",
        "run_seconds": round(wall, 1),
        "seed": args.seed,
        "command": "python benchmarks/random_kills.py " + " ".join(sys.argv[1:]),
        "killed_while": pd.Series([r["killed_while"] for r in records]).value_counts().to_dict(),
        "kills": records,
        "log": str(folder / "log.txt"),
    }
    print(
        f"{passed}/{len(records)} killed runs resumed whole (uninterrupted run {wall:.0f} s); log {folder / 'log.txt'}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(figure, indent=2) + "\n")
    return 0 if passed == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
