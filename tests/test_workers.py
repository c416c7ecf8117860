"""A search on several workers: Keras Tuner's chief/worker engine, and what befalls it.

Every process a test starts (chief, workers, and the workers a chief starts)
is ended by its process id when the test ends, and every wait is bounded.
Leases and the workers' patience are cut to seconds through their
environment variables.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pandas as pd
import pytest
from keras_tuner.engine.trial import Trial

from archsearch.cli.main import main
from archsearch.pipeline.runner import apply_overrides, run
from archsearch.recipe.space import load_space
from archsearch.search import distributed
from archsearch.search.leases import ALIVE, EPOCH_REPORT
from archsearch.search.oracle import FAILURE, RandomSearchOracle
from archsearch.search.retraining import CHUNK_BYTES, Unit, Units, UnitsClient, add_service
from archsearch.search.supervisor import MAX_RESTARTS, Workers

ROOT = Path(__file__).resolve().parents[1]
# A lease floor over a trial's first step (compiling) on a busy machine: shorter, and the chief
# takes workers that compile for lost ones.
FAST = {"ARCHSEARCH_LEASE_FLOOR": "8", "ARCHSEARCH_CHIEF_TIMEOUT": "10", "PYTHONUNBUFFERED": "1"}
BOUND = 240  # seconds any wait for a process may take
# Trials of 20 short epochs: a few seconds of training, to be killed in the middle of.
TRIALS = dict(epochs=20, resolution=8, stages=1, batch_size=32)
LIGHT = ["--seeds", "1", "--retrain-epochs", "1"]  # the chief's retraining, after the search, kept short


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """Starts archsearch commands with their output in files; ends them all, by process id, at the end."""

    def __init__(self, tmp_path):
        self.tmp_path, self.started, self.count = tmp_path, [], 0

    def start(self, *argv, host=None, env=None):
        """Starts `archsearch *argv`; in the network namespace `host` where given (`ip netns exec`, which execs it)."""
        self.count += 1
        log = self.tmp_path / f"{self.count}-{argv[0]}.log"
        with open(log, "w") as output:
            process = subprocess.Popen(
                [*(["ip", "netns", "exec", host] if host else []), sys.executable, "-m", "archsearch", *argv],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **FAST, **(env or {})},
            )
        process.log = log
        self.started.append(process)
        return process

    def end(self):
        pids = {p.pid for p in self.started}
        for process in self.started:  # and the workers that chiefs started, which they name
            pids |= {int(pid) for pid in re.findall(r"started \(pid (\d+)", output(process))}
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for process in self.started:
            process.wait(timeout=30)


@pytest.fixture
def processes(tmp_path):
    started = Processes(tmp_path)
    yield started
    started.end()


def output(process):
    return process.log.read_text()


def exit_status(process, timeout=BOUND):
    return process.wait(timeout=timeout)


def worker_of(process, trial_id):
    found = re.findall(rf"^trial {trial_id} started on (\S+)", output(process), re.MULTILINE)
    return found[-1] if found else None


def epochs_reported(results, trial_id):
    path = results / "history.csv"
    if not path.exists():
        return 0
    history = pd.read_csv(path, dtype={"trial_id": str})
    return int(((history["trial_id"] == trial_id) & (history["phase"] == "search")).sum())


def completions(*chiefs):
    """The ids of the trials each chief's output reports as ended, in order."""
    return [m for chief in chiefs for m in re.findall(r"^trial \d+/\d+ \[(\d+)\]", output(chief), re.MULTILINE)]


def trials(results):
    return pd.read_csv(results / "trials.csv", dtype={"trial_id": str})


def mid_trial(chief, results, worker):
    """A trial that `worker` has trained at least one epoch of, and has not finished; or None."""
    for trial_id in re.findall(rf"^trial (\d+) started on {worker}$", output(chief), re.MULTILINE):
        if epochs_reported(results, trial_id) and trial_id not in completions(chief):
            return trial_id
    return None


def mid_unit(chief, worker, said):
    """A unit `worker` trained an epoch of (it `said()` so) and has no result of yet; or None."""
    for name in re.findall(rf"^(retrain \[\d+\] seed \d+): started on {worker}$", output(chief), re.MULTILINE):
        if f"{worker} {name}: epoch 1/" in said() and f"{name}: test" not in output(chief):
            return name
    return None


def retrain_epochs(results, trial_id):
    """The epochs history.csv holds of each seed's retraining of a trial."""
    history = pd.read_csv(results / "history.csv", dtype={"trial_id": str})
    retrained = history[(history["phase"] == "retrain") & (history["trial_id"] == trial_id)]
    return {int(seed): sorted(rows["epoch"]) for seed, rows in retrained.groupby("seed")}


def test_two_workers_on_this_machine_search_and_retrain_as_one_process(processes, digits_npz, tmp_path, space_file):
    space, results = space_file(tmp_path, digits_npz, **{**TRIALS, "epochs": 3}), tmp_path / "out"
    spread = ["--seeds", "2", "--retrain-epochs", "1"]  # two seeds: one for each worker
    chief = processes.start("run", str(space), "--results", str(results), *spread, "--workers", "2")
    assert exit_status(chief) == 0, output(chief)
    searched = trials(results)
    assert len(searched) == 4 and searched["trial_id"].is_unique and (searched["status"] == "completed").all()
    assert set(searched["worker"]) == {"worker0", "worker1"}
    for name in (
        "leaderboard.csv",
        "history.csv",
        "report.html",
        "best/model.keras",
        "best/saved_model/saved_model.pb",
    ):
        assert (results / name).exists(), name
    meta = json.loads((results / "run.json").read_text())
    assert meta["status"] == "complete" and meta["workers"] == 2
    assert sorted(completions(chief)) == ["00", "01", "02", "03"]

    # The retraining's seeds went one to each worker, which each record names; the chief retrained none.
    board = pd.read_csv(results / "leaderboard.csv", dtype={"trial_id": str})
    best = board.iloc[0]
    assert sorted(best["workers"].split()) == ["worker0", "worker1"]
    for seed, worker in enumerate(best["workers"].split()):
        record = json.loads((results / "retrain" / f"trial_{best['trial_id']}_seed{seed}.json").read_text())
        assert record["worker"] == worker
        assert f"retrain [{best['trial_id']}] seed {seed}: started on {worker}" in output(chief)
    history = pd.read_csv(results / "history.csv", dtype={"trial_id": str})
    assert len(history[history["phase"] == "retrain"]) == 2  # one epoch per seed, each once

    # Trials are seeded by their id, and retrainings by their seed, wherever they run: one process trains the same.
    alone = tmp_path / "alone"
    run(apply_overrides(load_space(space), seeds=2, retrain_epochs=1), alone, log=lambda line: None)
    columns = ["trial_id", "family", "width", "val_accuracy", "val_balanced_error_rate"]
    pd.testing.assert_frame_equal(trials(alone)[columns], searched[columns])
    alone_board = pd.read_csv(alone / "leaderboard.csv", dtype={"trial_id": str})
    assert "workers" not in alone_board  # a run in one process has no such column
    figures = ["trial_id", "test_accuracy", "test_accuracy_std", "test_balanced_error_rate"]
    pd.testing.assert_frame_equal(alone_board[figures], board[figures])


def test_a_worker_killed_mid_trial_or_mid_retraining_is_restarted_and_gets_its_work_back(
    processes, digits_npz, tmp_path, space_file, wait_for
):
    space, results = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out"
    # A lease longer than a restart takes on a busy machine (Python and TensorFlow start again): with the
    # 8 s floor, the other worker could take the trial first, as it should once a lease runs out.
    chief = processes.start(
        "run",
        str(space),
        "--results",
        str(results),
        *["--seeds", "2", "--retrain-epochs", "20"],  # retrainings long enough to be killed in the middle of
        *["--workers", "2"],
        env={"ARCHSEARCH_LEASE_FLOOR": "90"},
    )

    def kill(worker):
        os.kill(int(re.findall(rf"{worker} started \(pid (\d+)", output(chief))[-1]), signal.SIGKILL)

    wait_for(lambda: mid_trial(chief, results, "worker0"))
    trial_id = mid_trial(chief, results, "worker0")
    kill("worker0")
    said = lambda: (results / "workers" / "worker1.log").read_text()  # noqa: E731
    wait_for(lambda: mid_unit(chief, "worker1", said))
    unit = mid_unit(chief, "worker1", said)
    kill("worker1")
    assert exit_status(chief) == 0, output(chief)
    assert "worker0 was killed by SIGKILL; restarting it (1 of 3)" in output(chief)
    assert f"trial {trial_id} started on worker0 again (it was restarted)" in output(chief)
    searched = trials(results)
    assert len(searched) == 4 and (searched["status"] == "completed").all()
    assert sorted(completions(chief)) == ["00", "01", "02", "03"]

    assert "worker1 was killed by SIGKILL; restarting it (1 of 3)" in output(chief)
    assert f"{unit}: started on worker1 again (it was restarted)" in output(chief)
    best = pd.read_csv(results / "leaderboard.csv", dtype={"trial_id": str}).iloc[0]
    assert best["seeds"] == 2 and len(best["workers"].split()) == 2
    # Each seed's 20 epochs are in history.csv once: the restarted worker's, which replace the killed one's.
    assert retrain_epochs(results, best["trial_id"]) == {0: list(range(1, 21)), 1: list(range(1, 21))}


def test_a_worker_killed_mid_trial_and_not_restarted_loses_no_trial(
    processes, digits_npz, tmp_path, space_file, wait_for
):
    space, results, port = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out", free_port()
    chief = processes.start("run", str(space), "--results", str(results), *LIGHT, "--chief", f"127.0.0.1:{port}")
    workers = [processes.start("worker", str(space), "--chief", f"127.0.0.1:{port}", "--id", f"w{i}") for i in range(2)]
    wait_for(lambda: mid_trial(chief, results, "w0"))
    trial_id = mid_trial(chief, results, "w0")
    workers[0].send_signal(signal.SIGKILL)
    assert exit_status(chief) == 0, output(chief)
    assert exit_status(workers[1]) == 0, output(workers[1])
    assert re.search(
        rf"trial {trial_id}: no report from w0 for \d+ s \(its lease: \d+ s\); handed to the next worker", output(chief)
    )
    searched = trials(results).set_index("trial_id")
    assert len(searched) == 4 and (searched["status"] == "completed").all()
    assert searched.loc[trial_id, "worker"] == "w1"
    assert sorted(completions(chief)) == ["00", "01", "02", "03"]  # each trial ended once: none lost, none twice


def test_a_worker_lost_mid_retraining_and_not_restarted_gives_its_unit_to_the_other(
    processes, digits_npz, tmp_path, space_file, wait_for
):
    space, results, port = space_file(tmp_path, digits_npz, **{**TRIALS, "epochs": 2}), tmp_path / "out", free_port()
    chief = processes.start(
        "run",
        str(space),
        "--results",
        str(results),
        *["--max-trials", "2", "--seeds", "2", "--retrain-epochs", "20", "--chief", f"127.0.0.1:{port}"],
    )
    workers = [processes.start("worker", str(space), "--chief", f"127.0.0.1:{port}", "--id", f"w{i}") for i in range(2)]
    wait_for(lambda: mid_unit(chief, "w0", lambda: output(workers[0])))
    unit = mid_unit(chief, "w0", lambda: output(workers[0]))
    workers[0].send_signal(signal.SIGKILL)
    assert exit_status(chief) == 0, output(chief)
    assert exit_status(workers[1]) == 0, output(workers[1])
    assert re.search(
        rf"{re.escape(unit)}: no report from w0 for \d+ s \(its lease: \d+ s\); handed to the next", output(chief)
    )
    assert f"{unit}: started on w1" in output(chief)
    best = pd.read_csv(results / "leaderboard.csv", dtype={"trial_id": str}).iloc[0]
    seed = int(unit.split()[-1])
    assert best["seeds"] == 2 and best["workers"].split()[seed] == "w1"
    assert json.loads((results / "retrain" / f"trial_{best['trial_id']}_seed{seed}.json").read_text())["worker"] == "w1"
    assert retrain_epochs(results, best["trial_id"]) == {0: list(range(1, 21)), 1: list(range(1, 21))}


def test_when_every_worker_is_killed_the_chief_stops_with_its_reason(
    processes, digits_npz, tmp_path, space_file, wait_for
):
    space, results, port = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out", free_port()
    chief = processes.start("run", str(space), "--results", str(results), *LIGHT, "--chief", f"127.0.0.1:{port}")
    workers = [processes.start("worker", str(space), "--chief", f"127.0.0.1:{port}", "--id", f"w{i}") for i in range(2)]
    wait_for(lambda: mid_trial(chief, results, "w0") and mid_trial(chief, results, "w1"))
    for worker in workers:
        worker.send_signal(signal.SIGKILL)
    assert exit_status(chief, timeout=60) == 2
    silent = re.search(r"archsearch: error: every worker is gone \(no worker has called for (\d+) s\)", output(chief))
    assert silent and int(silent.group(1)) >= float(FAST["ARCHSEARCH_LEASE_FLOOR"])  # it waited out the lease floor
    assert json.loads((results / "run.json").read_text())["status"] == "stopped"


def gone(pid):
    """Whether a process has ended (a zombie that no one has reaped yet has)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_when_the_chief_is_killed_workers_stop_and_resume_trains_no_trial_twice(
    processes, digits_npz, tmp_path, space_file, wait_for
):
    space, results, port = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out", free_port()
    # One worker that the chief starts, and one started elsewhere, as on another machine.
    chief = processes.start(
        "run", str(space), "--results", str(results), *LIGHT, "--chief", f"127.0.0.1:{port}", "--workers", "1"
    )
    elsewhere = processes.start("worker", str(space), "--chief", f"127.0.0.1:{port}", "--id", "w1")
    wait_for(lambda: completions(chief) and (mid_trial(chief, results, "worker0") or mid_trial(chief, results, "w1")))
    chief.send_signal(signal.SIGKILL)
    pid = int(re.findall(r"worker0 started \(pid (\d+)", output(chief))[-1])
    # It watches the chief that started it, if its call to it does not fail first.
    wait_for(lambda: gone(pid), timeout=10)
    said = (results / "workers" / "worker0.log").read_text()
    assert f"the process that started this worker (pid {chief.pid}) is gone" in said or "lost the chief" in said
    assert exit_status(elsewhere, timeout=60) == 2  # it gave up waiting for answers
    assert f"archsearch: error: lost the chief at 127.0.0.1:{port}" in output(elsewhere)
    finished = trials(results)
    finished = finished[finished["status"] == "completed"]["trial_id"]
    stamps = {t: (results / "tuner" / f"trial_{t}" / "trial.json").stat().st_mtime_ns for t in finished}

    resumed = processes.start("run", str(space), "--results", str(results), *LIGHT, "--resume", "--workers", "2")
    assert exit_status(resumed) == 0, output(resumed)
    searched = trials(results)
    assert len(searched) == 4 and (searched["status"] == "completed").all()
    assert sorted(completions(chief, resumed)) == ["00", "01", "02", "03"]  # each trial ended once over both sessions
    for trial_id, stamp in stamps.items():  # trials that had ended were not trained again
        assert (results / "tuner" / f"trial_{trial_id}" / "trial.json").stat().st_mtime_ns == stamp


def test_a_second_chief_on_the_same_port_fails_clearly(digits_npz, tmp_path, capsys, space_file):
    first = distributed.Chief("127.0.0.1", 0)
    try:
        code = main(
            [
                "run",
                str(space_file(tmp_path, digits_npz, **TRIALS)),
                "--results",
                str(tmp_path / "second"),
                "--chief",
                f"127.0.0.1:{first.port}",
            ]
        )
    finally:
        first.server.stop(grace=None)
    assert code == 2
    assert f"archsearch: error: cannot listen on 127.0.0.1:{first.port}: the port is in use" in capsys.readouterr().err
    assert not (tmp_path / "second").exists()


def chiefs_oracle(tmp_path, budget, **options):
    """A chief's oracle (lease floor 5 s) on a space of four widths, without a tuner."""
    hp = keras_tuner.HyperParameters()
    hp.Choice("width", [4, 8, 16, 32])
    oracle = RandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=budget,
        seed=1,
        hyperparameters=hp,
        budget=budget,
        lease_floor=5.0,
        **options,
    )
    oracle._set_project_dir(str(tmp_path), "tuner")
    oracle.verbose = 0
    return oracle


def test_a_silent_workers_trial_goes_to_the_next_after_a_lease_derived_from_its_epochs(tmp_path):
    oracle = chiefs_oracle(tmp_path, budget=2)
    lines = []
    oracle.log = lines.append
    first = oracle.create_trial("a")
    assert oracle.lease(first.trial_id) == 5.0  # no epoch yet: the floor
    oracle.update_trial(first.trial_id, dict(zip(EPOCH_REPORT, (1, 2.3, 0.1, 4.0))), step=1)
    assert oracle.lease(first.trial_id) == 12.0  # three times its longest epoch
    second = oracle.create_trial("b")
    oracle.update_trial(second.trial_id, {"val_accuracy": 0.4}, step=1)
    oracle.end_trial(Trial(second.hyperparameters, second.trial_id, "COMPLETED"))
    assert oracle.create_trial("b").status == "IDLE"  # the budget is handed out, but "a" may yet be lost

    oracle.heard[first.trial_id] -= 13
    oracle.update_trial(first.trial_id, {ALIVE: 1.0})  # a sign of life within a long epoch
    assert oracle.create_trial("b").status == "IDLE"
    oracle.heard[first.trial_id] -= 13  # "a" has said nothing for longer than its lease
    again = oracle.create_trial("b")
    assert again.trial_id == first.trial_id and oracle.workers[first.trial_id] == "b"
    assert f"trial {first.trial_id}: no report from a for 13 s (its lease: 12 s); handed to the next worker" in lines
    oracle.update_trial(first.trial_id, {"val_accuracy": 0.5}, step=1)
    oracle.end_trial(Trial(again.hyperparameters, first.trial_id, "COMPLETED"))
    late = Trial(first.hyperparameters, first.trial_id, "FAILED", message="late")
    oracle.end_trial(late)  # "a" was only slow: its result comes second
    assert oracle.trials[first.trial_id].status == "COMPLETED" and oracle.end_order == [second.trial_id, first.trial_id]
    assert oracle.create_trial("b").status == "STOPPED"


def test_retraining_units_are_leased_as_trials_are_and_the_first_result_of_each_is_kept():
    lines, results = [], []
    units = Units(lease_floor=5.0, log=lines.append)
    first, second = Unit("07", 0, {"width": 8}, keep_model=True), Unit("07", 1, {"width": 8})
    units.add([first, second], lambda unit, worker, *rest: results.append((unit.name, worker)))
    assert units.take("a") == first and units.take("b") == second
    assert units.lease() == 5.0  # no epoch yet: the floor
    assert units.report("a", first.name, epoch_seconds=4.0)
    assert units.lease() == 12.0  # three times the longest retraining epoch
    assert units.take("c") == "wait"  # both are held, under their leases
    assert units.take("a") == first and f"{first.name}: started on a again (it was restarted)" in lines

    units.held["a"][1] -= 13  # "a" has said nothing for longer than its lease
    assert units.take("c") == first
    assert f"{first.name}: no report from a for 13 s (its lease: 12 s); handed to the next worker" in lines
    sent = (5, hashlib.sha256(b"model").hexdigest())
    assert not units.deliver("c", first.name, {}, [], iter([b"mod"]), *sent)  # a stream gRPC ended short
    assert f"{first.name}: the model from c arrived incomplete; not kept" in lines and not results
    assert units.take("c") == first  # still c's, under its lease
    assert units.deliver("c", first.name, {}, [], iter([b"mo", b"del"]), *sent)
    assert not units.report("a", first.name)  # "a" was only slow: its result is no longer wanted
    units.fail("a", first.name, "ValueError: late")
    assert units.failure is None  # a failure of a unit that is done, or another's, fails nothing
    assert not units.deliver("a", first.name, {}, [], iter([b"late"]), *sent)
    assert f"{first.name}: a second result, from a, is ignored (another worker's came first)" in lines
    assert not units.finished()
    assert units.deliver("b", second.name, {}, [], iter([]))
    assert units.finished() and results == [(first.name, "c"), (second.name, "b")]
    assert units.take("b") == "wait"  # until the chief says that nothing is left
    units.close()
    assert units.take("b") == "done"


def test_a_workers_silence_starts_when_its_delivery_ends_not_when_it_began():
    # The chief writes a result (the model, history.csv) while the worker's call waits; should that take
    # longer than the lease floor, the worker had not been silent, and the next units are still its to take.
    units = Units(lease_floor=5.0, log=lambda line: None)
    unit = Unit("07", 0, {"width": 8})
    units.add([unit], lambda *result: time.sleep(0.5))
    assert units.take("a") == unit
    assert units.deliver("a", unit.name, {}, [], iter([]))
    assert units.finished() and units.silent_for(time.monotonic()) < 0.5


def test_retraining_units_and_their_results_cross_grpc_with_a_model_of_several_chunks(tmp_path):
    from concurrent import futures

    import grpc

    received = {}

    def on_result(unit, worker, evaluation, history, model):
        received.update(
            unit=unit, worker=worker, evaluation=evaluation, history=history, model=Path(model).read_bytes()
        )

    units = Units(lease_floor=5.0, log=lambda line: None)
    unit = Unit("07", 0, {"blocks_per_stage": (2, 3), "width": 8, "augment": None}, transfer=True, keep_model=True)
    units.add([unit], on_result)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    add_service(server, units)
    server.start()
    client = UnitsClient(("127.0.0.1", port), "w0", timeout=30)
    try:
        taken = client.take()
        assert taken == unit  # a tuple per stage comes back a tuple, though JSON has none
        model = tmp_path / "model.keras"
        model.write_bytes(os.urandom(2 * CHUNK_BYTES + 5))
        assert client.report(taken, epoch_seconds=1.5)
        assert client.deliver(taken, {"accuracy": 0.5}, [[1, 2.3, 0.1, 1.5]], model) == {"kept": True}
        assert received == {
            "unit": unit,
            "worker": "w0",
            "evaluation": {"accuracy": 0.5},
            "history": [[1, 2.3, 0.1, 1.5]],
            "model": model.read_bytes(),
        }
        assert units.finished() and client.take() == "wait"

        failing = Unit("08", 0, {"width": 4})
        units.add([failing], on_result)
        client.fail(client.take(), "ValueError: NaN loss")  # a retraining that fails fails the run, as in one process
        assert str(units.failure) == "retrain [08] seed 0 failed on w0: ValueError: NaN loss"
    finally:
        client.close()
        server.stop(grace=None)


def test_the_supervisor_pins_gpus_and_restarts_a_crashed_worker_but_not_one_that_reported_an_error(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    # Stands for `archsearch worker`: says which GPU it sees, then crashes (w0) or reports an error (w1).
    script = "import os, sys; print(os.environ['CUDA_VISIBLE_DEVICES']); sys.exit(1 if sys.argv[-1] == 'w0' else 2)"
    lines = []
    workers = Workers(2, [sys.executable, "-c", script], ids=["w0", "w1"], log=lines.append)
    workers.start("127.0.0.1:1", run_dir=tmp_path)
    workers.wait()
    assert workers.restarts == {"w0": MAX_RESTARTS, "w1": 0}
    assert (tmp_path / "workers" / "w0.log").read_text().split() == ["3"] * (MAX_RESTARTS + 1)
    assert (tmp_path / "workers" / "w1.log").read_text().split() == ["5"]
    assert f"w0 exited with status 1; not restarted: it was restarted {MAX_RESTARTS} times already" in lines
    assert "w1 exited with status 2: an error it reported (see its output); not restarted" in lines


def test_a_failed_trials_reason_crosses_grpc_which_drops_trial_messages(tmp_path):
    oracle = chiefs_oracle(tmp_path, budget=1)
    trial = oracle.create_trial("a")
    sent = Trial(trial.hyperparameters.copy(), trial.trial_id, "FAILED")
    sent.hyperparameters.values[FAILURE] = "infeasible: too big"  # the reason, as the tuner records it
    received = Trial.from_proto(sent.to_proto())  # as Keras Tuner's client sends it, and its servicer reads it
    assert received.message is None
    oracle.end_trial(received)
    ended = oracle.trials[trial.trial_id]
    assert ended.message == "infeasible: too big" and FAILURE not in ended.hyperparameters.values


def test_a_chiefs_oracle_hands_its_start_points_to_the_workers_that_ask_over_grpc(tmp_path):
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos

    from archsearch.compat.keras_tuner import serve_oracle

    oracle = chiefs_oracle(tmp_path, budget=3, start_points={"wide": {"width": 32}, "narrow": {"width": 8}})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    serve_oracle(server, oracle)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = protos.get_service_grpc().OracleStub(channel)

            def create(worker):  # as Keras Tuner's client on a worker asks
                request = protos.get_service().CreateTrialRequest(tuner_id=worker)
                return Trial.from_proto(stub.CreateTrial(request, timeout=30).trial)

            first, second = create("w0"), create("w1")  # the first still runs when the second worker asks
            assert [first.hyperparameters.values["width"], second.hyperparameters.values["width"]] == [32, 8]
            third = create("w2")
            assert third.hyperparameters.values["width"] in (4, 16)  # then it samples
    finally:
        server.stop(grace=None)
    assert oracle.started_from() == {first.trial_id: "wide", second.trial_id: "narrow"}
    assert oracle.workers == {first.trial_id: "w0", second.trial_id: "w1", third.trial_id: "w2"}


# --- Hosts of their own: network namespaces, links cut -----------------------------------------

SUBNET = "10.77.0"  # the namespaces' own addresses: no route leads anywhere else


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Hosts:
    """A chief's host and two workers' hosts: network namespaces joined by veth pairs.

    The chief's namespace holds a bridge at `SUBNET.1`; each worker's
    namespace has one end of a veth pair at `SUBNET.2`, `SUBNET.3`, the
    other end a port of the bridge. No namespace has a link to this
    machine's own network, so no traffic leaves them.
    """

    def __init__(self):
        tag = f"as{os.getpid() % 100000}"
        self.chief, self.workers = f"{tag}-chief", {f"w{i}": f"{tag}-w{i}" for i in range(2)}
        self.address = f"{SUBNET}.1"
        self.made = []
        try:
            self._make()
        except (OSError, subprocess.SubprocessError) as error:
            self.remove()
            reason = getattr(error, "stderr", None) or error
            message = f"cannot make network namespaces here (needs root and ip netns): {str(reason).strip()}"
            if os.environ.get("ARCHSEARCH_TEST_NETNS") == "1":  # .ci/run: these tests must run
                pytest.fail(message)
            pytest.skip(message)

    def _namespace(self, name):
        _ip("netns", "add", name)
        self.made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _make(self):
        self._namespace(self.chief)
        _ip("-n", self.chief, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.chief, "addr", "add", f"{self.address}/24", "dev", "br0")
        _ip("-n", self.chief, "link", "set", "br0", "up")
        for number, (worker, namespace) in enumerate(self.workers.items(), start=2):
            self._namespace(namespace)
            _ip("link", "add", f"to-{worker}", "netns", self.chief, "type", "veth", "peer", "eth0", "netns", namespace)
            _ip("-n", self.chief, "link", "set", f"to-{worker}", "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{SUBNET}.{number}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")

    def cut(self, worker):
        """Cuts a worker's link: its port on the chief's side goes down, as a pulled cable."""
        _ip("-n", self.chief, "link", "set", f"to-{worker}", "down")

    def restore(self, worker):
        _ip("-n", self.chief, "link", "set", f"to-{worker}", "up")

    def routes(self, namespace):
        return subprocess.run(["ip", "-n", namespace, "route"], capture_output=True, text=True, check=True).stdout

    def remove(self):
        for namespace in self.made:  # its links go with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        self.made = []


@pytest.fixture
def hosts(processes):
    made = Hosts()
    yield made
    processes.end()  # before the namespaces they run in go
    made.remove()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in (made.chief, *made.workers.values()))


def start_on_hosts(processes, hosts, space, results, worker_env=None):
    """The chief in its namespace, bound to its own address; a worker in each worker's namespace."""
    chief_at = f"{hosts.address}:8765"
    chief = processes.start("run", str(space), "--results", str(results), *LIGHT, "--chief", chief_at, host=hosts.chief)
    workers = {
        worker: processes.start(
            "worker",
            str(space),
            "--chief",
            chief_at,
            "--id",
            worker,
            host=namespace,
            env=(worker_env or {}).get(worker),
        )
        for worker, namespace in hosts.workers.items()
    }
    return chief, workers


def test_a_workers_link_cut_mid_trial_and_restored_a_lease_later_loses_and_doubles_no_trial(
    processes, hosts, digits_npz, tmp_path, space_file, wait_for
):
    space, results = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out"
    # w0 waits for the chief longer than the cut lasts: it comes back to the trial it was training.
    chief, workers = start_on_hosts(processes, hosts, space, results, {"w0": {"ARCHSEARCH_CHIEF_TIMEOUT": "180"}})
    wait_for(lambda: mid_trial(chief, results, "w0"))
    trial_id = mid_trial(chief, results, "w0")
    hosts.cut("w0")
    wait_for(lambda: f"trial {trial_id}: no report from w0" in output(chief), timeout=120)
    hosts.restore("w0")
    assert exit_status(chief) == 0, output(chief)
    for worker in workers.values():
        assert exit_status(worker, timeout=120) == 0, output(worker)
    assert f"warning: {hosts.address} is not loopback" in output(chief)
    assert re.search(
        rf"trial {trial_id}: no report from w0 for \d+ s \(its lease: \d+ s\); handed to the next worker", output(chief)
    )
    assert f"trial {trial_id} started on w1" in output(chief)
    # Back on the network, w0 finished the trial too: whichever of the two ended second was ignored.
    assert f"trial {trial_id}: a second result is ignored" in output(chief)
    searched = trials(results)
    assert len(searched) == 4 and searched["trial_id"].is_unique and (searched["status"] == "completed").all()
    assert sorted(completions(chief)) == ["00", "01", "02", "03"]  # each trial ended once: none lost, none twice
    assert (results / "leaderboard.csv").is_file()
    assert (
        hosts.routes(hosts.chief).split()
        == f"{SUBNET}.0/24 dev br0 proto kernel scope link src {hosts.address}".split()
    )


def test_a_workers_link_cut_for_good_mid_trial_loses_no_trial(
    processes, hosts, digits_npz, tmp_path, space_file, wait_for
):
    space, results = space_file(tmp_path, digits_npz, **TRIALS), tmp_path / "out"
    chief, workers = start_on_hosts(processes, hosts, space, results)
    wait_for(lambda: mid_trial(chief, results, "w0"))
    trial_id = mid_trial(chief, results, "w0")
    hosts.cut("w0")
    assert exit_status(chief) == 0, output(chief)
    assert exit_status(workers["w1"], timeout=60) == 0, output(workers["w1"])
    assert exit_status(workers["w0"], timeout=60) == 2  # it gave up waiting for the chief's answers
    assert f"archsearch: error: lost the chief at {hosts.address}:8765" in output(workers["w0"])
    searched = trials(results).set_index("trial_id")
    assert len(searched) == 4 and (searched["status"] == "completed").all()
    assert searched.loc[trial_id, "worker"] == "w1"
    assert sorted(completions(chief)) == ["00", "01", "02", "03"]
