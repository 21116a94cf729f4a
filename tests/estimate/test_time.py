"""Training FLOPs and hours against hand-computed values."""

from __future__ import annotations

import math

import pytest
from estimate_facts import LLAMA8B, QWEN05, TINY, plan
from loft.compiler.estimate import catalog, estimate_plan
from loft.compiler.estimate.setup import setup_from_plan
from loft.compiler.estimate.time import (
    KERNEL_LAUNCH_S,
    flops_per_token,
    kernels_per_step,
    matmul_params,
    memory_bytes_per_step,
    step_roofline,
    total_tokens,
    utilisation,
)


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


def test_hours_are_tokens_over_the_rooflines_throughput() -> None:
    p = plan(LLAMA8B, derived__total_tokens=100_000_000)
    est = estimate_plan(p)
    t = est["time"]
    s = setup(LLAMA8B)
    gpu = catalog.gpus()["H100"]
    per_token = flops_per_token(s)["total"]
    compute = 2048 * per_token / (gpu["bf16_tflops"] * 1e12 * utilisation(s, gpu))
    memory = memory_bytes_per_step(s) / (gpu["memory_tbps"] * 1e12)
    step = math.hypot(compute + memory, kernels_per_step(s) * KERNEL_LAUNCH_S)  # OVERLAP_NORM = 2
    assert t["step"]["seconds"] == pytest.approx(step, rel=1e-3)  # 4 significant digits in the plan
    assert t["hours"] == pytest.approx(100_000_000 / (2048 / step) / 3600, rel=1e-3)
    assert t["tokens"] == 100_000_000 and "derived.total_tokens" in t["basis"]
    # 8B full fine-tune: ~6 × 8e9 FLOPs per token, ~100M tokens on one H100 at 40% is about 3-4 hours
    assert 2 < t["hours"] < 6
    assert t["step"]["bound"] == "compute" and "bound by compute" in t["basis"]


def test_small_steps_are_bound_by_kernel_launches_large_ones_by_compute() -> None:
    """2,048 tokens of a 0.5B model cannot hide eager PyTorch's per-kernel host cost; 8B at 8k tokens can."""
    gpu = catalog.gpus()["H100"]
    small = step_roofline(setup(QWEN05), gpu)
    assert small["bound"] == "host (kernel launches)"
    assert small["launch_s"] > 2 * (small["compute_s"] + small["memory_s"])
    assert small["launch_s"] < small["step_s"] < 1.15 * small["launch_s"]  # the larger leg dominates
    big = step_roofline(setup(LLAMA8B, training__micro_batch_size=4), gpu)
    assert big["bound"] == "compute"
    assert big["compute_s"] + big["memory_s"] < big["step_s"] < 1.05 * (big["compute_s"] + big["memory_s"])
    # LoRA issues more kernels than full fine-tuning (5 ops per adapter), checkpointing re-runs the forward
    lora = setup(QWEN05, adapter__type="lora")
    assert kernels_per_step(lora) > kernels_per_step(setup(QWEN05))
    assert kernels_per_step(setup(QWEN05, training__gradient_checkpointing=True)) > kernels_per_step(setup(QWEN05))


def test_memory_leg_counts_the_optimizer_and_the_loss() -> None:
    s = setup(TINY)  # bf16 full fine-tune: fused AdamW reads p, g, m, v and writes p, m, v (bf16 all)
    a = s.arch
    expected = 2.0 * s.params * 2 + s.params * (2 * 2 + 2 + 4 * 2) + 40 * s.tokens * a.vocab
    assert memory_bytes_per_step(s) == pytest.approx(expected)
    fused = setup(TINY, training__kernels={"liger": True, "cut_cross_entropy": False})
    assert memory_bytes_per_step(fused) == pytest.approx(expected - 40 * s.tokens * a.vocab)
    for g, spec in catalog.gpus().items():
        assert 0.1 <= spec["memory_tbps"] <= 10, g


def test_more_gpus_fewer_hours_and_utilisation_is_bounded() -> None:
    one = estimate_plan(plan(LLAMA8B, derived__total_tokens=10**8))["time"]
    eight = estimate_plan(plan(LLAMA8B, derived__total_tokens=10**8, target__num_gpus=8, deepspeed__stage=3))["time"]
    # ZeRO-3 splits the optimizer step's memory traffic 8 ways, while the matmuls lose the all-reduce share:
    # per GPU the step is about as fast as alone, a little faster or slower
    assert one["hours"] / 9 < eight["hours"] < one["hours"] / 6
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
