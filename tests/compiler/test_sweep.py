"""sweep.expand: trial numbering, grid order, seeded random sampling, stepped ranges, bayes keys, did-you-mean."""

from __future__ import annotations

import math

import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.sweep import expand, settings
from loft.runtime.sweep.space import RUNTIME_KEYS, with_values

from tests.compiler.plan_fixture import sample_plan


def _config(sweep: object) -> dict:
    cfg = sample_plan()["config"]
    cfg["sweep"] = sweep
    return cfg


def test_no_sweep_has_no_trials() -> None:
    assert expand(_config(None)) == []


def test_grid_is_sorted_cartesian_product() -> None:
    trials = expand(_config({"method": "grid", "params": {
        "training.learning_rate": [1e-4, 2e-4], "adapter.r": [8, 16, 32]}}))
    assert [t["trial"] for t in trials] == list(range(6))
    # keys sorted: adapter.r varies slowest, learning_rate fastest
    assert [tuple(t["overrides"].values()) for t in trials] == [
        (8, 1e-4), (8, 2e-4), (16, 1e-4), (16, 2e-4), (32, 1e-4), (32, 2e-4)]
    assert list(trials[0]["overrides"]) == ["adapter.r", "training.learning_rate"]


def test_random_is_seeded_and_within_ranges() -> None:
    spec = {"method": "random", "trials": 5, "seed": 7, "params": {
        "training.learning_rate": {"min": 1e-5, "max": 1e-3, "log": True},
        "adapter.r": [8, 16], "training.warmup_steps": {"min": 0, "max": 10}}}
    a, b = expand(_config(spec)), expand(_config(spec))
    assert a == b and len(a) == 5
    for t in a:
        lr = t["overrides"]["training.learning_rate"]
        assert 1e-5 <= lr <= 1e-3 and float(f"{lr:.6g}") == lr
        assert t["overrides"]["adapter.r"] in (8, 16)
        assert isinstance(t["overrides"]["training.warmup_steps"], int)
    other = expand(_config({**spec, "seed": 8}))
    assert other != a
    # log sampling spreads over decades: not all points in the top decade
    lrs = [t["overrides"]["training.learning_rate"] for t in expand(_config({**spec, "trials": 40}))]
    assert min(math.log10(x) for x in lrs) < -4


def test_unknown_key_names_it_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as e:
        expand(_config({"method": "grid", "params": {"training.learning_rat": [1e-4]}}))
    d = e.value.diagnostics[0]
    assert d.key == "sweep.params.training.learning_rat"
    assert "training.learning_rate" in d.hint


def test_indexed_key_and_range_in_grid() -> None:
    trials = expand(_config({"method": "grid", "params": {"data.datasets[0].weight": [0.5, 1.0]}}))
    assert len(trials) == 2
    with pytest.raises(ConfigError) as e:
        expand(_config({"method": "grid", "params": {"adapter.r": {"min": 8, "max": 64}}}))
    assert e.value.diagnostics[0].code == "sweep-range-in-grid"
    with pytest.raises(ConfigError):
        expand(_config({"method": "random", "trials": 2, "params": {"adapter.r": {"min": 0, "max": 4, "log": True}}}))


def test_with_values_sets_nested_values_on_a_copy() -> None:
    cfg = _config(None)
    out = with_values(cfg, {"training.learning_rate": 1e-5, "data.datasets[0].weight": 0.5})
    assert out["training"]["learning_rate"] == 1e-5 and out["data"]["datasets"][0]["weight"] == 0.5
    assert cfg["training"]["learning_rate"] == 2e-4


def test_stepped_range_is_enumerated_by_a_grid() -> None:
    trials = expand(_config({"method": "grid", "params": {"adapter.r": {"min": 8, "max": 32, "step": 8},
                                                          "adapter.dropout": {"min": 0.0, "max": 0.1, "step": 0.05}}}))
    assert [t["overrides"]["adapter.r"] for t in trials[:4]] == [8, 16, 24, 32]  # sorted keys: r fastest
    assert sorted({t["overrides"]["adapter.dropout"] for t in trials}) == [0.0, 0.05, 0.1]
    assert len(trials) == 12


def test_grid_cap_and_size_limit() -> None:
    assert len(expand(_config({"method": "grid", "trials": 3, "params": {"adapter.r": [1, 2, 3, 4, 5]}}))) == 3
    with pytest.raises(ConfigError) as e:
        expand(_config({"method": "grid", "params": {"adapter.r": list(range(1, 40)),
                                                     "training.learning_rate": [i * 1e-5 for i in range(1, 40)]}}))
    assert e.value.diagnostics[0].code == "sweep-too-large"


def test_random_and_bayes_need_a_trial_count() -> None:
    for method in ("random", "bayes"):
        with pytest.raises(ConfigError) as e:
            expand(_config({"method": method, "params": {"adapter.r": [8, 16]}}))
        assert e.value.diagnostics[0].code == "sweep-trials-missing"


def test_bayes_has_no_build_time_trials_and_only_runtime_keys() -> None:
    spec = {"method": "bayes", "trials": 10, "seed": 3, "params": {
        "training.learning_rate": {"min": 1e-5, "max": 1e-3, "log": True}, "adapter.r": [8, 16, 32]}}
    assert expand(_config(spec)) == []
    s = settings(_config(spec))
    assert s["seed"] == 3 and s["budget"]["trials"] == 10
    assert s["space"]["training.learning_rate"] == {"type": "float", "low": 1e-5, "high": 1e-3, "log": True,
                                                    "step": None}
    assert s["space"]["adapter.r"] == {"type": "categorical", "values": [8, 16, 32]}
    with pytest.raises(ConfigError) as e:
        expand(_config({**spec, "params": {"training.micro_batch_size": [1, 2]}}))
    d = e.value.diagnostics[0]
    assert d.code == "sweep-not-runtime-key" and "grid or random" in d.hint
    assert "training.micro_batch_size" not in RUNTIME_KEYS


def test_metric_auto_follows_the_eval_split() -> None:
    cfg = _config({"method": "grid", "params": {"adapter.r": [8]}})
    cfg["data"]["eval_split"] = 0.0
    assert settings(cfg)["metric"] == "train_loss"
    cfg["data"]["eval_split"] = 0.1
    assert settings(cfg)["metric"] == "eval_loss"
    cfg["data"]["eval_split"] = 0.0
    cfg["sweep"]["metric"] = "eval_loss"
    with pytest.raises(ConfigError):
        settings(cfg)
