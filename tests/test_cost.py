"""What a model costs: measured latency, throughput and size; the memory estimate; budgets refused before training."""

import dataclasses
import json
import time
import types

import keras_tuner
import pandas as pd
import pytest

from archsearch import Search, Space
from archsearch.errors import InfeasibleArchitecture, SpaceError
from archsearch.model import cost
from archsearch.pipeline.runner import run
from archsearch.recipe import dimensions
from archsearch.recipe.architecture import OPTIMIZER_SLOTS, plan
from archsearch.search import hypermodel
from archsearch.search.hypermodel import SpaceHyperModel


def test_a_measurement_is_positive_sane_and_taken_once_per_network(monkeypatch):
    monkeypatch.setattr(cost, "_CACHE", {})  # what other tests measured in this process
    architecture = plan({"width": 4, "stages": 1, "resolution": 8}, (8, 8, 1), 10)
    start = time.perf_counter()
    first = cost.measure(architecture)
    assert time.perf_counter() - start < 10  # documented as well under 2 s; generous on a shared machine
    assert 0 < first.latency_ms < 1000 and 0 <= first.latency_ms_iqr < 1000
    assert first.images_per_second > 0
    # A .keras file holds the float32 weights, zipped with the architecture's JSON.
    assert 4 * architecture.params < first.model_bytes < 4 * architecture.params + 200_000
    assert cost.cached(architecture) is first
    # Another training knob plans the same network: the same measurement, not a second one.
    same_network = plan({"width": 4, "stages": 1, "resolution": 8, "learning_rate": 0.1}, (8, 8, 1), 10)
    assert cost.measure(same_network) is first
    assert cost.cached(plan({"width": 8, "stages": 1, "resolution": 8}, (8, 8, 1), 10)) is None
    assert set(first.to_dict()) == set(cost.COST_COLUMNS)


def test_the_device_is_described_and_its_memory_known_on_a_cpu():
    assert cost.cost_device().startswith("CPU: ") and cost.cost_device().endswith(" cores")
    assert cost.device_memory() > 2**28


def test_the_memory_estimate_is_the_hand_count_of_a_tiny_plan():
    architecture = plan(
        {"width": 2, "stages": 1, "blocks_per_stage": 1, "batch_norm": False, "resolution": 4}, (4, 4, 1), 2
    )
    # Layers: image 4x4x1 (uint8, not kept: no gradient flows to it), preprocess 4x4x1 (the conv's input,
    # kept), conv 4x4x2 (3*3*1*2 + 2 = 20 weights), relu 4x4x2, pool 2x2x2, global pool 2, dense 2
    # (2*2 + 2 = 6 weights): 26 weights, all trainable.
    activations = 3 * 4 * (16 + 32 + 32 + 8 + 2 + 2)
    assert architecture.memory_estimate(batch_size=3) == 26 * 4 * (1 + 1 + 2) + activations  # Adam: 2 slots
    sgd = plan({**architecture.point, "stages": 1, "optimizer": "sgd"}, (4, 4, 1), 2)
    assert sgd.memory_estimate(batch_size=3) == 26 * 4 * (1 + 1 + 1) + activations
    mixed = 26 * 4 * 4 + 3 * 2 * 92
    assert architecture.memory_estimate(batch_size=3, activation_bytes=2) == mixed
    augmented = plan({**architecture.point, "augment": True}, (4, 4, 1), 2)  # augment 4x4x1 feeds the conv now
    assert augmented.memory_estimate(batch_size=3) == architecture.memory_estimate(batch_size=3)
    assert architecture.memory_estimate() == architecture.memory_estimate(batch_size=128)  # the point's batch size
    assert set(OPTIMIZER_SLOTS) == set(dimensions.BY_NAME["optimizer"].values)


def test_the_budgets_are_validated_naming_the_field():
    assert Search(max_memory="4GB").max_memory == 4 * 10**9
    assert Search(max_memory="1.5 GiB").max_memory == 3 * 2**29
    assert Search(max_memory=1024, max_latency_ms=2, max_model_bytes=10).max_latency_ms == 2
    for field, value in [
        ("max_memory", "4G"),
        ("max_memory", "GB"),
        ("max_memory", 0),
        ("max_memory", True),
        ("max_memory", "-1MB"),
        ("max_latency_ms", 0),
        ("max_latency_ms", "1"),
        ("max_latency_ms", float("inf")),
        ("max_model_bytes", 1.5),
    ]:
        with pytest.raises(SpaceError, match=f"search: {field}="):
            Search(**{field: value})


def test_the_budgets_stay_out_of_the_fingerprint_at_their_defaults():
    plain = Space(name="t").fingerprint()
    assert Space(name="t", search=Search(max_memory=None)).fingerprint() == plain
    assert Space(name="t", search=Search(max_latency_ms=5.0)).fingerprint() != plain
    assert (
        Space(name="t", search=Search(max_latency_ms=5)).fingerprint()
        == Space(name="t", search=Search(max_latency_ms=5.0)).fingerprint()
    )  # one budget, however it is written
    assert "max_memory" not in Space(name="t").to_dict()["search"]
    assert Space(name="t", search=Search(max_memory="1GB")).to_dict()["search"]["max_memory"] == 10**9


def _digits_like():
    return types.SimpleNamespace(shape=(8, 8, 1), num_classes=10)


def test_max_memory_refuses_a_point_before_its_model_is_built(monkeypatch):
    def never(_):
        raise AssertionError("built a model the memory budget refuses")

    monkeypatch.setattr(hypermodel, "build_model", never)
    space = Space(name="t", search=Search(max_memory=10_000))
    with pytest.raises(InfeasibleArchitecture, match=r"max_memory=10000: a training step at batch size 128 needs"):
        SpaceHyperModel(space, _digits_like()).build(keras_tuner.HyperParameters())
    # Without a budget in the space, the device's memory is the budget.
    assert SpaceHyperModel(Space(name="t"), _digits_like()).max_memory == cost.device_memory()


def test_a_search_refuses_points_over_max_latency_ms_and_goes_on(digits_npz, tmp_path, tiny_space, monkeypatch):
    # Machine noise would decide which of the tiny space's points pass a real threshold: here the width-8
    # networks take 10 ms and the width-4 ones 1 ms, wherever the test runs.
    measured = cost._measure

    def fixed_latency(model, input_shape):
        figures = measured(model, input_shape)
        widths = {layer.filters for layer in model.layers if hasattr(layer, "filters")}
        return cost.Cost(10.0 if 8 in widths else 1.0, 0.1, figures.images_per_second, figures.model_bytes)

    monkeypatch.setattr(cost, "_measure", fixed_latency)
    monkeypatch.setattr(cost, "_CACHE", {})
    results = tmp_path / "latency"
    space = tiny_space(digits_npz, max_trials=2, max_latency_ms=5.0)
    space = dataclasses.replace(space, retrain=dataclasses.replace(space.retrain, top_k=1, references=("resnet20",)))
    board = run(space, results, log=lambda line: None)

    trials = pd.read_csv(results / "trials.csv", dtype={"trial_id": str})
    infeasible = trials[trials["status"] == "infeasible"]
    completed = trials[trials["status"] == "completed"]
    assert len(infeasible) >= 1 and len(completed) == 2
    assert infeasible["reason"].str.startswith("infeasible: max_latency_ms=5.0: the untrained model takes 10").all()
    assert (infeasible["width"] == 8).all() and (completed["width"] == 4).all()
    # Every trial shows its plan's memory estimate; the measured ones their cost, the refused ones too.
    assert (trials["memory_estimate_bytes"] > 0).all() and (trials["model_bytes"] > 0).all()
    assert list(trials["latency_ms"]) == [10.0 if w == 8 else 1.0 for w in trials["width"]]

    ranked = board[~board["baseline"]]
    by_trial = trials.set_index("trial_id")
    for _, row in ranked.iterrows():
        assert row["latency_ms"] == by_trial.loc[row["trial_id"], "latency_ms"] == 1.0
        assert row["model_bytes"] == by_trial.loc[row["trial_id"], "model_bytes"]
    reference = board[board["trial_id"] == "reference:resnet20"].iloc[0]  # measured before it trained
    assert reference["latency_ms"] == 1.0 and reference["model_bytes"] > 4 * reference["params"]
    assert board[board["trial_id"].str.startswith("baseline:")]["latency_ms"].isna().all()
    meta = json.loads((results / "run.json").read_text())
    assert meta["cost_device"] == cost.cost_device() and meta["max_memory"] == cost.device_memory()
