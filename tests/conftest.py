"""Shared fixtures: a private data cache, digits, the real CIFAR-10 archive when one is given, and small spaces.

Tests on the real CIFAR-10 JPEG archive find it through `ARCHSEARCH_TEST_CIFAR`
(a path to `cifar10-jpg.tar.gz`, an image folder archive). Without it they skip,
saying how to enable them. `.ci/run` always sets it and checks the file is
there, and a variable naming a missing file fails the tests: in CI they
run, never skip.
"""

import os
import socket
import tarfile
import time
from pathlib import Path

import pytest

CIFAR_VARIABLE = "ARCHSEARCH_TEST_CIFAR"
# The files that take longest, which pytest-xdist's processes take first (a file at a time, in the
# order collected): in the order of their names, the workers' would start last and end the suite alone.
LONGEST_FIRST = ("test_workers.py", "test_resilience.py", "test_backends.py", "test_transfer.py", "test_benchmarks.py")


def pytest_collection_modifyitems(items):
    longest = {name: rank for rank, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: longest.get(item.path.name, len(LONGEST_FIRST)))  # stable: each file keeps its order


@pytest.fixture(scope="session", autouse=True)
def data_private_cache(tmp_path_factory):
    """Keeps the tests' decoded data out of the user's cache (subprocesses inherit it too)."""
    cache = tmp_path_factory.mktemp("archsearch-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("ARCHSEARCH_CACHE_DIR", str(cache))
    patcher.delenv("ARCHSEARCH_DATA_DIR", raising=False)
    yield cache
    patcher.undo()


@pytest.fixture(scope="session")
def data_cifar_archive():
    """The CIFAR-10 JPEG archive that `ARCHSEARCH_TEST_CIFAR` names; skips where it is unset."""
    value = os.environ.get(CIFAR_VARIABLE)
    if not value:
        pytest.skip(f"needs the CIFAR-10 JPEG archive: set {CIFAR_VARIABLE}=/path/to/cifar10-jpg.tar.gz to run")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{CIFAR_VARIABLE}={value}: no such file")
    return path


@pytest.fixture(scope="session")
def data_cifar_car_truck_folder(data_cifar_archive, tmp_path_factory):
    """The automobile and truck folders of CIFAR-10 (12,000 JPEGs), unpacked once per session."""
    target = tmp_path_factory.mktemp("cifar-car-truck")
    with tarfile.open(data_cifar_archive) as tar:
        members = [m for m in tar if m.isfile() and m.name.split("/")[-2] in ("automobile", "truck")]
        tar.extractall(target, members=members, filter="data")
    return target / "cifar10"


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory):
    """scikit-learn's digits as a small .npz (uint8, 8x8x1): a whole run takes seconds."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x_train=x[:600], y_train=y[:600], x_test=x[1500:], y_test=y[1500:])
    return path


def _tiny_space(npz, name="tiny", max_trials=3, **search):
    from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice

    return Space(
        name=name,
        data=Data(str(npz), validation=0.25),
        recipe=Recipe(family=choice("vgg", "resnet"), resolution=8, width=choice(4, 8), stages=1, blocks_per_stage=1),
        train=Train(epochs=1, batch_size=64),
        search=Search(tuner="random", max_trials=max_trials, seed=1, **search),
        retrain=Retrain(top_k=2, epochs=1, seeds=1),
    )


@pytest.fixture(scope="session")
def tiny_space():
    """Makes the smallest space that searches: `tiny_space(npz, name="tiny", max_trials=3, **search)`."""
    return _tiny_space


def _space_file(tmp_path, npz, max_trials=4, epochs=4, resolution=16, stages=2, batch_size=16):
    path = tmp_path / "space.py"
    path.write_text(
        "from archsearch import *\n"
        f"space = Space(name='resume', data=Data({str(npz)!r}, validation=0.25),\n"
        f"    recipe=Recipe(family=choice('vgg', 'resnet'), width=choice(8, 16), resolution={resolution}, "
        f"stages={stages}, blocks_per_stage=1),\n"
        f"    train=Train(epochs={epochs}, batch_size={batch_size}), search=Search(max_trials={max_trials}, seed=3),\n"
        "    retrain=Retrain(top_k=1, epochs=2, seeds=2))\n"
    )
    return path


@pytest.fixture(scope="session")
def space_file():
    """Writes a small space file for commands run in their own process: `space_file(tmp_path, npz, ...)`."""
    return _space_file


def _wait_for(condition, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture(scope="session")
def wait_for():
    """Waits until `condition()` holds: `wait_for(condition, timeout=240)`; fails the test on time-out."""
    return _wait_for


class _Terminal:
    """A stream that says it is a terminal, and keeps what is written."""

    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return True


@pytest.fixture
def tty_stream():
    """A stream that says it is a terminal (so progress draws its bar), with what was written in `.text`."""
    return _Terminal()


@pytest.fixture
def no_proxies(monkeypatch):
    """No `*_proxy` variables: the offline check tries each download host itself, not a proxy (`data/tfds.py`)."""
    for variable in [name for name in os.environ if name.lower().endswith("_proxy")]:
        monkeypatch.delenv(variable)


@pytest.fixture
def offline(monkeypatch, no_proxies):
    """No network, whatever this machine has: every connection fails as a name that does not resolve does."""

    def unresolvable(address, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unresolvable)
