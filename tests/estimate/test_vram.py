"""Peak VRAM formulas: each component against hand-computed bytes, and how predictions scale."""

from __future__ import annotations

import json

import pytest
from estimate_facts import LLAMA1B, LLAMA8B, QWEN05, TINY, plan
from loft.compiler.estimate import estimate_plan
from loft.compiler.estimate.setup import setup_from_plan
from loft.compiler.estimate.vram import (
    FRAGMENTATION,
    GIB,
    NF4_BYTES,
    layer_activation_bytes_per_token,
    logits_bytes_per_token,
    optimizer_state_bytes,
    vram,
)

P_QWEN = 494_032_768


def setup(facts: dict, **over: object):  # type: ignore[no-untyped-def]
    s, why = setup_from_plan(plan(facts, **over))
    assert s is not None, why
    return s


def comps(facts: dict, **over: object) -> dict:
    return estimate_plan(plan(facts, **over))["vram"]


def test_weights_and_adamw_states_bf16_full() -> None:
    v = comps(QWEN05)
    # bf16 weights: 2 bytes/param; torch AdamW keeps m and v in the parameter's dtype: 4 bytes/param
    assert v["components"]["weights"] == pytest.approx(2 * P_QWEN / GIB, abs=1e-3)
    assert v["component_max"]["optimizer"] == pytest.approx(4 * P_QWEN / GIB, abs=1e-3)
    # the tied embedding's dense gradient (bf16 V×h) is added to the lm_head's while both are alive, plus
    # the kernel's fp32 per-token partials (tokens × h)
    assert v["component_max"]["gradients"] == pytest.approx(
        (2 * P_QWEN + 2 * 151936 * 896 + 4 * 2048 * 896) / GIB, abs=1e-3)


def test_fp32_weights_with_mixed_precision_have_master_weights() -> None:
    v = comps(QWEN05, model__dtype="fp32")
    assert v["component_max"]["master_weights"] == pytest.approx(4 * P_QWEN / GIB, abs=1e-3)
    assert v["component_max"]["optimizer"] == pytest.approx(8 * P_QWEN / GIB, abs=1e-3)
    # autocast's bf16 copies of every linear and the (tied) lm_head during forward
    linear = P_QWEN - 151936 * 896 - (24 * 2 * 896 + 896)
    assert v["component_max"]["weights"] == pytest.approx(2 * (linear + 151936 * 896) / GIB, abs=1e-3)


def test_activation_bytes_per_layer_by_hand() -> None:
    h, kv, i, heads = 896, 128, 4864, 14
    # full fine-tune, bf16: two norms (fp32 upcast 4h + normalised 2h + output 2h), q 2h, k/v 2kv each,
    # attention output 2h, MLP gate/silu/up/product 2I each, log-sum-exp 4 bytes per head
    assert layer_activation_bytes_per_token(setup(QWEN05)) == 20 * h + 4 * kv + 8 * i + 4 * heads
    # LoRA (dropout > 0): norms keep only the fp32 upcast; each of the 7 adapters keeps a 1-byte mask and a
    # 2-byte dropped copy of its input; the frozen down_proj no longer needs the product
    lora = setup(QWEN05, adapter__type="lora")
    assert layer_activation_bytes_per_token(lora) == 30 * h + 4 * kv + 9 * i + 4 * heads
    # fp32 weights under autocast: fp32 norms and a separate bf16 cast of the input per reading linear
    assert layer_activation_bytes_per_token(setup(QWEN05, model__dtype="fp32")) == 30 * h + 4 * kv + 8 * i + 4 * heads
    # eager attention keeps the fp32 softmax and its bf16 copy: heads × seq × 6 bytes more per token
    eager = setup(QWEN05, model__attn_implementation="eager")
    assert layer_activation_bytes_per_token(eager) - layer_activation_bytes_per_token(setup(QWEN05)) == (
        2 * (2 * 896 - 2 * kv) + heads * 2048 * 6 - 4 * heads)


def test_logits_term_dominates_small_models_with_large_vocab() -> None:
    s = setup(QWEN05)
    assert logits_bytes_per_token(s, "backward") == 14 * 151936  # bf16 logits + fp32 saved, grad in, grad out
    assert logits_bytes_per_token(s, "forward") == 10 * 151936
    v = comps(QWEN05, training__micro_batch_size=4, sequence__max_length=2048)
    assert v["components"]["logits"] > v["components"]["activations"] > v["components"]["weights"]
    # batch 2 × 4096 and 8 × 1024 hold the same tokens and, without eager attention, the same memory
    a = comps(QWEN05, training__micro_batch_size=2, sequence__max_length=4096)["total_gib"]
    b = comps(QWEN05, training__micro_batch_size=8, sequence__max_length=1024)["total_gib"]
    assert a == b


def test_fused_loss_kernels_cut_the_logits() -> None:
    plain = comps(QWEN05, training__micro_batch_size=4)
    for kernel in ("liger", "cut_cross_entropy"):
        fused = comps(QWEN05, training__micro_batch_size=4,
                      training__kernels={"liger": kernel == "liger", "cut_cross_entropy": kernel != "liger"})
        assert fused["components"]["logits"] < plain["components"]["logits"] / 10
        assert fused["total_gib"] < plain["total_gib"]


def test_optimizer_variants() -> None:
    s = setup(LLAMA1B)
    n = s.params
    assert optimizer_state_bytes(s) == 4 * n
    assert optimizer_state_bytes(s.with_(optimizer="adamw_8bit")) == pytest.approx(2 * n, rel=0.01)
    assert optimizer_state_bytes(s.with_(optimizer="sgd")) == 0
    assert optimizer_state_bytes(s.with_(optimizer="adafactor")) < 0.01 * optimizer_state_bytes(s)
    # foreach AdamW (adamw_torch) needs a state-sized temporary in the step; the fused kernel does not
    fused = comps(LLAMA1B)["phase_peaks"]["optimizer"]
    foreach = comps(LLAMA1B, training__optimizer="adamw_torch")["phase_peaks"]["optimizer"]
    assert foreach - fused == pytest.approx(2 * n / GIB, abs=2e-3)


def test_qlora_weights_are_about_half_a_byte_per_param() -> None:
    s = setup(LLAMA8B, adapter__type="qlora")
    v = vram(s, 0.0)
    embeddings = 2 * 128256 * 4096
    linear = s.params - embeddings - (32 * 2 * 4096 + 4096)
    assert 0.5 < NF4_BYTES < 0.52  # 4 bits + double-quantised absmax: params/2 bytes + quant overhead
    # 4-bit linears; prepare_model_for_kbit_training upcasts the rest (embeddings, norms) to fp32; one
    # dequantised bf16 weight (the largest, 4096×14336) during its matmul; autocast's bf16 lm_head copy
    expected = NF4_BYTES * linear + 4 * (s.params - linear) + 2 * 4096 * 14336 + 2 * 128256 * 4096
    assert v["component_max"]["weights"] * GIB == pytest.approx(expected, rel=1e-6)
    # fp32 residual stream (bitsandbytes returns each linear's output in its input's dtype): fp32 norms
    # input 4h, adapters 3 bytes per input element, fp32 gate/silu/up outputs 12I
    h, kv, i = 4096, 1024, 14336
    assert layer_activation_bytes_per_token(s) == 30 * h + 4 * kv + 15 * i + 4 * 32
    lora = comps(LLAMA8B, adapter__type="lora", training__gradient_checkpointing=True)["total_gib"]
    qlora = comps(LLAMA8B, adapter__type="qlora", training__gradient_checkpointing=True)["total_gib"]
    assert qlora < lora - 5


def test_more_layers_more_memory() -> None:
    small = comps(LLAMA1B)["total_gib"]
    deep = comps({**LLAMA1B, "num_hidden_layers": 32})["total_gib"]
    assert deep > small + 2 * 1.0  # weights, grads and activations of 16 more layers


def test_checkpointing_keeps_only_layer_inputs() -> None:
    s = setup(LLAMA1B, training__gradient_checkpointing=True)
    v_off = comps(LLAMA1B, training__micro_batch_size=4)
    v_on = comps(LLAMA1B, training__micro_batch_size=4, training__gradient_checkpointing=True)
    assert v_on["components"]["activations"] * GIB == pytest.approx(4 * 2048 * (16 * 2 * 2048 + 8 * 2048), rel=1e-3)
    assert v_on["total_gib"] < v_off["total_gib"]
    assert s.grad_ckpt


def test_zero3_over_8_gpus_shrinks_model_states() -> None:
    one = comps(LLAMA8B, training__gradient_checkpointing=True)
    z3 = comps(LLAMA8B, training__gradient_checkpointing=True, deepspeed__stage=3, target__num_gpus=8)
    p = 8_030_261_248
    # DeepSpeed keeps fp32 m, v (8 bytes) and an fp32 master copy (4 bytes), each split over 8 GPUs;
    # ZeRO-3 also splits the bf16 weights (plus two gathered layers and the embedding at the loss)
    assert z3["components"]["optimizer"] == pytest.approx(8 * p / 8 / GIB, abs=1e-3)
    assert z3["components"]["master_weights"] == pytest.approx(4 * p / 8 / GIB, abs=1e-3)
    assert z3["component_max"]["weights"] < one["component_max"]["weights"] / 4
    assert z3["total_gib"] < one["total_gib"] / 3
    assert one["total_gib"] > 60 and z3["total_gib"] < 25
    z2 = comps(LLAMA8B, training__gradient_checkpointing=True, deepspeed__stage=2, target__num_gpus=8)
    z1 = comps(LLAMA8B, training__gradient_checkpointing=True, deepspeed__stage=1, target__num_gpus=8)
    assert z3["total_gib"] < z2["total_gib"] < z1["total_gib"]
    # FSDP full_shard ≈ ZeRO-3, shard_grad_op ≈ ZeRO-2
    fsdp = comps(LLAMA8B, training__gradient_checkpointing=True, target__num_gpus=8,
                 fsdp={"enabled": True, "sharding": "full_shard", "offload_params": False})
    assert fsdp["total_gib"] < z2["total_gib"]


def test_offload_moves_states_to_cpu() -> None:
    z3 = comps(LLAMA8B, deepspeed__stage=3, target__num_gpus=8, training__gradient_checkpointing=True)
    off = comps(LLAMA8B, deepspeed={"stage": 3, "offload_optimizer": True, "offload_params": True},
                target__num_gpus=8, training__gradient_checkpointing=True)
    assert off["total_gib"] < z3["total_gib"]
    assert off["component_max"]["optimizer"] == 0 and off["component_max"]["master_weights"] == 0
    p = 8_030_261_248
    # per rank: its eighth of fp32 m, v, master and fp32 grads (16 bytes) and of the bf16 parameters
    assert off["offload_cpu_gib"] == pytest.approx((16 * p / 8 + 2 * p / 8) / GIB, abs=1e-3)


def test_peak_is_the_max_over_phases_not_the_sum() -> None:
    v = comps(QWEN05, training__micro_batch_size=4)
    assert v["peak_phase"] in v["phase_peaks"]
    allocator = v["components"]["allocator_overhead"] + v["components"].get("allocator_holes", 0.0)
    assert max(v["phase_peaks"].values()) + allocator == pytest.approx(v["total_gib"], abs=2e-3)
    assert sum(v["components"].values()) == pytest.approx(v["total_gib"], abs=5e-3)
    # gradients and the logits' gradient are never at their largest together
    assert sum(v["component_max"].values()) > v["total_gib"] + 0.5


def test_gradient_accumulation_keeps_gradients_during_backward() -> None:
    one = comps(QWEN05, training__micro_batch_size=4)
    acc = comps(QWEN05, training__micro_batch_size=4, derived__gradient_accumulation_steps=4)
    # gradients are freed by zero_grad every optimizer step: transient bytes, with the allocator's share
    assert acc["total_gib"] - one["total_gib"] == pytest.approx(2 * P_QWEN / GIB * (1 + FRAGMENTATION), abs=0.01)


def test_max_micro_batch_fits_and_one_more_does_not() -> None:
    v = comps(LLAMA1B, training__gradient_checkpointing=True)
    mmb = v["max_micro_batch"]
    assert mmb > 1
    assert comps(LLAMA1B, training__gradient_checkpointing=True, training__micro_batch_size=mmb)["fits"]["H100"]
    assert not comps(LLAMA1B, training__gradient_checkpointing=True, training__micro_batch_size=mmb + 1)["fits"]["H100"]


def test_auto_micro_batch_reports_the_largest_that_fits() -> None:
    v = comps(LLAMA1B, training__micro_batch_size="auto", training__gradient_checkpointing=True)
    assert v["micro_batch"] == v["max_micro_batch"] > 1
    assert any("auto" in a for a in v["assumptions"])


def test_auto_max_length_is_stated() -> None:
    v = comps(TINY, sequence__max_length="auto")
    assert v["seq_len"] == 2048 and any("max_length" in a for a in v["assumptions"])


def test_obviously_oom_configs_do_not_fit_80gb() -> None:
    # 8B full fine-tune, bf16 AdamW, 8 × 4096 tokens without checkpointing: ~64 GB of states alone
    v = comps(LLAMA8B, training__micro_batch_size=8, sequence__max_length=4096)
    assert v["total_gib"] > 80 and not v["fits"]["H100"] and not v["fits"]["A100-80GB"]
    assert v["recommended"] is None or v["recommended"]["gpu"] in ("H200", "B200", "MI300X")


@pytest.mark.parametrize("model", [{}, {"hidden_size": 64}, {"model_type": "weird", "hidden_size": None},
                                   {**TINY, "vocab_size": "many"}])
def test_unknown_facts_never_crash(model: dict) -> None:
    est = estimate_plan(plan(model))
    assert est["vram"]["unknown"] and est["vram"]["total_gib"] is None and est["warnings"][0]["code"] == "estimate-unknown"
    json.dumps(est)


def test_garbage_config_values_never_crash() -> None:
    p = plan(TINY)
    p["config"]["training"] = {"micro_batch_size": "lots", "optimizer": "lion", "kernels": None}
    p["config"]["deepspeed"] = None
    p["config"]["target"] = {"gpu": "TPUv5", "num_gpus": "two"}
    est = estimate_plan(p)
    assert est["vram"]["total_gib"] > 0
    codes = {w["code"] for w in est["warnings"]}
    assert "unknown-gpu" in codes
    assert any("lion" in a for a in est["vram"]["assumptions"])


def test_deterministic_and_rounded() -> None:
    a = json.dumps(estimate_plan(plan(LLAMA8B, adapter__type="lora")), sort_keys=True)
    b = json.dumps(estimate_plan(plan(LLAMA8B, adapter__type="lora")), sort_keys=True)
    assert a == b
    v = json.loads(a)["vram"]
    assert all(round(x, 3) == x for x in v["components"].values())


def test_cpu_target_sizes_for_the_reference_gpu_without_time() -> None:
    est = estimate_plan(plan(TINY, target__gpu="cpu", derived__total_tokens=10**6))
    assert est["vram"]["gpu"] == "H100" and est["time"]["hours"] is None
    assert any("cpu" in a for a in est["vram"]["assumptions"])
    assert "unknown-gpu" not in {w["code"] for w in est["warnings"]}
