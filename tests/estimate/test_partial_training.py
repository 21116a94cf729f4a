"""What trains when only part of the model does: unfrozen_parameters (counted by name pattern from the facts),
LoRA on fused expert tensors (target_parameters) and modules_to_save; the memory follows the trainable count."""

from __future__ import annotations

import pytest
from estimate_facts import LLAMA8B, TINY, plan
from loft.compiler.estimate import estimate_plan
from loft.compiler.estimate.params import (
    arch_from_facts,
    count_expert_lora_params,
    count_module_params,
    count_unfrozen_params,
    named_params,
)
from loft.compiler.estimate.setup import setup_from_plan

MIXTRAL = {**LLAMA8B, "model_type": "mixtral", "intermediate_size": 14336, "vocab_size": 32000,
           "num_experts": 8, "num_experts_per_tok": 2}


def test_named_params_add_up_to_the_total() -> None:
    for facts in (TINY, LLAMA8B, MIXTRAL):
        arch = arch_from_facts(facts)
        assert arch is not None
        assert sum(n for _, n in named_params(arch)) == arch.total


def test_unfrozen_patterns_count_by_name() -> None:
    arch = arch_from_facts(TINY)
    assert arch is not None
    assert count_unfrozen_params(arch, [r"^lm_head\."]) == 6400
    # layer 1's MLP by hand: gate/up/down 3 · 64 · 128
    assert count_unfrozen_params(arch, [r"model\.layers\.1\.mlp"]) == 3 * 64 * 128
    assert count_unfrozen_params(arch, [r"^lm_head", r"embed_tokens"]) == 2 * 6400
    # a multimodal checkpoint's spelling of the same text model
    assert count_unfrozen_params(arch, [r"model\.language_model\.layers\.1\.mlp"]) == 3 * 64 * 128
    assert count_unfrozen_params(arch, ["nothing-matches"]) == 0


def test_unfrozen_parameters_shrink_gradients_and_optimizer_states() -> None:
    full = estimate_plan(plan(LLAMA8B))["vram"]
    part = estimate_plan(plan(LLAMA8B, training__unfrozen_parameters=[r"model\.layers\.3[01]\.", "^lm_head"]))
    setup, _ = setup_from_plan(plan(LLAMA8B, training__unfrozen_parameters=[r"model\.layers\.3[01]\.", "^lm_head"]))
    assert setup is not None and setup.unfrozen is not None
    arch = setup.arch
    per_layer = arch.per_layer
    assert setup.trainable == 2 * per_layer + arch.embedding
    v = part["vram"]
    assert v["total_gib"] < full["total_gib"]
    assert not setup.embedding_trainable  # no dense embedding gradient either
    with_emb, _ = setup_from_plan(plan(LLAMA8B, training__unfrozen_parameters=["embed_tokens"]))
    assert with_emb is not None and with_emb.embedding_trainable and with_emb.trainable == arch.embedding
    assert any("unfrozen_parameters" in a for a in v["assumptions"])


def test_expert_lora_counts_rank_times_in_plus_out_per_expert() -> None:
    arch = arch_from_facts(MIXTRAL)
    assert arch is not None
    r, e, h, i = 16, 8, 4096, 14336
    down = 32 * e * r * (i + h)
    gate_up = 32 * e * r * (h + 2 * i)  # one fused gate_up_proj tensor: in h, out gate + up (as PEFT wraps it)
    assert count_expert_lora_params(arch, r, ["mlp.experts.down_proj"]) == down
    assert count_expert_lora_params(arch, r, ["experts.gate_up_proj", "experts.down_proj"]) == down + gate_up
    dense = arch_from_facts(LLAMA8B)
    assert dense is not None and count_expert_lora_params(dense, r, ["experts.down_proj"]) == 0


def test_target_parameters_and_modules_to_save_are_trainable() -> None:
    lora = {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    base, _ = setup_from_plan(plan(MIXTRAL, adapter=lora))
    experts, _ = setup_from_plan(plan(MIXTRAL, adapter={**lora, "target_parameters": ["experts.down_proj"]}))
    only, _ = setup_from_plan(plan(MIXTRAL, adapter={**lora, "target_modules": [],
                                                     "target_parameters": ["experts.down_proj"]}))
    saved, _ = setup_from_plan(plan(MIXTRAL, adapter={**lora, "modules_to_save": ["lm_head"]}))
    assert base and experts and only and saved
    arch = base.arch
    assert experts.trainable - base.trainable == count_expert_lora_params(arch, 16, ["experts.down_proj"])
    assert only.trainable == count_expert_lora_params(arch, 16, ["experts.down_proj"])
    assert not any("sized as all-linear" in a for a in only.assumptions)
    assert saved.trainable - base.trainable == count_module_params(arch, ["lm_head"]) == arch.embedding


@pytest.mark.parametrize("modules", [["embed_tokens"], ["model.embed_tokens"]])
def test_module_names_may_be_dotted(modules: list[str]) -> None:
    arch = arch_from_facts(TINY)
    assert arch is not None and count_module_params(arch, modules) == 6400
