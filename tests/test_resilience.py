"""Runs survive crashes and bad trials: kill and resume, failed trials, the lock, atomic writes."""

import dataclasses
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import keras
import keras_tuner
import pandas as pd
import pytest

from archsearch import Data
from archsearch.data import load_data
from archsearch.errors import ArchsearchError, DataError, InfeasibleArchitecture
from archsearch.files import read_json, write_csv, write_json
from archsearch.model import cost, training
from archsearch.pipeline.runner import run
from archsearch.search import hypermodel
from archsearch.search import tuners as search
from archsearch.search.oracle import INFEASIBLE_METRIC, RandomSearchOracle
from archsearch.search.trials import trial_status, trials_frame

ROOT = Path(__file__).resolve().parents[1]


def start(space, results, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "archsearch", "run", str(space), "--results", str(results), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )


def completed_trials(results):
    path = results / "trials.csv"
    return pd.read_csv(path, dtype={"trial_id": str}) if path.exists() else pd.DataFrame(columns=["trial_id", "status"])


def _mid_trial(results):
    return len(completed_trials(results)) >= 1 and len(list((results / "tuner").glob("trial_*"))) >= 2


def _mid_retraining(results):
    return any((results / "retrain").glob("*.json")) if (results / "retrain").exists() else False


def _mid_export(results):
    return (results / "best.partial").exists()


@pytest.mark.parametrize(
    "moment, delay",
    [(_mid_trial, 0.5), (_mid_retraining, 0.5), (_mid_export, 0.0)],
    ids=["during-a-trial", "during-retraining", "during-export"],
)
def test_kill_then_resume(tmp_path, digits_npz, moment, delay, space_file, wait_for):
    # The smallest network that still trains for a moment to kill it in: its runs' start-up and export dominate.
    space, results = space_file(tmp_path, digits_npz, resolution=8, stages=1, batch_size=32), tmp_path / "out"
    process = start(space, results)
    wait_for(lambda: moment(results), timeout=300)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)  # no warning, no clean-up
    process.wait()
    before = completed_trials(results)
    finished = before[before["status"] == "completed"]
    stamps = {t: (results / "tuner" / f"trial_{t}" / "trial.json").stat().st_mtime_ns for t in finished["trial_id"]}
    retrained = (
        {p: p.stat().st_mtime_ns for p in (results / "retrain").glob("*.json")}
        if (results / "retrain").exists()
        else {}
    )

    refused = start(space, results)
    assert refused.wait() == 2 and "--resume" in refused.stdout.read()

    resumed = start(space, results, "--resume")
    output = resumed.communicate()[0]
    assert resumed.returncode == 0, output
    after = completed_trials(results)
    assert len(after) == 4 and after["trial_id"].is_unique and (after["status"] == "completed").all()
    for trial_id, stamp in stamps.items():  # finished trials were not run again
        assert (results / "tuner" / f"trial_{trial_id}" / "trial.json").stat().st_mtime_ns == stamp
        assert (
            after.set_index("trial_id").loc[trial_id, "val_accuracy"]
            == finished.set_index("trial_id").loc[trial_id, "val_accuracy"]
        )
    for record, stamp in retrained.items():  # nor finished retrainings
        assert record.stat().st_mtime_ns == stamp
    board = pd.read_csv(results / "leaderboard.csv")
    assert board["rank"].tolist()[0] == 1 and board["baseline"].sum() == 2 and board.loc[0, "seeds"] == 2
    assert json.loads((results / "run.json").read_text())["status"] == "complete"
    assert (results / "best" / "saved_model" / "saved_model.pb").exists() and (
        results / "best" / "model.keras"
    ).exists()
    assert not (results / "best.partial").exists()


def test_a_second_run_on_the_same_results_is_locked_out(tmp_path, digits_npz, space_file, wait_for):
    space, results = space_file(tmp_path, digits_npz, max_trials=2, epochs=3), tmp_path / "out"
    first = start(space, results)
    wait_for(lambda: (results / "run.json").exists())
    second = start(space, results, "--resume")
    output = second.communicate()[0]
    assert second.returncode == 2 and "in use by another archsearch run" in output
    assert first.wait() == 0
    assert json.loads((results / "run.json").read_text())["status"] == "complete"


def test_a_changed_space_is_not_resumed(tmp_path, digits_npz, tiny_space):
    results = tmp_path / "out"
    run(tiny_space(digits_npz), results, log=lambda line: None)
    changed = tiny_space(digits_npz, max_trials=4)
    with pytest.raises(ArchsearchError, match="the space changed"):
        run(changed, results, resume=True, log=lambda line: None)


def _nan_loss(model, point, steps):
    model.compile(optimizer="adam", loss=lambda y, p: keras.ops.mean(p) * float("nan"))
    return model


def test_diverging_trials_fail_with_their_reason_and_the_search_stops_after_the_limit(
    tmp_path, digits_npz, monkeypatch, tiny_space
):
    monkeypatch.setattr(training, "compile_model", _nan_loss)
    space = tiny_space(digits_npz, max_trials=6, max_consecutive_failures=2)
    with pytest.raises(search.SearchStopped, match="2 failed trials in a row") as stopped:
        run(space, tmp_path / "out", log=lambda line: None)
    assert "diverged: loss is nan" in str(stopped.value)
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert list(trials["status"]) == ["failed", "failed"]
    assert trials["reason"].str.startswith("diverged").all()


def test_the_monitor_checks_every_steps_loss_and_times_the_first_steps():
    # Keras hands batch ends their loss as a Python number (it waited for the step already, on a
    # thread of its own for an async_safe callback): checking every step costs the loop nothing.
    monitor = hypermodel._TrialMonitor()
    monitor.on_train_begin()
    for step in range(57):
        monitor.on_train_batch_end(step, {"loss": 1.0})
    assert len(monitor.step_ends) == hypermodel._TrialMonitor.TIMED_STEPS and monitor.compile_seconds >= 0
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="diverged: loss is nan at step 57"):
        monitor.on_train_batch_end(57, {"loss": float("nan")})
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="diverged: loss is inf at epoch 3"):
        monitor.on_epoch_end(2, {"loss": float("inf")})


def test_the_failure_reason_is_the_raised_message_not_the_last_line_of_a_long_one():
    keras_message = (
        "Unable to automatically build the model.\nException encountered:\n"
        "\x1b[1mThis requires the tensorflow module.\x1b[0m\n\nArguments received by Functional.call():\n"
        "  \u2022 kwargs=<class 'inspect._empty'>'\n"
    )
    assert (
        search.failure_reason(RuntimeError(keras_message)) == "RuntimeError: Unable to automatically build the model."
    )
    assert search.failure_reason(InfeasibleArchitecture("stages", 5, "too many")) == "infeasible: stages=5: too many"


def test_infeasible_samples_stay_infeasible_whatever_keras_tuner_calls_its_error(
    digits_npz, tmp_path, monkeypatch, tiny_space
):
    # As if Keras Tuner renamed FailedTrialError: the tracebacks it keeps as messages then end in another name.
    format_exc = traceback.format_exc
    monkeypatch.setattr(
        traceback, "format_exc", lambda: format_exc().replace("errors.FailedTrialError", "errors.TrialSkipped")
    )
    space = tiny_space(digits_npz, max_trials=2, max_params=150, max_consecutive_failures=1)
    run(space, tmp_path / "out", log=lambda line: None)
    trials = pd.read_csv(tmp_path / "out" / "trials.csv", dtype={"trial_id": str})
    infeasible = trials[trials["status"] == "infeasible"]
    assert len(infeasible) >= 1 and set(trials["status"]) == {"completed", "infeasible"}
    assert infeasible["reason"].str.match(r"infeasible: max_params=150: the architecture has [\d,]+ parameters$").all()
    assert (infeasible["params"] > 150).all() and infeasible["flops"].notna().all()  # planned, then over the budget

    # The mark persists in trial.json (--resume) and survives Keras Tuner's Trial proto (a chief's oracle).
    # Keras Tuner reloads trials in the file system's order, here the reverse of creation; the rows keep theirs.
    glob = keras_tuner.src.backend.io.glob
    monkeypatch.setattr(keras_tuner.src.backend.io, "glob", lambda pattern: sorted(glob(pattern), reverse=True))
    dataset = load_data(space.data)
    resumed = search.make_tuner(space, dataset, tmp_path / "out" / "tuner", overwrite=False)
    again = trials_frame(resumed)
    assert again["trial_id"].tolist() == trials["trial_id"].tolist()
    assert (
        again["status"].tolist() == trials["status"].tolist()
        and again["reason"].tolist() == trials["reason"].fillna("").tolist()
    )
    for trial_id in infeasible["trial_id"]:
        sent = keras_tuner.engine.trial.Trial.from_proto(resumed.oracle.get_trial(trial_id).to_proto())
        assert trial_status(sent) == "infeasible" and sent.metrics.get_last_value("params") > 150


def test_out_of_memory_fails_the_trial_and_the_search_goes_on(tmp_path, digits_npz, monkeypatch, tiny_space):
    real_fit = keras.Model.fit
    calls = []

    def fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    run(tiny_space(digits_npz), tmp_path / "out", log=lambda line: None)
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert trials.loc[0, "status"] == "failed" and trials.loc[0, "reason"].startswith("out of memory")
    assert (trials["status"] == "completed").sum() == 2


def test_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "trials.csv"
    write_csv(pd.DataFrame({"a": [1]}), path)

    # A crash in the middle of writing the new content:
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_json({"b": 2}, path)
    assert path.read_text() == "a\n1\n"  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]  # no temporary left behind


def test_resume_on_other_data_is_refused_naming_both_fingerprints(digits_npz, tmp_path, tiny_space):
    space = tiny_space(digits_npz)
    results = tmp_path / "run"
    results.mkdir()
    write_json(
        {
            "space_fingerprint": space.fingerprint(),
            "data": {"fingerprint": "0123456789abcdef0123"},
            "status": "searching",
        },
        results / "run.json",
    )

    def no_search(*args, **kwargs):
        raise AssertionError("the search started on other data")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("archsearch.pipeline.runner._Session.search", no_search)
        with pytest.raises(
            ArchsearchError,
            match=r"the data changed since this run started \(fingerprint 0123456789abcdef0123 -> \w{20}",
        ):
            run(space, results, data_dir=str(digits_npz), resume=True, log=lambda line: None)


def test_a_search_other_than_hyperband_saves_no_weights(digits_npz, tmp_path, monkeypatch, tiny_space):
    from keras_tuner.src.engine import tuner_utils  # its checkpoint callback: a test's spy, not archsearch's

    saved = []
    monkeypatch.setattr(tuner_utils.SaveBestEpoch, "_save_model", lambda self: saved.append(1))
    space = tiny_space(digits_npz, max_trials=2)
    dataset = load_data(space.data, cache_dir=tmp_path / "cache")
    tuner = search.make_tuner(space, dataset, tmp_path / "run", overwrite=True)
    tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
    assert len(tuner.oracle.trials) == 2 and saved == [] and not list((tmp_path / "run").rglob("checkpoint*"))


def test_keras_tuners_state_files_survive_a_kill_mid_write(tmp_path, monkeypatch):
    # Keras Tuner's own save of its oracle (oracle.json), through archsearch's patch of `utils.save_json`.
    oracle = RandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=1,
        seed=1,
        hyperparameters=keras_tuner.HyperParameters(),
        budget=1,
    )
    oracle._set_project_dir(str(tmp_path), "tuner")
    oracle.save()
    path = Path(oracle._get_oracle_fname())
    before = path.read_text()
    oracle.end_order.append("0")  # the state to save changes

    def killed(*args):
        raise KeyboardInterrupt  # stands for a SIGKILL before the new file is in place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    assert path.read_text() == before and json.loads(before) and not list(tmp_path.rglob("*.tmp"))


def test_trial_ids_keep_one_width_while_infeasible_samples_raise_the_limit(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Float("learning_rate", 1e-3, 1e-1)
    oracle = RandomSearchOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=1, seed=1, hyperparameters=hp, budget=1
    )
    oracle._set_project_dir(str(tmp_path), "tuner")
    oracle.verbose = 0
    ids = []
    for _ in range(10):  # ten infeasible samples: the budget of one trained trial allows them all
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.0, INFEASIBLE_METRIC: 1.0})
        oracle.end_trial(
            keras_tuner.engine.trial.Trial(trial.hyperparameters, trial.trial_id, "FAILED", message="infeasible: x")
        )
        ids.append(trial.trial_id)
    trained = oracle.create_trial("tuner0")
    oracle.update_trial(trained.trial_id, {"val_accuracy": 0.5})
    oracle.end_trial(keras_tuner.engine.trial.Trial(trained.hyperparameters, trained.trial_id, "COMPLETED"))
    assert oracle.create_trial("tuner0").status == "STOPPED"
    assert ids + [trained.trial_id] == [f"{i:02d}" for i in range(11)]  # Keras Tuner alone: "0" to "9", then "10"


def test_a_resume_keeps_run_json_s_retrained_trials_names_one_it_cannot_find_and_warns_of_another_device(
    digits_npz, tmp_path, tiny_space
):
    space = tiny_space(digits_npz)
    results = tmp_path / "run"
    results.mkdir()
    started = {"space_fingerprint": space.fingerprint(), "status": "stopped", "cost_device": "TPU v9"}
    write_json({**started, "retrained_trials": ["0", "7"]}, results / "run.json")
    lines = []

    def searched(*args, **kwargs):  # what the search ended with: trials 0 and 1, not the 7 run.json names
        assert read_json(results / "run.json")["retrained_trials"] == ["0", "7"]  # kept while it searches
        return pd.DataFrame({"trial_id": ["0", "1"], "status": "completed", "val_accuracy": [0.5, 0.6]})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("archsearch.pipeline.runner._Session.search", searched)
        with pytest.raises(ArchsearchError, match=r"run.json: retrained_trials names 7, not a trial of .*trials.csv"):
            run(space, results, data_dir=str(digits_npz), resume=True, log=lines.append)
    warning = next(line for line in lines if line.startswith("warning:"))
    assert f"measured on TPU v9, this session's are measured on {cost.cost_device()}" in warning


def test_a_run_that_fails_before_run_json_leaves_no_folder_and_the_command_one_line(
    tmp_path, monkeypatch, capsys, tiny_space, digits_npz, offline
):
    from archsearch.cli.main import main

    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    assert main(["run", "search_spaces/cifar.py"]) == 2  # the README's headline command: bundled cifar here
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "archsearch: error: data: tensorflow-datasets must download 'cifar10' but cannot reach www.cs.toronto.edu"
    )
    assert seconds < 10 and list(tmp_path.iterdir()) == []  # no results/, no run folder

    # A folder of the user's that --results names keeps what it held, and gets no lock left in it.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    broken = dataclasses.replace(tiny_space(digits_npz), data=Data(str(tmp_path / "missing.npz")))
    for results in (tmp_path / "new" / "run", kept):
        with pytest.raises(DataError, match="missing.npz: no such file or folder"):
            run(broken, results, log=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and os.listdir(kept) == ["notes.txt"]


def test_behind_a_proxy_the_offline_check_tries_the_proxy_not_the_download_host(monkeypatch, no_proxies):
    from archsearch.data.tfds import unreachable_host

    tried = []

    def refused(address, *args, **kwargs):
        tried.append(address)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.cluster.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "proxy.cluster.example")  # no scheme, no port: http, port 80
    urls = ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "http://yann.lecun.com/mnist.gz"]
    assert unreachable_host(urls, timeout=1) == "proxy proxy.cluster.example:80 (Connection refused)"
    assert sorted(tried) == [("proxy.cluster.example", 80), ("proxy.cluster.example", 3128)]

    tried.clear()
    monkeypatch.setenv("NO_PROXY", "www.cs.toronto.edu")  # this host is reached directly
    assert unreachable_host(urls[:1], timeout=1) == "www.cs.toronto.edu (Connection refused)"
    assert tried == [("www.cs.toronto.edu", 443)]


def test_a_stopped_run_names_its_directory_to_resume_only_when_it_recorded_something(
    tmp_path, monkeypatch, tiny_space, digits_npz
):
    from archsearch.cli.console import Terminated, interrupted_line
    from archsearch.cli.main import main

    def terminated(*args, **kwargs):
        raise Terminated("SIGTERM")

    space, results = tiny_space(digits_npz), tmp_path / "out"
    argv = ["run", "tiny.py", "--results", str(results), "--overwrite"]
    with monkeypatch.context() as patch:
        patch.setattr("archsearch.pipeline.runner.load_data", terminated)  # before run.json: the folder goes
        with pytest.raises(Terminated) as stopped:
            run(space, results, log=lambda line: None)
    assert not results.exists() and stopped.value.run_dir is None
    assert interrupted_line(stopped.value, argv) == (
        "archsearch: terminated (SIGTERM); nothing was recorded; run the command again"
    )

    monkeypatch.setattr("archsearch.pipeline.runner._Session.search", terminated)  # run.json written: it stays
    with pytest.raises(Terminated) as stopped:
        run(space, results, log=lambda line: None)
    assert read_json(results / "run.json")["status"] == "stopped"
    # --overwrite left out (the hint would delete the run it names), and an earlier --resume=RUN replaced.
    for given in (argv, [*argv[:-1], f"--resume={results}"], ["run", "tiny.py", "--over", "--resume", "x"]):
        assert interrupted_line(stopped.value, given) == (
            f"archsearch: terminated (SIGTERM); the run continues with "
            f"`archsearch run tiny.py --results {results} --resume`"
        )
    with pytest.raises(SystemExit) as refused:  # the one continues a run, the other deletes it: never both
        main(["run", "tiny.py", "--resume", "--overwrite"])
    assert refused.value.code == 2


def test_a_resumed_run_that_again_stops_before_run_json_leaves_no_folder(tmp_path, tiny_space, digits_npz):
    killed = tmp_path / "results" / "tiny" / "2026-01-01_00-00-00"
    killed.mkdir(parents=True)
    (killed / ".lock").touch()  # what a SIGKILL in a run's first seconds leaves
    broken = dataclasses.replace(tiny_space(digits_npz), data=Data(str(tmp_path / "missing.npz")))
    with pytest.raises(DataError, match="missing.npz: no such file or folder"):
        run(broken, killed, resume=True, log=lambda line: None)
    assert os.listdir(tmp_path / "results" / "tiny") == []  # the killed run's folder went; the space's stays


def test_a_full_disk_outside_run_is_one_line_too(monkeypatch, capsys):
    from archsearch.cli.main import main

    finished = next((ROOT / "results" / "digits").glob("*/leaderboard.csv")).parent  # only read: nothing is written

    def exporting(run_dir, rank, out, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out) / "model.keras"))

    def reporting(*args, **kwargs):  # as TensorFlow says it, with no file named
        raise RuntimeError("report.partial; No space left on device")

    monkeypatch.setattr("archsearch.output.export.export_retrained", exporting)
    monkeypatch.setattr("archsearch.output.report.write_report", reporting)
    again = "no space left on device; free some space, then run the command again\n"
    assert main(["export", str(finished), "--out", "exported"]) == 2
    assert capsys.readouterr().err == f"archsearch: error: {Path('exported') / 'model.keras'}: {again}"
    assert main(["report", str(finished)]) == 2
    assert capsys.readouterr().err == f"archsearch: error: {finished}: {again}"

    monkeypatch.setattr("archsearch.output.report.write_report", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # anything else is a bug: its traceback
        main(["report", str(finished)])


def test_a_run_killed_before_it_recorded_anything_is_listed_and_resumes_afresh(
    tmp_path, monkeypatch, capsys, tiny_space, digits_npz
):
    from archsearch.cli.main import main

    monkeypatch.chdir(tmp_path)
    killed = tmp_path / "results" / "tiny" / "2026-01-01_00-00-00"
    killed.mkdir(parents=True)
    (killed / ".lock").touch()  # what a SIGKILL in a run's first seconds leaves
    assert main(["runs", "results/tiny"]) == 0
    listed = capsys.readouterr()
    assert listed.out.splitlines()[1].split() == ["2026-01-01_00-00-00", "no", "run.json"]
    assert listed.err == (
        "no run.json: the run has recorded nothing yet (it is starting, or was killed before it could); "
        "`archsearch run SPACE --resume` starts a killed one afresh\n"
    )

    def searched(session, *args):  # the run started in earnest: stop it there, the rest is another test's
        raise search.SearchStopped(f"started in {session.run_dir}, status {session.run_dir.status()}")

    monkeypatch.setattr("archsearch.pipeline.runner._Session.search", searched)
    space, lines = tiny_space(digits_npz), []
    with pytest.raises(search.SearchStopped, match="started in results/tiny/2026-01-01_00-00-00, status searching"):
        run(space, resume=True, log=lines.append)  # the most recent unfinished run: the killed one
    assert "results/tiny/2026-01-01_00-00-00: the run recorded nothing yet (no run.json): starting it afresh" in lines

    # --results DIR --resume, as the README says to resume after a kill, works before DIR even exists.
    with pytest.raises(search.SearchStopped, match=f"started in {tmp_path / 'never'}, status searching"):
        run(space, tmp_path / "never", resume=True, log=lambda line: None)
    with pytest.raises(ArchsearchError, match=r"results/tiny: no run to resume here \(no run.json, and it holds"):
        run(space, "results/tiny", resume=True, log=lambda line: None)  # a space's folder is no run to start in


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path, digits_npz, space_file, wait_for):
    space, results = space_file(tmp_path, digits_npz, max_trials=2, epochs=50), tmp_path / "out"
    process = start(space, results)
    wait_for(lambda: list((results / "tuner").glob("trial_*")), timeout=120)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 143, output
    assert output.strip().splitlines()[-1] == (
        f"archsearch: terminated (SIGTERM); the run continues with "
        f"`archsearch run {space} --results {results} --resume`"
    )
    assert "Traceback" not in output
    recorded = json.loads((results / "run.json").read_text())
    assert recorded["status"] == "stopped" and recorded["reason"] == "interrupted by SIGTERM"


def test_a_full_disk_says_where_and_what_to_do_and_resume_completes(tmp_path, digits_npz, monkeypatch, tiny_space):
    import tensorflow as tf

    from archsearch.output import export

    no_space = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as Keras's save_model raises it
    save, export_saved_model = keras.Model.save, export._export_saved_model
    full = {"retraining": True, "export": True}

    def saving(model, path, *args, **kwargs):
        if full["retraining"] and "retrain" in str(path):
            full["retraining"] = False
            Path(path).write_bytes(b"PK\x03\x04 cut short")  # a part of the file made it to the disk
            raise no_space
        return save(model, path, *args, **kwargs)

    def exporting(*args, **kwargs):
        if full["export"]:
            full["export"] = False
            raise tf.errors.ResourceExhaustedError(
                None, None, "best.partial/saved_model/variables/variables_temp; No space left on device [Op:SaveV2]"
            )
        return export_saved_model(*args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", saving)
    monkeypatch.setattr(export, "_export_saved_model", exporting)
    space, results = tiny_space(digits_npz, max_trials=2), tmp_path / "out"
    space = dataclasses.replace(space, retrain=dataclasses.replace(space.retrain, top_k=1))
    again = "no space left on device; free some space, then continue the run with --resume"
    with pytest.raises(ArchsearchError, match=f"^{results / 'retrain'}: {again}"):
        run(space, results, log=lambda line: None)
    trials = (results / "trials.csv").read_text()
    with pytest.raises(ArchsearchError, match=f"^{results / 'best'}: {again}"):
        run(space, results, resume=True, log=lambda line: None)
    assert (results / "trials.csv").read_text() == trials  # the search was not redone
    run(space, results, resume=True, log=lambda line: None)
    assert json.loads((results / "run.json").read_text())["status"] == "complete"
    assert (results / "best" / "model.keras").exists() and not (results / "best.partial").exists()
