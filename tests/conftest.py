"""Shared fixtures: a private data cache, and the real CIFAR-10 archive from ../shared/data."""

from pathlib import Path

import pytest

CIFAR_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keeps the tests' decoded data out of the user's cache (subprocesses inherit it too)."""
    cache = tmp_path_factory.mktemp("archsearch-cache")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("ARCHSEARCH_CACHE_DIR", str(cache))
    patcher.delenv("ARCHSEARCH_DATA_DIR", raising=False)
    yield cache
    patcher.undo()


@pytest.fixture(scope="session")
def cifar_archive():
    """The shared CIFAR-10 JPEG archive; always present in CI, so its absence is a failure."""
    if not CIFAR_ARCHIVE.is_file():
        pytest.fail(f"{CIFAR_ARCHIVE} is missing: the data tests need the shared CIFAR-10 archive")
    return CIFAR_ARCHIVE
