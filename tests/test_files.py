"""Result and cache files are written atomically, with the permissions the umask gives any file."""

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from archsearch.data import Data, load_data
from archsearch.files import write_csv, write_json


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_results_and_the_data_cache_respect_the_umask(tmp_path, umask):
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "trials.csv")
    write_json({"status": "complete"}, tmp_path / "run.json")
    cache = load_data(Data("digits"), cache_dir=tmp_path / "cache").cache_path
    for path in (tmp_path / "trials.csv", tmp_path / "run.json", *Path(cache).iterdir()):
        assert mode(path) == 0o666 & ~umask, path
    assert mode(cache) == 0o777 & ~umask  # the entry's folder, as mkdir makes one
    assert not list(tmp_path.rglob("*.tmp"))
