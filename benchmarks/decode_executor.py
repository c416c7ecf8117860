"""Decoding images on this machine's cores: worker processes (by start method) against threads.

Decodes the shared CIFAR-10 JPEG archive (60,000 images) as `archsearch.data`
does, read in place from the archive (the images' bytes in memory) and from
the folder it unpacks to (paths on disk, warm in the page cache). Each timing
is a fresh process, as a command is: it lists the images (not timed), then
decodes both splits with one executor into a cache entry's `.npy` files in a
temporary folder (timed: pool start-up and the files' writes included). The
order of the executors rotates from one repeat to the next. With `--keras`,
each process imports Keras first, as `archsearch run` does before loading data.

    python benchmarks/decode_executor.py --archive ../shared/data/cifar10-jpg.tar.gz --repeats 5 \
        --out results/bench/decode_executor.csv
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

EXECUTORS = ("fork", "forkserver", "spawn", "thread", "serial")


def time_one(executor, source, path, keras):
    """In this process: lists `path`, then decodes it with `executor`; returns the seconds decoding took."""
    if keras:
        import keras  # noqa: F401

    from archsearch.data import Data, decode
    from archsearch.data.folders import Archive, Folder, tree_listing

    def mapped(function, tasks):
        if executor == "serial":
            yield from map(function, tasks)
            return
        workers = min(len(tasks), decode._workers())
        if executor == "thread":
            pool = concurrent.futures.ThreadPoolExecutor(workers)
        else:
            context = multiprocessing.get_context(executor)
            if executor == "forkserver":  # its workers start with the decoder imported, not each on its own
                context.set_forkserver_preload(["archsearch.data.decode"])
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
        with pool:
            yield from pool.map(function, tasks)

    data = Data("cifar10")
    listing = tree_listing((Archive if source == "archive" else Folder)(Path(path)), data)
    decode._map = mapped
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        decode.write_tree(data, listing, Path(folder))
        seconds = time.perf_counter() - start
        assert sum(len(np.load(Path(folder) / f"y_{split}.npy")) for split in ("train", "test")) == 60_000
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", required=True, help="cifar10-jpg.tar.gz")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS))
    parser.add_argument("--keras", action="store_true", help="import Keras first, as `archsearch run` does")
    parser.add_argument("--out", help="CSV of every timing")
    parser.add_argument("--one", nargs=3, metavar=("EXECUTOR", "SOURCE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(time_one(*args.one, args.keras)))
        return

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(args.archive) as tar:
            tar.extractall(folder, filter="data")
        paths = {"archive": args.archive, "folder": folder}
        for repeat in range(args.repeats):
            shift = repeat % len(args.executors)
            for source, path in paths.items():
                for executor in args.executors[shift:] + args.executors[:shift]:
                    command = [
                        sys.executable,
                        __file__,
                        "--archive",
                        args.archive,
                        "--one",
                        executor,
                        source,
                        path,
                        *(["--keras"] if args.keras else []),
                    ]
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                    seconds = json.loads(done.stdout.splitlines()[-1])
                    rows.append(
                        {"repeat": repeat, "source": source, "executor": executor, "seconds": round(seconds, 3)}
                    )
                    print(f"repeat {repeat} {source:7} {executor:10} {seconds:.2f} s", flush=True)
    frame = pd.DataFrame(rows).assign(keras_imported=args.keras, cores=len(os.sched_getaffinity(0)))
    if args.out:
        frame.to_csv(args.out, index=False)
    for (source, executor), group in frame.groupby(["source", "executor"], sort=False):
        seconds = group["seconds"].tolist()
        print(
            f"{source:7} {executor:10} median {statistics.median(seconds):.2f} s "
            f"(min {min(seconds):.2f}, max {max(seconds):.2f}) over {len(seconds)}"
        )


if __name__ == "__main__":
    main()
