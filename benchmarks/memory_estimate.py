"""The plan's training-memory estimate against the peak a training step measures, on the CPU.

`Architecture.memory_estimate()` counts, from the plan alone, the weights,
their gradients, the optimizer's slots and one output per layer for the
backward pass. `Search(max_memory=...)` refuses a point on it before its model
is built; this script says how far it is from what training takes.

Each (point, batch size) runs in a fresh Python process, so that no other
model's memory and no allocator's cache from an earlier one counts. There the
model is built and compiled with the point's optimizer, random uint8 images
of the data's shape are made (memory does not depend on their values), and
the resident set size (RSS, `/proc/self/statm`) is read; a thread then reads
it every millisecond while Keras trains `--steps` steps. The measured peak is

    weights (params x 4 bytes, resident before training) + (highest RSS during training - RSS before it)

Limits: RSS counts whatever the framework allocates while it trains, the
tracing and compilation of the training step among it (tens of MB on
TensorFlow, the same for a small or a large model), oneDNN's workspaces and
what the allocator keeps of freed memory; a sample every millisecond can miss
a shorter peak; pages the allocator reuses from before training do not count.
Small models are therefore dominated by that overhead and their relative
error says little; the script also prints what one more image in the batch
adds, estimated and measured, which that fixed overhead leaves out. Linux only.

    python benchmarks/memory_estimate.py --batch-sizes 32 128 256 --out results/bench/memory_estimate.csv
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

from archsearch.recipe.architecture import plan

DIGITS = ((8, 8, 1), 10)
CAR_TRUCK = ((32, 32, 1), 2)  # CIFAR-10's automobile and truck, grayscale
BATCH_NORM = {"batch_norm": True}

#: Points of the digits and car-versus-truck spaces (`archsearch/spaces/`), with their data's shape and classes.
POINTS = {
    "digits_vgg16_r16": (
        {"family": "vgg", "resolution": 16, "width": 16, "blocks_per_stage": 2, **BATCH_NORM},
        *DIGITS,
    ),
    "digits_resnet32_r16": (
        {"family": "resnet", "resolution": 16, "width": 32, "blocks_per_stage": 2, **BATCH_NORM},
        *DIGITS,
    ),
    "car_truck_vgg16_s2": (
        {"family": "vgg", "resolution": 32, "width": 16, "stages": 2, "blocks_per_stage": 1, **BATCH_NORM},
        *CAR_TRUCK,
    ),
    "car_truck_vgg32_s3_mlp": (
        {"family": "vgg", "resolution": 32, "width": 32, "stages": 3, "blocks_per_stage": 2, "head": "mlp"},
        *CAR_TRUCK,
    ),
    "car_truck_resnet16_s2_augment": (
        {"family": "resnet", "resolution": 32, "width": 16, "stages": 2, "blocks_per_stage": 2, "augment": True},
        *CAR_TRUCK,
    ),
    "car_truck_resnet32_s3_strided_sgd": (
        {
            "family": "resnet",
            "resolution": 32,
            "width": 32,
            "stages": 3,
            "blocks_per_stage": 2,
            "downsample": "strided",
            "optimizer": "sgd",
        },
        *CAR_TRUCK,
    ),
}
#: A point small enough for the test of this script.
TOY = {"toy": ({"family": "vgg", "resolution": 8, "width": 4, "stages": 1, "blocks_per_stage": 1}, *DIGITS)}

COLUMNS = ["point", "backend", "batch_size", "params", "estimate_bytes", "measured_bytes", "relative_error"]


def _rss():
    """The process's resident set size now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler(threading.Thread):
    """Reads the RSS every millisecond until stopped; `peak` is the highest it read."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = _rss(), threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)


def measure_one(point, shape, classes, batch_size, steps):
    """In this process: the peak memory of `steps` training steps of a point, in bytes (see the module's docstring)."""
    import keras
    import numpy as np

    from archsearch.model.builder import build_model
    from archsearch.model.training import train

    architecture = plan({**point, "batch_size": batch_size}, shape, classes)
    model = build_model(architecture)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size * steps, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, batch_size * steps)
    keras.utils.set_random_seed(0)
    before = _rss()
    sampler = PeakSampler()
    sampler.start()
    train(model, architecture.point, x, y, epochs=1)
    sampler.done.set()
    sampler.join()
    return 4 * architecture.params + max(0, sampler.peak - before)


def measure(name, point, shape, classes, batch_size, steps):
    """Runs `measure_one` in a fresh Python process; returns the row of the CSV."""
    job = json.dumps({"point": point, "shape": shape, "classes": classes, "batch_size": batch_size, "steps": steps})
    result = subprocess.run([sys.executable, __file__, "--one", job], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} at batch size {batch_size} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])["measured_bytes"]
    architecture = plan({**point, "batch_size": batch_size}, shape, classes)
    estimate = architecture.memory_estimate()
    return {
        "point": name,
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "batch_size": batch_size,
        "params": architecture.params,
        "estimate_bytes": estimate,
        "measured_bytes": measured,
        "relative_error": round((estimate - measured) / measured, 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", default=list(POINTS), help=f"of {', '.join([*POINTS, *TOY])}")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--steps", type=int, default=4, help="training steps measured per run (default 4)")
    parser.add_argument("--out", default="results/bench/memory_estimate.csv")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child process: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.one:
        job = json.loads(args.one)
        measured = measure_one(job["point"], tuple(job["shape"]), job["classes"], job["batch_size"], job["steps"])
        print(json.dumps({"measured_bytes": measured}))
        return
    known = {**POINTS, **TOY}
    rows = []
    for name in args.points:
        point, shape, classes = known[name]
        for batch_size in args.batch_sizes:
            row = measure(name, point, list(shape), classes, batch_size, args.steps)
            rows.append(row)
            print(
                f"{name} batch {batch_size}: estimate {row['estimate_bytes'] / 2**20:.1f} MiB, "
                f"measured {row['measured_bytes'] / 2**20:.1f} MiB, relative error {row['relative_error']:+.1%}",
                flush=True,
            )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    errors = frame["relative_error"].abs()
    print(f"|relative error|: median {errors.median():.1%}, largest {errors.max():.1%} over {len(frame)} runs")
    for name, runs in frame.groupby("point", sort=False):
        if len(runs) > 1:  # what one more image in the batch adds: the activations, without the fixed overhead
            first, last = runs.iloc[0], runs.iloc[-1]
            images = last["batch_size"] - first["batch_size"]
            estimate = (last["estimate_bytes"] - first["estimate_bytes"]) / images
            measured = (last["measured_bytes"] - first["measured_bytes"]) / images
            print(f"{name}: per image of batch, estimate {estimate / 1024:.0f} KiB, measured {measured / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
