"""The Python API: `archsearch.run()` and `load_run()` give a `Run` read from the run's files; `Data.from_arrays()`."""

import dataclasses
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import archsearch
from archsearch import Data
from archsearch.cli.main import main
from archsearch.errors import ArchsearchError, DataError, SpaceError


@pytest.fixture(scope="module")
def digits_arrays(digits_npz):
    with np.load(digits_npz) as arrays:
        return {name: arrays[name] for name in ("x_train", "y_train", "x_test", "y_test")}


def _arrays_space(tiny_space, digits_npz, arrays):
    space = tiny_space(digits_npz, name="arrays", max_trials=2)
    data = Data.from_arrays(**arrays, class_names=[f"digit {i}" for i in range(10)], validation=0.25)
    return dataclasses.replace(space, data=data, retrain=dataclasses.replace(space.retrain, top_k=1))


@pytest.fixture(scope="module")
def finished(digits_arrays, digits_npz, tiny_space, tmp_path_factory):
    """One run through `archsearch.run()`, on arrays, into `<space folder>/first`."""
    space_folder = tmp_path_factory.mktemp("api") / "arrays"
    space = _arrays_space(tiny_space, digits_npz, digits_arrays)
    return archsearch.run(space, results=space_folder / "first", log=lambda line: None)


def test_run_returns_a_run_whose_tables_are_the_run_s_csvs(finished):
    assert isinstance(finished, archsearch.Run)
    assert finished.status == "complete" and finished.meta["status"] == "complete"
    # The tables are the CSVs: written back, each gives its file byte for byte (one dtype per column).
    for table in ("leaderboard", "trials"):
        text = (finished.path / f"{table}.csv").read_text()
        assert isinstance(getattr(finished, table), pd.DataFrame)
        assert getattr(finished, table).to_csv(index=False) == text
        assert getattr(archsearch.load_run(finished.path), table).to_csv(index=False) == text
    assert len(finished.trials) == 2 and set(finished.history["phase"]) == {"search", "retrain"}
    assert finished.report_path.is_file()
    assert repr(finished) == f"Run({str(finished.path)!r}, status='complete')"


def test_load_run_on_a_space_folder_is_its_latest_complete_run(finished):
    assert archsearch.load_run(finished.path.parent) == finished


def test_the_exported_model_predicts_arrays_and_files(finished, digits_arrays, tmp_path):
    images = digits_arrays["x_test"][:5]
    model = finished.best_model()
    assert isinstance(model, keras.Model)
    predictions = finished.predict(images)
    names = [f"digit {i}" for i in range(10)]
    assert list(predictions.columns) == ["class_name", "class_id", *(f"probability_{n}" for n in names)]
    assert len(predictions) == 5
    assert np.allclose(predictions.filter(like="probability_").sum(axis=1), 1, atol=1e-4)
    assert np.allclose(predictions.filter(like="probability_").to_numpy(), model.predict(images, verbose=0), atol=1e-6)
    assert list(finished.predict(images[..., 0])["class_id"]) == list(predictions["class_id"])  # (N, H, W) too

    paths = []
    for index, image in enumerate(images[:2]):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(image[..., 0]).save(paths[-1])
    from_files = finished.predict(paths)
    assert list(from_files.index) == [str(p) for p in paths]
    assert list(from_files["class_id"]) == list(predictions["class_id"][:2])


def test_predict_refuses_images_that_are_not_the_model_s_uint8(finished, digits_arrays):
    with pytest.raises(ArchsearchError, match=r"predict: images of dtype float32 .*this model takes uint8"):
        finished.predict(digits_arrays["x_test"][:2].astype(np.float32))


def test_the_report_s_figures_are_pngs(finished):
    figures = finished.figures()
    assert figures and all(figure.png.startswith(b"\x89PNG") and figure.title for figure in figures)
    assert figures[0]._repr_png_() == figures[0].png


def test_a_run_on_arrays_resumes_on_the_same_arrays_and_refuses_others(finished, digits_arrays, digits_npz, tiny_space):
    again = {name: array.copy() for name, array in digits_arrays.items()}  # the same content, other arrays
    resumed = archsearch.run(
        _arrays_space(tiny_space, digits_npz, again), results=finished.path, resume=True, log=lambda line: None
    )
    assert resumed == finished and resumed.status == "complete"
    again["x_train"][0, 0, 0] ^= 1
    with pytest.raises(ArchsearchError, match="the space changed since this run started"):
        archsearch.run(
            _arrays_space(tiny_space, digits_npz, again), results=finished.path, resume=True, log=lambda line: None
        )


def test_a_run_on_arrays_exports_again_from_run_json_and_its_check_passes(finished, tmp_path, capsys):
    assert finished.meta["space"]["data"]["source"].startswith("arrays:")
    assert main(["export", str(finished.path), "--out", str(tmp_path / "export")]) == 0
    assert "exported rank 1" in capsys.readouterr().out


def _command_line_error(argv, capsys):
    """The message `archsearch ARGV` prints for its error, less `archsearch: error: `."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip().removeprefix("archsearch: error: ")


def test_errors_are_archsearch_s_own_with_the_command_line_s_messages(tmp_path, capsys):
    with pytest.raises(ArchsearchError) as missing_run:
        archsearch.load_run(tmp_path)
    assert str(missing_run.value) == _command_line_error(["leaderboard", str(tmp_path)], capsys)
    with pytest.raises(SpaceError) as missing_space:
        archsearch.run("nowhere.py")
    assert str(missing_space.value) == _command_line_error(["run", "nowhere.py"], capsys)
    assert "nowhere.py" in str(missing_space.value)
    with pytest.raises(SpaceError, match="space=42: expected a Space"):
        archsearch.run(42)
    with pytest.raises(ArchsearchError, match="not a run directory"):
        archsearch.Run(tmp_path)


def test_import_archsearch_and_its_api_names_load_no_keras():
    probe = (
        "import sys, archsearch\narchsearch.run, archsearch.load_run, archsearch.Run\n"
        "print(sorted(m for m in ('keras', 'keras_tuner', 'tensorflow', 'jax') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def _pattern(n=40):
    x = (np.arange(n * 16).reshape(n, 4, 4) % 251).astype(np.uint8)
    return x, np.arange(n) % 2


def test_from_arrays_is_named_by_content_only():
    x, y = _pattern()
    first = Data.from_arrays(x, y, x[:10], y[:10], class_names=["a", "b"])
    assert Data.from_arrays(x.copy()[..., None], y.astype(np.int32), x[:10], y[:10], class_names=["a", "b"]) == first
    changed = x.copy()
    changed[3, 1, 2] += 1
    assert Data.from_arrays(changed, y, x[:10], y[:10], class_names=["a", "b"]).source != first.source
    assert Data.from_arrays(x, y, x[:10], y[:10], class_names=["a", "c"]).source != first.source


def test_from_arrays_loads_as_declared(tmp_path):
    from archsearch.data import load_data

    x, y = _pattern()
    data = Data.from_arrays(x, y, x[:10], y[:10], class_names=["even", "odd"], validation=0.25, seed=1)
    dataset = load_data(data, cache_dir=tmp_path)
    assert dataset.source == data.source and dataset.class_names == ["even", "odd"]
    assert dataset.shape == (4, 4, 1) and len(dataset.y_val) == 10 and len(dataset.y_test) == 10


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x_train=np.zeros((40, 4, 4), np.float32)), "x_train has dtype float32; expected uint8"),
        (dict(x_test=np.zeros((10, 4), np.uint8)), r"x_test has shape \(10, 4\); expected \(N, H, W\)"),
        (dict(x_test=np.zeros((10, 5, 5), np.uint8)), r"x_train images are \(4, 4, 1\) but x_test images are"),
        (dict(y_train=np.zeros(40, np.float64)), "y_train has dtype float64; expected integer class labels"),
        (dict(y_test=np.zeros(9, np.int64)), r"y_test has shape \(9,\) for 10 images in x_test"),
        (dict(y_test=np.full(10, 2)), "y_test holds labels 2 to 2; expected 0 to 1"),
        (dict(class_names="ab"), "class_names='ab': expected a list of names"),
    ],
)
def test_from_arrays_names_the_argument_at_fault(change, message):
    x, y = _pattern()
    arguments = {**dict(x_train=x, y_train=y, x_test=x[:10], y_test=y[:10], class_names=["a", "b"]), **change}
    with pytest.raises(DataError, match=f"^Data.from_arrays: {message}"):
        Data.from_arrays(**arguments)


def test_from_arrays_arrays_gone_from_the_cache_is_one_line(tmp_path, monkeypatch):
    from archsearch.data import load_data

    x, y = _pattern()
    monkeypatch.setenv("ARCHSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    data = Data.from_arrays(x, y, x[:10], y[:10])
    monkeypatch.setenv("ARCHSEARCH_CACHE_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="these arrays are no longer in the cache"):
        load_data(data)
