"""Wall time of short `archsearch` commands, for one or more checkouts of the code.

Each timing is a fresh `python -m archsearch ...` process (imports included),
run in the checkout with it first on `PYTHONPATH`; checkouts and commands
alternate within each repeat, so that a busy moment of a shared machine falls
on all of them alike. Prints the median and range per checkout and command.

    git archive fc6c509 | tar -x -C /tmp/before   # the commit before the lazy archsearch/__init__.py
    python benchmarks/command_startup.py /tmp/before . --repeats 9 \
        --command=--help --command "leaderboard results/digits"
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall_seconds(checkout, argv):
    """Runs `python -m archsearch argv` in `checkout`; returns its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "archsearch", *argv],
        cwd=checkout,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "checkouts", nargs="+", type=Path, help="folders holding archsearch/ (a git archive of a commit, or this one)"
    )
    parser.add_argument("--command", action="append", required=True, help="arguments of archsearch, e.g. '--help'")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    commands = [shlex.split(command) for command in args.command]
    seconds = {(c, tuple(a)): [] for c in args.checkouts for a in commands}
    for _ in range(args.repeats):
        for checkout in args.checkouts:
            for argv in commands:
                seconds[checkout, tuple(argv)].append(wall_seconds(checkout.resolve(), argv))
    for (checkout, argv), times in seconds.items():
        print(
            f"{str(checkout):28} archsearch {' '.join(argv):28} median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)})"
        )


if __name__ == "__main__":
    main()
