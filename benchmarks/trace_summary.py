"""Where the time goes in a JAX profiler trace: busy and idle time per lane, the costliest ops.

`jax.profiler.start_trace()` (as `benchmarks/resnet9.py --trace` calls it)
writes `plugins/profile/<run>/<host>.trace.json.gz` in Chrome's trace-event
format. TensorBoard's profile plugin reads it, but the device machine has no
TensorBoard and its files come back only two folders deep, so this reads the
file directly: the trace-event format is plain JSON, and nothing in Keras,
JAX or pandas summarizes it without a viewer.

For every lane (a host thread, or a GPU stream) it prints the busy time
(the union of its events' intervals), that time's share of the traced
window, and the idle gaps longer than `--gap` microseconds: on a GPU's
compute stream those gaps are where the device waited for the host (data
feeding, host syncs, launch overhead). For the busiest lanes it lists the
op kinds (names with their numeric suffixes dropped, so `fusion.12` and
`fusion.7` add up) by total time.

    python benchmarks/trace_summary.py /tmp/trace        # a trace directory, or the .trace.json.gz itself
"""

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

import pandas as pd


def find_trace(path):
    """Returns the newest `*.trace.json.gz` at or under `path`."""
    path = Path(path)
    if path.is_file():
        return path
    found = sorted(path.rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(
            f"{path}: no *.trace.json.gz under it (is it the directory given to jax.profiler.start_trace?)"
        )
    return found[-1]


def events_of(path):
    """A trace's complete events as a DataFrame: process, thread (name and id), name, start and end (microseconds)."""
    with gzip.open(path, "rt") as file:
        trace = json.load(file)
    meta = [e for e in trace["traceEvents"] if e.get("ph") == "M"]
    processes = {e["pid"]: e["args"]["name"] for e in meta if e.get("name") == "process_name"}
    threads = {(e["pid"], e.get("tid")): e["args"]["name"] for e in meta if e.get("name") == "thread_name"}
    rows = [
        (
            processes.get(e["pid"], str(e["pid"])),
            threads.get((e["pid"], e.get("tid")), str(e.get("tid"))),
            e.get("tid", -1),
            e.get("name", ""),
            float(e["ts"]),
            float(e["ts"]) + float(e.get("dur", 0.0)),
        )
        for e in trace["traceEvents"]
        if e.get("ph") == "X"
    ]
    return pd.DataFrame(rows, columns=["process", "thread", "tid", "name", "start", "end"])


def busy_and_gaps(starts, ends, gap):
    """Returns (busy microseconds, [idle gaps longer than `gap`]) of a lane's intervals, nested or not."""
    busy, gaps, current_start, current_end = 0.0, [], None, None
    for start, end in sorted(zip(starts, ends)):
        if current_end is None:
            current_start, current_end = start, end
        elif start > current_end:
            busy += current_end - current_start
            if start - current_end > gap:
                gaps.append(start - current_end)
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        busy += current_end - current_start
    return busy, gaps


def summarize(events, gap=100.0, top_lanes=4, top_ops=12):
    """Returns the summary's text."""
    if events.empty:
        return "the trace holds no complete events (was the profiler stopped before any step ran?)"
    window = events["end"].max() - events["start"].min()
    lanes = []
    for (process, thread, tid), lane in events.groupby(["process", "thread", "tid"]):
        busy, gaps = busy_and_gaps(lane["start"], lane["end"], gap)
        lanes.append(
            {
                "process": process,
                "thread": thread,
                "tid": tid,
                "events": len(lane),
                "busy_ms": busy / 1e3,
                "busy_share": busy / window,
                f"gaps_over_{gap:g}us": len(gaps),
                "gap_ms": sum(gaps) / 1e3,
            }
        )
    lanes = pd.DataFrame(lanes).sort_values("busy_ms", ascending=False)
    lines = [
        f"traced window: {window / 1e3:.1f} ms, {len(events)} events",
        "",
        lanes.head(12).to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        "",
    ]
    for process, thread, tid in lanes[["process", "thread", "tid"]].head(top_lanes).itertuples(index=False):
        lane = events[(events["process"] == process) & (events["tid"] == tid)]
        kinds = lane.assign(kind=lane["name"].map(op_kind), ms=(lane["end"] - lane["start"]) / 1e3)
        table = kinds.groupby("kind")["ms"].agg(["count", "sum"]).sort_values("sum", ascending=False).head(top_ops)
        lines += [
            f"{process} / {thread} ({tid}): ops by total time (nested events count in each of their parents)",
            table.rename(columns={"sum": "total_ms"}).to_string(float_format=lambda v: f"{v:.3f}"),
            "",
        ]
    return "\n".join(lines)


def op_kind(name):
    """An op's name without its numeric suffix: `fusion.12` -> `fusion`, `convolution_3` -> `convolution`."""
    return re.sub(r"([._]\d+)+$", "", name) or name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="the trace directory given to jax.profiler.start_trace, or a .trace.json.gz")
    parser.add_argument(
        "--gap", type=float, default=100.0, help="idle gaps longer than this many microseconds are counted"
    )
    args = parser.parse_args(argv)
    path = find_trace(args.trace)
    print(f"trace: {path}")
    print(summarize(events_of(path), gap=args.gap))


if __name__ == "__main__":
    sys.exit(main())
