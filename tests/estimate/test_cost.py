"""Cost per provider: hours × price × GPUs billed; the catalogs' own consistency."""

from __future__ import annotations

import re

import pytest
from estimate_facts import LLAMA1B, LLAMA8B, plan
from loft.compiler.estimate import catalog, estimate_plan
from loft.compiler.estimate.cost import billed_gpus, cheapest


def test_catalog_entries_are_complete() -> None:
    gpus = catalog.gpus()
    assert {"H100", "H100-PCIe", "H200", "A100-80GB", "A100-40GB", "L40S", "A10G", "L4", "RTX4090", "RTX3090",
            "A6000", "B200", "MI300X"} <= set(gpus)
    for name, g in gpus.items():
        assert 10 < g["memory_gib"] < 200 and 50 < g["bf16_tflops"] < 5000 and 0 < g["mfu"] < 1, name
        assert g["source"].startswith("https://")
    provs = catalog.providers()
    assert {"runpod", "lambda", "vastai", "aws", "gcp", "azure"} <= set(provs)
    for key, p in provs.items():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", p["as_of"]) and p["source"].startswith("https://"), key
        for row in p["prices"]:
            assert row["gpu"] in gpus and row["on_demand"] > 0
            assert row["spot"] is None or 0 < row["spot"] < row["on_demand"]


def test_names_and_aliases() -> None:
    assert catalog.gpu_name("h100") == "H100"
    assert catalog.gpu_name("RTX 4090") == "RTX4090"
    assert catalog.gpu_name("a100-sxm4-80gb") == "A100-80GB"
    assert catalog.gpu_name("tpu") is None
    assert catalog.provider_name("RunPod") == "runpod" and catalog.provider_name("Vast.ai") == "vastai"


def test_billing_rounds_up_to_instance_sizes() -> None:
    assert billed_gpus(1, None) == 1
    assert billed_gpus(1, [8]) == 8
    assert billed_gpus(3, [1, 2, 4, 8]) == 4
    assert billed_gpus(16, [8]) == 16
    assert billed_gpus(12, [8]) == 16


def test_total_is_hours_times_price_times_gpus() -> None:
    est = estimate_plan(plan(LLAMA1B, derived__total_tokens=50_000_000))
    hours = est["time"]["hours"]
    for o in est["cost"]["options"]:
        if o["gpu"] == "H100":
            assert o["total_usd"] == pytest.approx(hours * o["price_per_gpu_hour"] * o["num_gpus"], rel=2e-3, abs=0.01)
        assert o["as_of"] and o["source"].startswith("https://")
    best = est["cost"]["cheapest"]
    fitting = [o for o in est["cost"]["options"] if o["fits"] and not o["spot"]]
    assert best["total_usd"] == min(o["total_usd"] for o in fitting)
    assert not best["spot"] and best["fits"]
    assert est["vram"]["recommended"]["gpu"] == best["gpu"]
    assert est["cost"]["total_usd"] == best["total_usd"]


def test_provider_and_gpu_narrow_the_options() -> None:
    p = plan(LLAMA1B, derived__total_tokens=10**7)
    only = estimate_plan(p, provider="runpod")["cost"]["options"]
    assert only and {o["provider"] for o in only} == {"runpod"}
    a100 = estimate_plan(p, gpu="A100-80GB")
    assert {o["gpu"] for o in a100["cost"]["options"]} == {"A100-80GB"}
    assert a100["vram"]["gpu"] == "A100-80GB" and a100["time"]["gpu"] == "A100-80GB"
    both = estimate_plan(p, gpu="H100", provider="lambda")["cost"]["options"]
    assert {(o["provider"], o["gpu"]) for o in both} == {("lambda", "H100")}


def test_nothing_fits_no_cheapest() -> None:
    est = estimate_plan(plan(LLAMA8B, model__dtype="fp32", training__micro_batch_size=16, derived__total_tokens=10**8))
    assert cheapest(est["cost"]["options"]) is None and est["cost"]["cheapest"] is None
    assert {w["code"] for w in est["warnings"]} >= {"does-not-fit", "no-gpu-fits"}


def test_unknown_tokens_no_cost_but_a_recommendation() -> None:
    est = estimate_plan(plan(LLAMA1B))
    assert est["cost"]["cheapest"] is None and all(o["total_usd"] is None for o in est["cost"]["options"])
    rec = est["vram"]["recommended"]
    assert rec is not None and est["vram"]["fits"][rec["gpu"]]
