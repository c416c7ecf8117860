"""The JAX backend, in subprocesses (the backend is chosen at import).

The builder tests pass, and a run needs no TensorFlow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already running under JAX")
def test_builder_tests_pass_under_jax():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests" / "test_builder.py"),
            str(ROOT / "tests" / "test_architecture.py"),
            str(ROOT / "tests" / "test_training.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


# Makes `import tensorflow` fail as if it were not installed, as on the project's
# GPU machine (JAX and PyTorch with CUDA, no TensorFlow).
_WITHOUT_TENSORFLOW = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "tensorflow_datasets", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
from archsearch.cli.main import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.startswith("tensorflow")], "TensorFlow was imported"
import jax
print("compilation cache:", jax.config.jax_compilation_cache_dir)
sys.exit(code)
"""


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already running under JAX")
def test_a_run_on_jax_needs_no_tensorflow_and_exports_the_savedmodel_later(digits_npz, tmp_path):
    pytest.importorskip("jax")
    results = tmp_path / "results"
    space = tmp_path / "space.py"
    space.write_text(
        "from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice\n"
        f"space = Space(name='nojax', data=Data({str(digits_npz)!r}, validation=0.25),\n"
        "    recipe=Recipe(family=choice('vgg', 'resnet'), resolution=16, width=8, stages=1),\n"
        "    train=Train(epochs=1, batch_size=64, augment=True), search=Search(tuner='random', max_trials=2, seed=0),\n"
        "    retrain=Retrain(top_k=1, epochs=1, seeds=1))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    command = [
        sys.executable,
        "-c",
        _WITHOUT_TENSORFLOW,
        "run",
        str(space),
        "--results",
        str(results),
        "--mixed-precision",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model.keras only (a SavedModel needs TensorFlow" in result.stdout
    assert f"compilation cache: {os.environ['ARCHSEARCH_CACHE_DIR']}" in result.stdout
    assert (results / "best" / "model.keras").exists() and not (results / "best" / "saved_model").exists()
    meta = json.loads((results / "run.json").read_text())
    assert (meta["backend"], meta["precision"], meta["status"]) == ("jax", "mixed_bfloat16", "complete")
    trials = pd.read_csv(results / "trials.csv")
    assert (trials["status"] == "completed").all() and (trials["compile_seconds"] > 0).all()

    # Where TensorFlow is installed, `archsearch export` adds the SavedModel from the JAX-trained model.
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = tmp_path / "exported"
    result = subprocess.run(
        [sys.executable, "-m", "archsearch", "export", str(results), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "saved_model" / "saved_model.pb").exists()
    assert (out / "model.onnx").exists() and (out / "model.tflite").exists()  # from the JAX-trained weights


# Stops a run as its export begins (which needs TensorFlow), after the search,
# the retraining and the baselines have trained.
_UNTIL_EXPORT = """
import sys
import archsearch.output.export

def stop(*args, **kwargs):
    print("imported before the export:", sorted(m for m in sys.modules if m.partition(".")[0] == "tensorflow")[:3])
    sys.exit(0)

archsearch.output.export.export_model = stop
from archsearch.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already running under JAX")
def test_training_on_jax_imports_no_tensorflow_where_it_is_installed(digits_npz, tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("tensorflow")
    space = tmp_path / "space.py"
    space.write_text(
        "from archsearch import Data, Recipe, Retrain, Search, Space, Train\n"
        f"space = Space(name='jaxonly', data=Data({str(digits_npz)!r}, validation=0.25),\n"
        "    recipe=Recipe(family='vgg', resolution=8, width=8, stages=1), train=Train(epochs=1, batch_size=64),\n"
        "    search=Search(tuner='random', max_trials=1), retrain=Retrain(top_k=1, epochs=1, seeds=1))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", _UNTIL_EXPORT, "run", str(space), "--results", str(tmp_path / "results")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "imported before the export: []" in result.stdout, result.stdout[-3000:]


# Records the threads that copy JAX's training state into a model's variables, and the copies
# that a callback's reading of `Callback.model` made, then runs archsearch.
_STATE_SYNCS = """
import sys, threading, traceback
from keras.src.backend.jax.trainer import JAXTrainer
sync, threads, copies = JAXTrainer.jax_state_sync, set(), []

def recorded(model):
    threads.add(threading.current_thread().name)
    if getattr(model, "_jax_state", None) and not model._jax_state_synced:  # a copy, not a no-op
        stack = traceback.extract_stack()
        if any(f.name == "model" and f.filename.endswith("callback.py") for f in stack):
            copies.append(stack[-3].name)
    return sync(model)

JAXTrainer.jax_state_sync = recorded
from archsearch.cli.main import main
code = main(sys.argv[1:])
print("state synced on:", sorted(threads))
print("copies by callbacks:", sorted(set(copies)), len(copies))
sys.exit(code)
"""


@pytest.mark.parametrize("tuner", ["random", "hyperband"])
def test_on_jax_no_callback_touches_the_training_state_from_another_thread(digits_npz, tmp_path, tuner):
    # Keras runs archsearch's batch ends on threads of its own (they are async_safe). There, reading
    # `Callback.model` would copy the state mid-step, while the next step may already hold it;
    # anywhere, it copies the whole state at that step.
    pytest.importorskip("jax")
    space = tmp_path / "space.py"
    space.write_text(
        "from archsearch import Data, Recipe, Retrain, Search, Space, Train, choice\n"
        f"space = Space(name='threads', data=Data({str(digits_npz)!r}, validation=0.25),\n"
        "    recipe=Recipe(family='vgg', resolution=8, width=choice(4, 8), stages=1),\n"
        "    train=Train(epochs=2, batch_size=16),\n"
        f"    search=Search(tuner={tuner!r}, max_trials=2), retrain=Retrain(top_k=1, epochs=1, seeds=1))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", _STATE_SYNCS, "run", str(space), "--results", str(tmp_path / "results")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "state synced on: ['MainThread']" in result.stdout, result.stdout[-3000:]
    # Keras's trainer copies the state at each epoch's end; a callback reading it mid-epoch copies it
    # at that step (Keras Tuner's callback did, at every batch's begin: 108 copies here).
    assert "copies by callbacks: [] 0" in result.stdout, result.stdout[-3000:]
