"""What an architecture costs to deploy, measured: latency, throughput and file size of its untrained model.

`measure()` times the untrained model `build_model()` makes of the architecture
(or the one a trial is about to train, the same model), called in inference
mode: its preprocessing (uint8 scaling, resize and crop) and every planned
layer run, and its training-only augmentation layers pass images through. It
runs on Keras's default device, the one the search trains on: the CPU, or the
accelerator where there is one. Untrained weights run as fast as trained ones,
so the figures hold before any training, and a search can refuse a point over
`Search(max_latency_ms=...)` or `Search(max_model_bytes=...)` before it trains.

How, and what it costs (about half a second for a digits-sized model on a CPU
core, most of it compiling the two predict steps):

- `latency_ms`: the median of `LATENCY_CALLS` timed `predict_on_batch` calls on
  one image, after `WARMUP_CALLS` untimed ones (the first compiles);
  `latency_ms_iqr` is their interquartile range, the noise of that median.
  Timing stops early after `TIME_BUDGET` seconds (at least `MIN_CALLS`
  calls), so a large model costs no more than about a second per batch size.
- `images_per_second`: `THROUGHPUT_BATCH` images divided by the median time of
  `THROUGHPUT_CALLS` calls on a batch of that many, after the warm-up.
- `model_bytes`: the size of that untrained model saved as a `.keras` file:
  its weights (float32) and the architecture's JSON, zipped, with no
  optimizer state (it is not compiled). `best/model.keras`, saved after
  training, is larger by its optimizer's slots.

The images are random uint8, as the model takes them. Augmentation layers are
the identity at inference (`training=False`, which `predict_on_batch` uses).
Measurements are cached by the planned network (its layers, input and
classes), so a network is measured once per process: points that differ only
in knobs that leave the layers as they are (learning rate, optimizer, batch
size, epochs) share a measurement, while `augment` adds layers and so is
measured apart. With `tta`, what is timed and saved is the model that scores
and is exported (`archsearch.model.builder.scoring_model()`): the mirror
of each image (a matrix product over its width, at the data's stored size:
little beside the network at CIFAR's 32 pixels, more for large images fed to
a small network), then the network on both. A
trial's figures are kept in its metrics, which a resumed search and the
retraining read back.
"""

import dataclasses
import hashlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from archsearch.errors import InfeasibleArchitecture

# Keras is imported by the functions that build, time or query a device, not here: the tables
# (archsearch.records.tables) name COST_COLUMNS in processes that read a run and import no Keras.

WARMUP_CALLS = 3  # untimed calls per batch size: the first one compiles the predict step
LATENCY_CALLS = 30  # timed calls on one image
THROUGHPUT_BATCH = 64
THROUGHPUT_CALLS = 5  # timed calls on a batch of THROUGHPUT_BATCH images
MIN_CALLS = 3  # timed calls per batch size, whatever the time budget
TIME_BUDGET = 0.5  # seconds of timed calls per batch size, beyond which timing stops

#: The columns a measurement gives, in trials.csv's and leaderboard.csv's order.
COST_COLUMNS = ("latency_ms", "latency_ms_iqr", "images_per_second", "model_bytes")
#: The cost figures that are counts: integer columns in trials.csv and describe's table (<NA> where missing).
INTEGER_COLUMNS = ("params", "flops", "memory_estimate_bytes", "model_bytes")


@dataclasses.dataclass(frozen=True)
class Cost:
    """What an untrained model of an architecture costs at inference, on the device that measured it.

    Args:
        latency_ms: median milliseconds per call on one image.
        latency_ms_iqr: interquartile range of those calls, in milliseconds.
        images_per_second: images per second in batches of `THROUGHPUT_BATCH`.
        model_bytes: size of the model saved as a `.keras` file.
    """

    latency_ms: float
    latency_ms_iqr: float
    images_per_second: float
    model_bytes: int

    def to_dict(self):
        """Returns the figures by their column names (`COST_COLUMNS`)."""
        return dataclasses.asdict(self)


_CACHE = {}  # plan key -> Cost, for this process


def _key(architecture):
    """What a measurement depends on: the planned layers (augmentation among them), input, classes and `tta`."""
    text = repr((architecture.input_shape, architecture.num_classes, architecture.layers, architecture.point["tta"]))
    return hashlib.sha256(text.encode()).hexdigest()


def cached(architecture):
    """Returns the architecture's `Cost` if this process measured it already, else `None`."""
    return _CACHE.get(_key(architecture))


def measure(architecture, model=None):
    """Measures (once per process) an architecture's latency, throughput and file size.

    Args:
        architecture: a planned `Architecture`.
        model: its untrained model, from `archsearch.model.builder.build_model()`;
            `None` builds one. Inference leaves its weights as they were.

    Returns:
        A `Cost`.

    Example:

    >>> from archsearch.recipe.architecture import plan
    >>> cost = measure(plan({"width": 4, "stages": 1}, (8, 8, 1), 10))
    >>> cost.latency_ms > 0 and cost.model_bytes > 0
    True
    """
    key = _key(architecture)
    if key not in _CACHE:
        from archsearch.model.builder import build_model, scoring_model

        model = model if model is not None else build_model(architecture)
        _CACHE[key] = _measure(scoring_model(model, architecture.point), architecture.input_shape)
    return _CACHE[key]


def check_budgets(architecture, measured, search):
    """Raises `InfeasibleArchitecture` if a measured model breaks the search's `max_latency_ms` or `max_model_bytes`.

    Args:
        architecture: the planned `Architecture` (the error carries it).
        measured: its `Cost`, from `measure()`.
        search: the space's `Search`.
    """
    if search.max_latency_ms is not None and measured.latency_ms > search.max_latency_ms:
        raise InfeasibleArchitecture(
            "max_latency_ms",
            search.max_latency_ms,
            f"the untrained model takes {measured.latency_ms:.3g} ms per image at batch 1 "
            f"(interquartile range {measured.latency_ms_iqr:.2g} ms) on {cost_device()}",
            architecture,
        )
    if search.max_model_bytes is not None and measured.model_bytes > search.max_model_bytes:
        raise InfeasibleArchitecture(
            "max_model_bytes",
            search.max_model_bytes,
            f"the model saved as .keras takes {measured.model_bytes:,} bytes",
            architecture,
        )


def _timings(model, images, calls):
    """Seconds of each of up to `calls` timed predictions on `images`, after the warm-up."""
    for _ in range(WARMUP_CALLS):
        model.predict_on_batch(images)
    seconds, start = [], time.perf_counter()
    while len(seconds) < calls and (len(seconds) < MIN_CALLS or time.perf_counter() - start < TIME_BUDGET):
        begin = time.perf_counter()
        np.asarray(model.predict_on_batch(images))  # waits for the device
        seconds.append(time.perf_counter() - begin)
    return seconds


def _measure(model, input_shape):
    rng = np.random.default_rng(0)
    one = _timings(model, rng.integers(0, 256, (1, *input_shape), dtype=np.uint8), LATENCY_CALLS)
    batch = _timings(model, rng.integers(0, 256, (THROUGHPUT_BATCH, *input_shape), dtype=np.uint8), THROUGHPUT_CALLS)
    low, _, high = statistics.quantiles(one, n=4, method="inclusive")
    return Cost(
        latency_ms=1000 * statistics.median(one),
        latency_ms_iqr=1000 * (high - low),
        images_per_second=THROUGHPUT_BATCH / statistics.median(batch),
        model_bytes=_saved_bytes(model),
    )


def _saved_bytes(model):
    from archsearch.model.backend import keras_without_tensorflow

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        with keras_without_tensorflow():
            model.save(path)
        return path.stat().st_size


def _cpu_name():
    """The processor's name as Linux's /proc/cpuinfo gives it, else Python's `platform` module."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cost_device():
    """What `measure()` times on, as run.json's `cost_device` gives it.

    Returns:
        The first accelerator's name, e.g. `"NVIDIA H200"`, else
        `"CPU: <processor name>, <N> cores"` (the cores this process may use).
    """
    from archsearch.model.backend import devices

    accelerators = [d for d in devices() if d.accelerator]
    if accelerators:
        return accelerators[0].kind or accelerators[0].name
    return f"CPU: {_cpu_name()}, {_cpu_count()} cores"


def device_memory():
    """The memory of the device a search trains on, in bytes, or `None` where the backend does not tell.

    The first accelerator's memory (`archsearch.model.backend.Device.memory`);
    on a CPU, the total RAM (`os.sysconf`).
    """
    from archsearch.model.backend import devices

    accelerators = [d for d in devices() if d.accelerator]
    return accelerators[0].memory if accelerators else host_memory()


def host_memory():
    """This machine's RAM in bytes (`os.sysconf`), or `None` where it does not tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget(search):
    """The memory budget a search applies on this machine, in bytes.

    Args:
        search: the space's `Search`.

    Returns:
        `search.max_memory` where it is set, else this device's memory
        (`device_memory()`: a worker applies its own); `None` where neither
        is known, which checks none.
    """
    return search.max_memory if search.max_memory is not None else device_memory()
