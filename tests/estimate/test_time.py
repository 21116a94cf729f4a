"""Training FLOPs and hours against hand-computed values."""

from __future__ import annotations

import pytest
from estimate_facts import LLAMA8B, TINY, plan
from loft.compiler.estimate import catalog, estimate_plan
from loft.compiler.estimate.setup import setup_from_plan
from loft.compiler.estimate.time import flops_per_token, matmul_params, total_tokens, utilisation


def setup(facts: dict, **over: object):  # type: ignore[no-untyped-def]
    s, _ = setup_from_plan(plan(facts, **over))
    assert s is not None
    return s


def test_matmul_params_are_the_linears_and_the_lm_head() -> None:
    # tiny: 2 layers × (12288 attention + 24576 MLP) + lm_head 100 × 64
    assert matmul_params(setup(TINY)) == 2 * (12288 + 24576) + 6400


def test_full_finetune_is_6n_plus_attention() -> None:
    s = setup(TINY, sequence__max_length=512)
    n = 2 * (12288 + 24576) + 6400
    attn = 2 * 2 * (4 * 16) * 512  # 2·L·q_dim·S: QKᵀ and AV over a causal S/2 context
    f = flops_per_token(s)
    assert f["attention_forward"] == attn
    assert f["total"] == 6 * n + 3 * attn


def test_lora_skips_weight_gradients_and_checkpointing_adds_a_forward() -> None:
    s = setup(TINY, sequence__max_length=512, adapter__type="lora")
    n = 2 * (12288 + 24576) + 6400
    attn = 2 * 2 * 64 * 512
    lora = s.lora_params
    assert lora == 2 * 16 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    assert flops_per_token(s)["total"] == 4 * n + 3 * attn + 6 * lora
    ck = setup(TINY, sequence__max_length=512, adapter__type="lora", training__gradient_checkpointing=True)
    assert flops_per_token(ck)["total"] == 4 * n + 3 * attn + 6 * lora + 2 * (n - 6400) + attn


def test_hours_are_flops_over_throughput() -> None:
    p = plan(LLAMA8B, derived__total_tokens=100_000_000)
    est = estimate_plan(p)
    t = est["time"]
    s = setup(LLAMA8B)
    gpu = catalog.gpus()["H100"]
    per_token = flops_per_token(s)["total"]
    expected = 100_000_000 * per_token / (gpu["bf16_tflops"] * 1e12 * utilisation(s, gpu)) / 3600
    assert t["hours"] == pytest.approx(expected, abs=1e-3)
    assert t["tokens"] == 100_000_000 and "derived.total_tokens" in t["basis"]
    # 8B full fine-tune: ~6 × 8e9 FLOPs per token, ~100M tokens on one H100 at 40% is about 3-4 hours
    assert 2 < t["hours"] < 6


def test_more_gpus_fewer_hours_and_utilisation_is_bounded() -> None:
    one = estimate_plan(plan(LLAMA8B, derived__total_tokens=10**8))["time"]
    eight = estimate_plan(plan(LLAMA8B, derived__total_tokens=10**8, target__num_gpus=8, deepspeed__stage=3))["time"]
    assert one["hours"] / 8 < eight["hours"] < one["hours"] / 6
    for g, spec in catalog.gpus().items():
        assert 0 < utilisation(setup(TINY), spec) <= spec["mfu"] <= 0.6, g


def test_tokens_from_rows_or_bytes_or_unknown() -> None:
    s = setup(TINY, sequence__max_length=1024)
    rows = plan(TINY, sequence__max_length=1024, derived__rows=1000)
    assert total_tokens(s, rows) == (1000 * 1024, "rows × max_length (upper bound: every row padded to max_length)")
    rows["data"] = {"datasets": [{"bytes": 400_000, "rows": 1000}]}
    tokens, basis = total_tokens(s, rows)
    assert tokens == 100_000 and "bytes" in basis
    unknown = estimate_plan(plan(TINY))["time"]
    assert unknown["hours"] is None and unknown["tokens"] is None and "unknown" in unknown["basis"]
