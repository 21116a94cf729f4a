"""ZeRO-2/3 per-rank model states against DeepSpeed's own estimators, on the same model shapes.

DeepSpeed ships closed-form estimators (`estimate_zero2_model_states_mem_needs`,
`estimate_zero3_model_states_mem_needs`, what `..._all_live(model)` calls after counting a model's
parameters). loft's estimate must agree with them term by term; where the two differ, the test names the
difference and checks it is exactly that:
- both shard fp32 master weights, fp32 Adam m and v and the gradient partition over the N ranks; ZeRO-2
  keeps the bf16 parameters whole: 2·P + 18·P/N bytes in both;
- loft adds the two reduce buckets in flight (h² elements each in bf16, transformers' "auto" size), which
  DeepSpeed's estimate leaves out;
- ZeRO-3: loft also counts the bf16 gradient partition beside its fp32 copy in the step (2·P/N; DeepSpeed's
  18·P/N has one gradient) and, instead of DeepSpeed's 4 bytes × the largest layer, the gathered working
  set in the forward/backward phases (not in the optimizer phase compared here);
- offload: the CPU side holds fp32 master, m, v and fp32 gradients (16·P per node) in both; parameter
  offload adds the bf16 parameters (18·P). DeepSpeed's additional_buffer_factor (1.5 by default) is a
  margin, set to 1 here.
"""

from __future__ import annotations

from typing import Any

import pytest
from estimate_facts import LLAMA1B, LLAMA8B, QWEN05, plan
from loft.compiler.estimate import estimate_plan
from loft.compiler.estimate.params import count_params
from loft.compiler.estimate.vram import BUCKETS, GIB, WORKSPACE_BYTES

stage3 = pytest.importorskip("deepspeed.runtime.zero.stage3", reason="deepspeed is not installed")
stage2 = pytest.importorskip("deepspeed.runtime.zero.stage_1_and_2", reason="deepspeed is not installed")

SHAPES = {"qwen2.5-0.5b": QWEN05, "llama3.2-1b": LLAMA1B, "llama3.1-8b": LLAMA8B}


def _optimizer_phase_bytes(facts: dict[str, Any], n: int, **ds: Any) -> tuple[float, float]:
    """(device bytes of the optimizer-step phase without workspace and context, CPU bytes per rank)."""
    est = estimate_plan(plan(facts, deepspeed=ds, target__num_gpus=n, training__gradient_checkpointing=True))
    v = est["vram"]
    context = v["components"]["cuda_context"]
    return ((v["phase_peaks"]["optimizer"] - context) * GIB - WORKSPACE_BYTES, v["offload_cpu_gib"] * GIB)


def _buckets(facts: dict[str, Any]) -> float:
    return BUCKETS * 2.0 * facts["hidden_size"] ** 2


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("n", [2, 4, 8])
def test_zero2_matches_deepspeed(name: str, n: int) -> None:
    facts = SHAPES[name]
    p = count_params(facts)
    assert p is not None
    loft, _ = _optimizer_phase_bytes(facts, n, stage=2)
    _, ds_gpu = stage2.estimate_zero2_model_states_mem_needs(p, num_gpus_per_node=n, cpu_offload=False,
                                                             additional_buffer_factor=1.0)
    assert loft - _buckets(facts) == pytest.approx(ds_gpu, abs=3 * 2**20)  # the rounding to 3 decimals of GiB

    loft_off, cpu = _optimizer_phase_bytes(facts, n, stage=2, offload_optimizer=True)
    ds_cpu, ds_gpu = stage2.estimate_zero2_model_states_mem_needs(p, num_gpus_per_node=n, cpu_offload=True,
                                                                  additional_buffer_factor=1.0)
    assert loft_off - _buckets(facts) == pytest.approx(ds_gpu, abs=3 * 2**20)
    if n <= 4:  # above 4 GPUs DeepSpeed sizes the CPU for every rank's full fp32 copy at initialisation
        assert cpu * n == pytest.approx(ds_cpu, rel=1e-3)


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("n", [2, 8])
def test_zero3_matches_deepspeed(name: str, n: int) -> None:
    facts = SHAPES[name]
    p = count_params(facts)
    assert p is not None
    largest = facts["vocab_size"] * facts["hidden_size"]  # the embedding is these models' largest module
    loft, _ = _optimizer_phase_bytes(facts, n, stage=3)
    _, ds_gpu, largest_mem = stage3.estimate_zero3_model_states_mem_needs(
        p, largest, num_gpus_per_node=n, cpu_offload=False, cpu_offload_params=False,
        additional_buffer_factor=1.0)
    bf16_grad_partition = 2.0 * p / n
    assert loft - _buckets(facts) - bf16_grad_partition == pytest.approx(ds_gpu - largest_mem, abs=3 * 2**20)

    loft_off, cpu = _optimizer_phase_bytes(facts, n, stage=3, offload_optimizer=True)
    ds_cpu, ds_gpu, _ = stage3.estimate_zero3_model_states_mem_needs(
        p, largest, num_gpus_per_node=n, cpu_offload=True, cpu_offload_params=False,
        additional_buffer_factor=1.0)
    assert loft_off - _buckets(facts) == pytest.approx(ds_gpu - largest_mem, abs=3 * 2**20)
    assert cpu * n == pytest.approx(ds_cpu, rel=1e-3)

    loft_all, cpu_all = _optimizer_phase_bytes(facts, n, stage=3, offload_optimizer=True, offload_params=True)
    ds_cpu, ds_gpu, _ = stage3.estimate_zero3_model_states_mem_needs(
        p, largest, num_gpus_per_node=n, cpu_offload=True, cpu_offload_params=True,
        additional_buffer_factor=1.0)
    assert loft_all - _buckets(facts) == pytest.approx(ds_gpu - largest_mem, abs=3 * 2**20)
    assert cpu_all * n == pytest.approx(ds_cpu, rel=1e-3)


def test_parameter_counts_match_deepspeeds_model_walk() -> None:
    """`..._all_live(model)` counts a real module's parameters (tied ones once): loft counts the same from
    config.json facts, on a small random-weight model built by transformers."""
    transformers = pytest.importorskip("transformers")
    facts = {"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 1000,
             "tie_word_embeddings": True}
    cfg = transformers.Qwen2Config(**{k: v for k, v in facts.items() if k != "model_type"})
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    total, largest = stage3.model_to_params(model)
    assert total == count_params(facts)
    assert largest == facts["vocab_size"] * facts["hidden_size"]
