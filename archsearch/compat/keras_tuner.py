"""Keras Tuner's private names that archsearch uses, and its patches of Keras Tuner, in one place.

Written against keras-tuner 1.4.7 and 1.4.8 (`PINNED`, as in pyproject.toml);
`tests/test_compat.py` checks each touch point and fails when Keras Tuner
changes under one. Imported by `archsearch.search`, and by the command line
for `--debug` (it imports Keras Tuner, hence Keras); importing it applies the two settings of Keras Tuner
below (`save_json` through `archsearch.files.atomic_file`, tracebacks off).

The oracle's internals that `archsearch.search.oracle` reads and writes, as
attributes of every Keras Tuner oracle (`ORACLE_ATTRIBUTES`, their types on a
fresh oracle): `trials` (trial id -> Trial), `ongoing_trials` (tuner id ->
its running Trial), `end_order` (ids of ended trials), `tuner_ids` (the
tuners still asking) and the retry queue (`retry_queue()`, the ids
`create_trial` hands out before sampling, last first). Keras Tuner reads
`max_trials` at every `create_trial`, both to stop and as the width its trial
ids are padded to (`len(str(max_trials))`): the budget policy sets it to fix
that width. A new trial's values, where Keras Tuner draws them fresh, come
from `Oracle._random_values()` in each of those oracles: `GivenValuesFirst`
hands out given values there first.
"""

import functools
import json
import threading

import keras_tuner
import keras_tuner.src.config
import keras_tuner.src.utils
from keras_tuner.src.engine import oracle as _oracle_module
from keras_tuner.src.engine import tuner_utils

from archsearch.files import atomic_file

PINNED = ("1.4.7", "1.5")  # the versions this module was written against: at least the first, under the second
ORACLE_ATTRIBUTES = {"trials": dict, "ongoing_trials": dict, "end_order": list, "tuner_ids": set, "_retry_queue": list}

# Keras Tuner's own Callback to the tuner, which `Tuner.run_trial` adds to every training.
TunerCallback = tuner_utils.TunerCallback


def show_tracebacks(shown):
    """Whether Keras Tuner prints every failed trial's traceback (`keras_tuner.src.config.DEBUG`).

    Its default prints them; archsearch turns them off (the reasons are in
    trials.csv), and `archsearch --debug` back on.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    keras_tuner.src.config.DEBUG = shown


def tracebacks_shown():
    """Whether Keras Tuner prints failed trials' tracebacks (see `show_tracebacks`).

    Written against keras-tuner 1.4.7-1.4.8.
    """
    return keras_tuner.src.config.DEBUG


def save_json_atomically(path, obj):
    """Keras Tuner's `utils.save_json` through a temporary file and a rename.

    Its own truncates, then writes: a kill in between left an empty
    `trial.json` that stopped `--resume` with a JSONDecodeError
    (found by `benchmarks/random_kills.py`). Every save of Keras Tuner's state
    (trial.json, oracle.json, the tuner's JSON) calls `utils.save_json`
    through its module, so replacing it there replaces it for all of them.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    text = json.dumps(obj)
    with atomic_file(path) as file:
        file.write(text)
    return text


def synchronized(method):
    """Keras Tuner's `keras_tuner.synchronized`, letting go of the oracle's lock when `method` raises.

    Keras Tuner's releases the lock (its module's `LOCKS`, with the holder's
    thread name in `THREADS`) only on return: after an exception in the
    chief's oracle, every later call from every worker would hang.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    locked = keras_tuner.synchronized(method)

    @functools.wraps(method)
    def wrapper(oracle, *args, **kwargs):
        try:
            return locked(oracle, *args, **kwargs)
        except BaseException:
            if _oracle_module.THREADS[oracle] == threading.current_thread().name:
                _oracle_module.THREADS[oracle] = None
                _oracle_module.LOCKS[oracle].release()
            raise

    return wrapper


def retry_queue(oracle):
    """The oracle's queue of trial ids to hand out again (`Oracle._retry_queue`), itself: changes to it count.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    return oracle._retry_queue


def set_retry_queue(oracle, trial_ids):
    """Replaces the oracle's queue of trial ids to hand out again.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    oracle._retry_queue = list(trial_ids)


class GivenValuesFirst:
    """A mixin of a Keras Tuner oracle: its fresh values are those `given_values()` returns, while it returns any.

    Every Keras Tuner oracle archsearch uses draws a new trial's values with
    `Oracle._random_values()` (keras-tuner 1.4.7-1.4.8), a dict from each
    active hyperparameter's name to its value: random search for every
    trial, Bayesian optimization for its initial points (its Gaussian process
    takes over once `num_initial_points` trials completed: its oracle in
    `archsearch.search.oracle` holds it back while values are given), and
    Hyperband for the first round of every bracket, to which it adds its
    schedule (`tuner/epochs`, `tuner/round`, ...). Given values take the place
    of a draw there: the oracle records them as tried, as it does drawn ones,
    so no later draw repeats them, and its random state is not advanced.

    `given_values()` (the mixin's own: `None`) is called under the oracle's
    lock, from `create_trial`.

    Written against keras-tuner 1.4.7-1.4.8.
    """

    def given_values(self):
        """Returns the values of the next trial (a dict from hyperparameter name to value), or `None` to draw them."""
        return None

    def _random_values(self):
        values = self.given_values()
        return super()._random_values() if values is None else dict(values)


def run_trial_callbacks(tuner, trial, callbacks):
    """The callbacks of a trial's training, prepared as Keras Tuner's `Tuner.run_trial` prepares them.

    A deep copy of `callbacks` (`Tuner._deepcopy_callbacks`), a TensorBoard
    callback's log directory made the trial's, with its hyperparameters
    (`Tuner._configure_tensorboard_dir`, on TensorFlow only), and Keras
    Tuner's `TunerCallback`; without `run_trial`'s checkpoint of the best epoch.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    callbacks = tuner._deepcopy_callbacks(callbacks)
    tuner._configure_tensorboard_dir(callbacks, trial)
    callbacks.append(TunerCallback(tuner, trial))
    return callbacks


class TunerReports(TunerCallback):
    """Keras Tuner's callback to the tuner, with batch hooks that pass no model.

    Keras Tuner's passes `self.model` to the tuner at every batch's begin and
    end. On JAX, reading `Callback.model` copies the whole training state
    into the model's variables: at every step, host time; and from the
    thread Keras may run a batch end on (`async_safe`), mid-step, that state
    may already be given to the next step, and training fails ("Buffer has
    been deleted or donated"). The tuner's batch hooks only report now and
    then that the trial lives, and take no model here.

    Written against keras-tuner 1.4.7-1.4.8.
    """

    async_safe = True

    def on_batch_begin(self, batch, logs=None):
        self.tuner.on_batch_begin(self.trial, None, batch, logs)

    def on_batch_end(self, batch, logs=None):
        self.tuner.on_batch_end(self.trial, None, batch, logs)


def with_tuner_reports(callbacks):
    """`callbacks`, with Keras Tuner's own `TunerCallback` (not a subclass) made a `TunerReports`.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    return [TunerReports(c.tuner, c.trial) if type(c) is TunerCallback else c for c in callbacks]


def build_and_fit(tuner, trial, *args, **kwargs):
    """Builds and trains a trial's model as `run_trial` does once its callbacks are ready.

    `Tuner._build_and_fit_model(trial, *args, **kwargs)` (keras-tuner 1.4.7-1.4.8):
    archsearch's tuners run trials without `run_trial`'s checkpoint of every epoch.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    return tuner._build_and_fit_model(trial, *args, **kwargs)


class ReportsWithoutModel:
    """A mixin of a Keras Tuner tuner: its callback in every trial's training becomes a `TunerReports`.

    Overrides `Tuner._build_and_fit_model` (keras-tuner 1.4.7-1.4.8), which
    every trial's training goes through, whether `run_trial` is Keras Tuner's
    own (Hyperband) or not (`build_and_fit`).

    Written against keras-tuner 1.4.7-1.4.8.
    """

    def _build_and_fit_model(self, trial, *args, **kwargs):
        callbacks = with_tuner_reports(kwargs.pop("callbacks", []))
        return super()._build_and_fit_model(trial, *args, callbacks=callbacks, **kwargs)


class DeclaredSpace:
    """A mixin of a Keras Tuner tuner: its hypermodel declares the search space, and no model is built to find it.

    Unless it reloads, `BaseTuner.__init__` calls `_populate_initial_space()`
    (keras-tuner 1.4.7-1.4.8), which lets the hypermodel declare its
    hyperparameters, then builds its model at their defaults until every
    conditional scope was active (`_activate_all_conditions`). archsearch's
    hyperparameters have no conditions and its hypermodel declares them all:
    the build found nothing, took a large default's time, and raised where
    the default point is infeasible (a preset's ResNet narrowed below its
    stem's width), so that such a space could not be searched at all.

    Written against keras-tuner 1.4.7-1.4.8.
    """

    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)


ORACLE_CALLS = ("CreateTrial", "EndTrial", "GetBestTrials", "GetSpace", "GetTrial", "UpdateSpace", "UpdateTrial")


def serve_oracle(server, oracle):
    """Adds Keras Tuner's gRPC servicer of `oracle` to a `grpc.server`; returns the servicer.

    The servicer's `stop_triggered` turns true once it has told a worker that
    the search is over. Its calls (`ORACLE_CALLS`) take turns, as on Keras
    Tuner's own server of one thread: the oracle locks only some of its
    methods, and the server that archsearch's chief shares with its
    retraining has several. Imports gRPC's generated code only when called.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    turns = threading.Lock()
    for name in ORACLE_CALLS:
        setattr(servicer, name, _taking_turns(getattr(servicer, name), turns))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    return servicer


def _taking_turns(call, lock):
    @functools.wraps(call)
    def wrapper(*args, **kwargs):
        with lock:
            return call(*args, **kwargs)

    return wrapper


def set_client_timeout(seconds):
    """How long a worker's Keras Tuner client waits for each answer of the chief (its own: an hour).

    `oracle_client.TIMEOUT`, read at every call.

    Written against keras-tuner 1.4.7-1.4.8.
    """
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


# Applied on import, before archsearch builds any oracle or tuner (keras-tuner 1.4.7-1.4.8):
keras_tuner.src.utils.save_json = save_json_atomically  # atomic state files (see save_json_atomically)
show_tracebacks(False)  # failed trials' reasons go to trials.csv, not tracebacks to the terminal
