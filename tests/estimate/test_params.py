"""Parameter counts from config.json facts, checked against hand counts and published totals."""

from __future__ import annotations

import pytest
from estimate_facts import LLAMA1B, LLAMA8B, QWEN05, TINY
from loft.compiler.estimate.params import arch_from_facts, count_lora_params, count_params, param_breakdown


def test_tiny_model_counted_by_hand() -> None:
    # per layer: q 64·64 + k 64·32 + v 64·32 + o 64·64 = 12288; gate/up/down 3·64·128 = 24576; 2 norms 128
    per_layer = 12288 + 24576 + 128
    # untied: embedding and lm_head 100·64 each, final norm 64
    assert count_params(TINY) == 2 * per_layer + 2 * 6400 + 64 == 86848
    b = param_breakdown(TINY)
    assert b is not None
    assert b["embedding"] == b["lm_head"] == 6400
    assert b["attention"] == 2 * 12288 and b["mlp"] == 2 * 24576


@pytest.mark.parametrize(("facts", "total"), [
    (QWEN05, 494_032_768),  # calibration file's `params` for qwen2.5-0.5b (qkv bias, tied)
    (LLAMA1B, 1_235_814_400),  # calibration file's `params` for llama3.2-1b
    (LLAMA8B, 8_030_261_248),  # Llama-3.1-8B's published parameter count (untied)
])
def test_published_totals(facts: dict, total: int) -> None:
    assert count_params(facts) == total


def test_moe_counts_every_expert_but_activates_top_k() -> None:
    mixtral = {**LLAMA8B, "model_type": "mixtral", "intermediate_size": 14336, "vocab_size": 32000,
               "num_experts": 8, "num_experts_per_tok": 2}
    assert count_params(mixtral) == 46_702_792_704  # Mixtral-8x7B
    b = param_breakdown(mixtral)
    assert b is not None and 12e9 < b["active_per_token"] < 13.5e9  # "≈ 12.9B active"


def test_sandwich_and_qk_norms() -> None:
    gemma2_9b = {"model_type": "gemma2", "hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16,
                 "num_key_value_heads": 8, "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000,
                 "tie_word_embeddings": True}
    assert count_params(gemma2_9b) == 9_241_705_984
    qwen3_8b = {"model_type": "qwen3", "hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288, "vocab_size": 151936,
                "tie_word_embeddings": False}
    assert count_params(qwen3_8b) == 8_190_735_360


@pytest.mark.parametrize("facts", [{}, {"hidden_size": 64}, {**TINY, "vocab_size": None},
                                   {**TINY, "hidden_size": "big"}, {**TINY, "num_hidden_layers": True},
                                   {**TINY, "hidden_size": -1}])
def test_unknown_facts_give_none(facts: dict) -> None:
    assert count_params(facts) is None
    assert param_breakdown(facts) is None


def test_defaults_for_optional_facts() -> None:
    no_kv = {k: v for k, v in TINY.items() if k not in ("num_key_value_heads", "head_dim")}
    # kv heads default to the attention heads (MHA) and head_dim to hidden / heads: k and v become 64×64
    assert count_params(no_kv) == count_params(TINY) + 2 * 2 * 64 * 32


def test_lora_params_r_times_in_plus_out() -> None:
    arch = arch_from_facts(QWEN05)
    assert arch is not None
    assert count_lora_params(arch, 16, "all-linear") == 8_798_208  # PEFT's count in the calibration file
    # q_proj 896→896 and v_proj 896→128 only: 24 layers × 16 × ((896+896) + (896+128))
    assert count_lora_params(arch, 16, ["q_proj", "v_proj"]) == 24 * 16 * (1792 + 1024)
    # aliases of fused modules map onto the separate ones
    assert count_lora_params(arch, 8, ["qkv_proj"]) == count_lora_params(arch, 8, ["q_proj", "k_proj", "v_proj"])
    assert count_lora_params(arch, 16, ["no_such_module"]) == 0
