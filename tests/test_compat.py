"""Every touch point in `archsearch.compat`: each test fails when its dependency changes under it.

The private names and patches are written against the versions each compat
module's `PINNED` names, which pyproject.toml pins too; a failure here says
which touch point a new version moved, before a search meets it.
"""

import importlib.metadata
import inspect
import json
import os
import re
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import keras
import keras_tuner
import pytest
from packaging.version import Version

import archsearch.compat.keras_tuner as kt_compat
from archsearch.compat import jax as jax_compat
from archsearch.compat import keras as keras_compat

ROOT = Path(__file__).resolve().parents[1]


def pins():
    """pyproject.toml's dependencies, name -> requirement text (its `"name>=..."` lines)."""
    found = re.findall(r'^\s*"([A-Za-z0-9_.-]+)([<>=!~][^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    return {name: name + requirement for name, requirement in found}


@pytest.mark.parametrize("package, module", [("keras-tuner", kt_compat), ("keras", keras_compat)])
def test_the_installed_version_is_the_one_the_compat_module_was_written_against(package, module):
    low, high = module.PINNED
    installed = Version(importlib.metadata.version(package))
    assert Version(low) <= installed < Version(high), f"{package} {installed}: {module.__name__} is for >={low},<{high}"
    assert pins()[package] == f"{package}>={low},<{high}"  # pyproject.toml pins the same range


def test_the_installed_jax_is_the_one_compat_jax_was_written_against():
    pytest.importorskip("jax")
    assert Version(importlib.metadata.version("jax")) >= Version(jax_compat.PINNED[0])


# Keras Tuner


class Quadratic(keras_tuner.Tuner):
    """A Keras Tuner tuner whose trials train nothing: a search in milliseconds."""

    def run_trial(self, trial, *args, **kwargs):
        x = trial.hyperparameters.Float("x", -1.0, 1.0)
        if kwargs.get("fail"):
            raise RuntimeError("boom in a trial")
        return {"score": -x * x}


def quadratic(tmp_path, max_trials=2):
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"), max_trials=max_trials, seed=1
    )
    return Quadratic(oracle, directory=str(tmp_path), project_name="tuner", overwrite=True)


def fresh_oracle(tmp_path, oracle_class=keras_tuner.oracles.RandomSearchOracle, **kwargs):
    hp = keras_tuner.HyperParameters()
    hp.Float("x", -1.0, 1.0)
    hyperband = issubclass(oracle_class, keras_tuner.oracles.HyperbandOracle)
    options = dict(max_epochs=2) if hyperband else dict(max_trials=3)
    oracle = oracle_class(
        objective=keras_tuner.Objective("score", "max"), seed=1, hyperparameters=hp, **{**options, **kwargs}
    )
    oracle._set_project_dir(str(tmp_path), "tuner")
    oracle.verbose = 0
    return oracle


def test_keras_tuners_own_saves_of_its_state_go_through_the_atomic_write(tmp_path, monkeypatch):
    # Keras Tuner's code, not archsearch's, writes trial.json, oracle.json and the tuner's JSON: each
    # through `utils.save_json`, which archsearch.compat.keras_tuner replaced on import.
    written = []
    atomic_file = kt_compat.atomic_file

    def spy(path, *args, **kwargs):
        written.append(Path(path))
        return atomic_file(path, *args, **kwargs)

    monkeypatch.setattr(kt_compat, "atomic_file", spy)
    quadratic(tmp_path).search(verbose=0)
    names = {path.name for path in written}
    assert {"trial.json", "oracle.json", "tuner0.json"} <= names, names
    on_disk = {p for p in (tmp_path / "tuner").rglob("*.json")}
    assert on_disk and on_disk <= set(written)  # every JSON file of Keras Tuner's state was written atomically
    for path in on_disk:
        json.loads(path.read_text())  # whole


def test_tracebacks_of_failed_trials_follow_keras_tuners_debug_switch(tmp_path, capsys):
    assert kt_compat.tracebacks_shown() is False  # archsearch's setting, made on import
    try:
        for shown in (False, True):
            kt_compat.show_tracebacks(shown)
            quadratic(tmp_path / str(shown), max_trials=1).search(fail=True, verbose=0)
            printed = capsys.readouterr()
            assert ("boom in a trial" in printed.err + printed.out) is shown
    finally:
        kt_compat.show_tracebacks(False)


def test_keras_tuners_synchronized_keeps_the_lock_on_raise_and_archsearchs_lets_go(tmp_path):
    from keras_tuner.src.engine import oracle as oracle_module

    class Raising(keras_tuner.oracles.RandomSearchOracle):
        @keras_tuner.synchronized
        def theirs(self):
            raise ValueError("raised")

        @kt_compat.synchronized
        def ours(self):
            raise ValueError("raised")

    oracle = fresh_oracle(tmp_path, Raising)
    with pytest.raises(ValueError):
        oracle.ours()
    assert not oracle_module.LOCKS[oracle].locked() and oracle_module.THREADS[oracle] is None
    with pytest.raises(ValueError):
        oracle.theirs()
    # Keras Tuner's still holds the lock after a raise (should it not, the patch can go) ...
    assert oracle_module.LOCKS[oracle].locked() and oracle_module.THREADS[oracle] == threading.current_thread().name
    # ... and records its holder in THREADS: released as archsearch's does, the oracle is usable again.
    oracle_module.THREADS[oracle] = None
    oracle_module.LOCKS[oracle].release()
    assert oracle.create_trial("tuner0").status == "RUNNING"


@pytest.mark.parametrize(
    "oracle_class",
    [
        keras_tuner.oracles.RandomSearchOracle,
        keras_tuner.oracles.BayesianOptimizationOracle,
        keras_tuner.oracles.HyperbandOracle,
    ],
)
def test_a_fresh_oracle_has_the_internals_archsearchs_oracle_relies_on(tmp_path, oracle_class):
    oracle = fresh_oracle(tmp_path, oracle_class)
    for name, kind in kt_compat.ORACLE_ATTRIBUTES.items():
        assert isinstance(getattr(oracle, name), kind), name
    assert kt_compat.retry_queue(oracle) is oracle._retry_queue


def test_the_oracle_hands_out_its_retry_queue_first_and_ends_trials_in_end_order(tmp_path):
    oracle = fresh_oracle(tmp_path)
    first = oracle.create_trial("a")
    assert oracle.ongoing_trials == {"a": first} and oracle.tuner_ids == {"a"}
    assert oracle.trials == {first.trial_id: first}
    # What a lease running out does: the trial leaves its worker for the queue, and goes to the next to ask.
    del oracle.ongoing_trials["a"]
    kt_compat.retry_queue(oracle).append(first.trial_id)
    again = oracle.create_trial("b")
    assert again.trial_id == first.trial_id and oracle.ongoing_trials == {"b": again}
    assert kt_compat.retry_queue(oracle) == []
    oracle.update_trial(again.trial_id, {"score": 0.5})
    oracle.end_trial(keras_tuner.engine.trial.Trial(again.hyperparameters, again.trial_id, "COMPLETED"))
    assert oracle.end_order == [first.trial_id] and oracle.ongoing_trials == {}
    kt_compat.set_retry_queue(oracle, ("7",))
    assert oracle._retry_queue == ["7"]


def test_a_reloaded_oracle_queues_the_trials_that_were_running(tmp_path):
    oracle = fresh_oracle(tmp_path)
    running = oracle.create_trial("a")
    oracle.save()
    reloaded = fresh_oracle(tmp_path)
    reloaded.reload()
    assert kt_compat.retry_queue(reloaded) == [running.trial_id] and reloaded.ongoing_trials == {}


@pytest.mark.parametrize(
    "oracle_class",
    [
        keras_tuner.oracles.RandomSearchOracle,
        keras_tuner.oracles.BayesianOptimizationOracle,
        keras_tuner.oracles.HyperbandOracle,
    ],
)
def test_every_oracle_draws_fresh_values_through_random_values_which_given_values_replace(tmp_path, oracle_class):
    class Given(kt_compat.GivenValuesFirst, oracle_class):
        given = [{"x": 0.25}]

        def given_values(self):
            return self.given.pop(0) if self.given else None

    oracle, plain = fresh_oracle(tmp_path / "given", Given), fresh_oracle(tmp_path / "plain", oracle_class)
    first = oracle.create_trial("a")
    assert first.status == "RUNNING" and first.hyperparameters.values["x"] == 0.25
    if oracle_class is keras_tuner.oracles.HyperbandOracle:  # with its schedule, as for values it draws
        assert {"tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round"} <= set(
            first.hyperparameters.values
        )
    assert oracle._duplicate(first.hyperparameters.values)  # recorded as tried: no draw repeats them
    # Then the oracle draws, from the random state it started with: as a plain one's first draw.
    assert oracle.create_trial("b").hyperparameters.values == plain.create_trial("b").hyperparameters.values


def test_trial_ids_are_padded_to_the_width_of_max_trials_read_at_every_create_trial(tmp_path):
    oracle = fresh_oracle(tmp_path, max_trials=100)
    assert oracle.create_trial("a").trial_id == "000"
    oracle.max_trials = 5
    assert oracle.create_trial("b").trial_id == "1"
    oracle.max_trials = len(oracle.trials)
    assert oracle.create_trial("c").status == "STOPPED"


def test_run_trial_adds_keras_tuners_own_callback_and_prepares_callbacks_as_compat_does(tmp_path, monkeypatch):
    tuner = quadratic(tmp_path)
    trial = tuner.oracle.create_trial("tuner0")
    seen = []
    monkeypatch.setattr(tuner, "_build_and_fit_model", lambda trial, *a, callbacks, **k: seen.append(callbacks) or 0.0)
    ours = keras.callbacks.Callback()
    keras_tuner.Tuner.run_trial(tuner, trial, callbacks=[ours])
    kinds = [type(c) for c in seen[0]]
    assert kt_compat.TunerCallback in kinds  # the exact class `with_tuner_reports` replaces
    prepared = kt_compat.run_trial_callbacks(tuner, trial, [ours])
    assert [type(c) for c in prepared] == [keras.callbacks.Callback, kt_compat.TunerCallback]
    assert prepared[0] is not ours and prepared[1].tuner is tuner and prepared[1].trial is trial
    # The private methods it calls, with the arguments it gives them.
    assert list(inspect.signature(keras_tuner.Tuner._deepcopy_callbacks).parameters) == ["self", "callbacks"]
    assert list(inspect.signature(keras_tuner.Tuner._configure_tensorboard_dir).parameters) == [
        "self",
        "callbacks",
        "trial",
        "execution",
    ]
    source = inspect.getsource(keras_tuner.Tuner.run_trial)
    assert "_deepcopy_callbacks" in source and "_configure_tensorboard_dir" in source
    # `build_and_fit` and `ReportsWithoutModel` call and override the method every training goes through.
    assert list(inspect.signature(keras_tuner.Tuner._build_and_fit_model).parameters) == [
        "self",
        "trial",
        "args",
        "kwargs",
    ]
    assert "_build_and_fit_model" in inspect.getsource(keras_tuner.Tuner.run_trial)


def test_a_tuner_finds_its_space_by_building_the_default_model_unless_the_space_is_declared(tmp_path):
    class Declared(keras_tuner.HyperModel):
        def declare_hyperparameters(self, hp):
            hp.Float("x", -1.0, 1.0)

        def build(self, hp):
            raise ValueError("the default point cannot be built")

    def tuner(tuner_class, name):
        oracle = keras_tuner.oracles.RandomSearchOracle(objective=keras_tuner.Objective("score", "max"), max_trials=1)
        return tuner_class(oracle, Declared(), directory=str(tmp_path), project_name=name, overwrite=True)

    with pytest.raises(ValueError, match="the default point cannot be built"):  # Keras Tuner's own builds it
        tuner(keras_tuner.Tuner, "theirs")

    class Tuner(kt_compat.DeclaredSpace, keras_tuner.Tuner):
        pass

    declared = tuner(Tuner, "ours")
    assert [hp.name for hp in declared.oracle.get_space().space] == ["x"]
    # What the mixin replaces: the space's population, which __init__ calls unless it reloads.
    source = inspect.getsource(keras_tuner.Tuner._populate_initial_space)
    assert "declare_hyperparameters" in source and "update_space" in source and "_activate_all_conditions" in source
    assert "self._populate_initial_space()" in inspect.getsource(keras_tuner.engine.base_tuner.BaseTuner.__init__)


def test_tuner_reports_replace_keras_tuners_callback_and_pass_no_model():
    calls = []

    class Recorder:
        def __getattr__(self, hook):
            return lambda *args, **kwargs: calls.append((hook, args))

    original = kt_compat.TunerCallback(Recorder(), "trial")
    assert issubclass(kt_compat.TunerCallback, keras.callbacks.Callback)
    assert {"on_epoch_begin", "on_batch_begin", "on_batch_end", "on_epoch_end"} <= set(vars(kt_compat.TunerCallback))
    other = keras.callbacks.Callback()
    replaced, kept = kt_compat.with_tuner_reports([original, other])
    assert type(replaced) is kt_compat.TunerReports and kept is other and replaced.async_safe
    replaced.on_batch_begin(3, {"loss": 1.0})
    replaced.on_batch_end(3, {"loss": 1.0})
    logs = {"loss": 1.0}
    assert calls == [("on_batch_begin", ("trial", None, 3, logs)), ("on_batch_end", ("trial", None, 3, logs))]


def test_keras_tuners_servicer_serves_an_oracle_over_grpc(tmp_path):
    import grpc
    from keras_tuner.src import protos

    oracle = fresh_oracle(tmp_path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    servicer = kt_compat.serve_oracle(server, oracle)
    assert servicer.stop_triggered is False
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = protos.get_service_grpc().OracleStub(channel)
            response = stub.GetSpace(protos.get_service().GetSpaceRequest(), timeout=30)
        assert [hp.name for hp in keras_tuner.HyperParameters.from_proto(response.hyperparameters).space] == ["x"]
    finally:
        server.stop(grace=None)


def test_keras_tuners_client_reads_its_timeout_at_every_call():
    from keras_tuner.src.distribute import oracle_client

    before = oracle_client.TIMEOUT
    try:
        kt_compat.set_client_timeout(5.0)
        assert oracle_client.TIMEOUT == 5.0
    finally:
        oracle_client.TIMEOUT = before
    for name in ("get_space", "update_space", "create_trial", "update_trial", "end_trial", "get_trial"):
        assert "TIMEOUT" in getattr(oracle_client.OracleClient, name).__code__.co_names, name


# Keras


def test_without_tensorflow_makes_keras_read_tensorflow_as_not_available():
    from keras.src.utils import module_utils, rng_utils

    handle = module_utils.tensorflow
    before = handle._available
    with keras_compat.without_tensorflow():
        assert handle.available is False
    assert handle._available == before
    # Keras's seeding asks that handle whether to seed TensorFlow.
    assert rng_utils.tf is handle and "tf.available" in inspect.getsource(rng_utils.set_random_seed)


def test_keras_dispatches_batch_ends_of_async_safe_callbacks_to_its_threads(monkeypatch):
    from keras.src import backend
    from keras.src.callbacks.callback_list import CallbackList

    class Hooked(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    class Safe(Hooked):
        async_safe = True

    monkeypatch.setattr(backend, "IS_THREAD_SAFE", True)  # as on JAX, PyTorch and NumPy
    assert CallbackList([Safe()])._async_train is True
    assert CallbackList([Hooked()])._async_train is False


# JAX

_JAX_BACKENDS = """
import sys
from archsearch.compat.jax import backends_may_be_running
print(backends_may_be_running())
import jax
print(type(sys.modules["jax._src.xla_bridge"].backends_are_initialized).__name__, backends_may_be_running())
jax.devices()
print(backends_may_be_running())
"""


def test_jax_says_whether_its_backends_run_without_being_imported():
    pytest.importorskip("jax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _JAX_BACKENDS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "function", "False", "True"]


def test_every_call_of_keras_tuners_oracle_servicer_takes_turns():
    from keras_tuner.src import protos

    from archsearch.compat.keras_tuner import ORACLE_CALLS

    servicer = protos.get_service_grpc().OracleServicer
    assert {name for name in dir(servicer) if name[0].isupper()} == set(ORACLE_CALLS)
