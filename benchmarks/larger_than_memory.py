"""Peak resident memory of a whole run (search, retraining, export) on 12 GiB of decoded images, sampled.

Generates an image folder `<root>/{train,test}/<class>/<image>.jpg` of
`--images` JPEGs per class and split at `--size` x `--size` pixels (by
default 10 classes of 1,500 training and 150 test images at 512 x 512:
13.0 GB, 12.1 GiB, decoded), writes a space file for it (one trial, one retraining, one epoch
each, the network reading a resized 32 x 32 copy of each image), and runs
`archsearch run` on it in a fresh cache folder, so that the run decodes the
folder too. A thread reads the resident set size (VmRSS, with its anonymous
and file-backed parts) of the run's process and every process under it
from `/proc` every 0.1 s; the peak of their sum is `peak_rss_bytes`.
`decoded_bytes` is the size of the decoded splits, as the cache holds them.
The same run on a folder of `--small` images per class first gives the
fixed part (Python, TensorFlow, the export's converters): the claim is
that the large run's peak is that, not a share of the data.
The kernel's page cache is not resident memory of any process and is not
counted: it is what lets a second epoch read the data without the disk.

    python benchmarks/larger_than_memory.py --out results/bench/larger_than_memory.json

Linux only (it reads `/proc`). About 15 minutes on two cores, most of it in
generating the JPEGs and in the export's conversions.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10
SPACE = """from archsearch import Data, Recipe, Retrain, Search, Space, Train

space = Space(
    name="larger_than_memory",
    data=Data({root!r}, validation=0.1),
    recipe=Recipe(family="vgg", resolution=32, width=8, stages=2, blocks_per_stage=1, batch_norm=True),
    train=Train(epochs=1, batch_size=64, learning_rate=3e-3),
    search=Search(tuner="random", max_trials=1),
    retrain=Retrain(top_k=1, seeds=1, epochs=1),
)
"""


def _image(task):
    """Writes one JPEG: smooth stripes whose angle and colour follow the class, with noise."""
    path, label, size, seed = task
    rng = np.random.default_rng(seed)
    angle = np.pi * (label + rng.uniform(-0.3, 0.3)) / CLASSES
    rows, columns = np.mgrid[0:size, 0:size] / size
    wave = np.sin(2 * np.pi * 6 * (rows * np.cos(angle) + columns * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    colour = np.array([label % 3 == 0, label % 3 == 1, label % 3 == 2]) * 80 + rng.uniform(60, 120, 3)
    image = colour[None, None] + 60 * wave[..., None] + rng.normal(0, 12, (size, size, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root, images, size):
    """Writes the folder in parallel; returns how many images it holds."""
    tasks = []
    for split, count in (("train", images), ("test", max(1, images // 10))):
        for label in range(CLASSES):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            tasks += [(folder / f"{i:05d}.jpg", label, size, hash((split, label, i)) % 2**32) for i in range(count)]
    with concurrent.futures.ProcessPoolExecutor() as pool:
        list(pool.map(_image, tasks, chunksize=64))
    return len(tasks)


def _tree(root_pid):
    """The pids of `root_pid` and of every process under it."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, changed = {root_pid}, True
    while changed:
        grown = tree | {pid for pid, parent in parents.items() if parent in tree}
        changed, tree = grown != tree, grown
    return tree


def _resident(pid):
    """`(VmRSS, RssAnon, RssFile)` of a process in bytes; zeros once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines if line.endswith(" kB")}
    return fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("RssFile", 0)


class Sampler(threading.Thread):
    """Reads the resident memory of a process tree every `interval` seconds until stopped."""

    def __init__(self, pid, interval=0.1):
        super().__init__(daemon=True)
        self.pid, self.interval, self.stopped = pid, interval, threading.Event()
        self.peak = {"rss": 0, "anon": 0, "file": 0, "processes": 0}
        self.samples, self.timeline, self._start = 0, [], time.perf_counter()

    def run(self):
        while not self.stopped.is_set():
            pids = _tree(self.pid)
            total = np.sum([_resident(pid) for pid in pids], axis=0)
            self.samples += 1
            for name, value in zip(("rss", "anon", "file"), total):
                self.peak[name] = max(self.peak[name], int(value))
            self.peak["processes"] = max(self.peak["processes"], len(pids))
            second = int((time.perf_counter() - self._start) // 5)
            if len(self.timeline) <= second:
                self.timeline.append(0)
            self.timeline[second] = max(self.timeline[second], round(int(total[0]) / 2**20))
            time.sleep(self.interval)


def measure(work, images, size):
    """Generates a folder, runs the space on it under the sampler; returns the figures."""
    root = work / "images"
    start = time.perf_counter()
    count = make_folder(root, images, size)
    generate_seconds = time.perf_counter() - start
    space = work / "space.py"
    space.write_text(SPACE.format(root=str(root)))
    environment = {**os.environ, "ARCHSEARCH_CACHE_DIR": str(work / "cache")}
    run_dir = work / "results" / "run"
    command = [sys.executable, "-m", "archsearch", "run", str(space), "--results", str(run_dir)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(process.pid)
    sampler.start()
    output = process.communicate()[0]
    sampler.stopped.set()
    sampler.join()
    run_seconds = time.perf_counter() - start
    if process.returncode:
        sys.exit(f"archsearch run failed ({process.returncode}):\n{output}")
    entry = next(path for path in (work / "cache").iterdir() if (path / "meta.json").is_file())
    meta = json.loads((run_dir / "run.json").read_text())
    return {
        "images": count,
        "image_size": [size, size, 3],
        "decoded_bytes": sum((entry / f"x_{split}.npy").stat().st_size for split in ("train", "test")),
        "peak_rss_bytes": sampler.peak["rss"],
        "peak_rss_anon_bytes": sampler.peak["anon"],
        "peak_rss_file_bytes": sampler.peak["file"],
        "peak_processes": sampler.peak["processes"],
        "samples": sampler.samples,
        "rss_mib_every_5s": sampler.timeline,
        "generate_seconds": round(generate_seconds, 1),
        "run_seconds": round(run_seconds, 1),
        "status": meta["status"],
        "export_check": meta.get("export_check"),
        "output": output.splitlines()[-12:],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1500, help="training images per class (test: a tenth)")
    parser.add_argument("--size", type=int, default=512, help="image height and width in pixels")
    parser.add_argument("--small", type=int, default=20, help="training images per class of the reference run")
    parser.add_argument("--workdir", help="where the folders, caches and runs go (default: a temporary folder)")
    parser.add_argument("--out", default="results/bench/larger_than_memory.json")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="larger_than_memory-"))
    small = measure(work / "small", args.small, args.size)
    large = measure(work / "large", args.images, args.size)
    result = {
        "command": "python benchmarks/larger_than_memory.py " + " ".join(sys.argv[1:]),
        "decoded_bytes": large["decoded_bytes"],
        "peak_rss_bytes": large["peak_rss_bytes"],
        "peak_rss_fraction_of_decoded": round(large["peak_rss_bytes"] / large["decoded_bytes"], 4),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "large": large,
        "small": small,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("large", "small")}, indent=2))
    for name in ("small", "large"):
        run = result[name]
        print(
            f"{name}: {run['decoded_bytes'] / 2**30:.2f} GiB decoded, peak RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB"
        )


if __name__ == "__main__":
    main()
