"""The estimator never raises on odd facts or config values (a build of an exotic config must still work)."""

from __future__ import annotations

import json
from pathlib import Path

from estimate_facts import TINY, plan
from hypothesis import given, settings
from hypothesis import strategies as st
from loft.compiler.estimate import estimate_plan

ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=5),
                st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FACT_KEYS = [*TINY, "moe_intermediate_size", "attention_bias", "max_position_embeddings"]
CONFIG_KEYS = ["model__dtype", "model__attn_implementation", "adapter__type", "adapter__r", "adapter__dropout",
               "adapter__target_modules", "sequence__max_length", "training__micro_batch_size",
               "training__optimizer", "training__precision", "training__gradient_checkpointing",
               "training__kernels", "deepspeed__stage", "deepspeed__offload_optimizer", "fsdp__enabled",
               "fsdp__sharding", "target__gpu", "target__num_gpus", "target__nodes", "target__provider",
               "derived__total_tokens", "derived__rows", "derived__gradient_accumulation_steps"]


@settings(max_examples=300, deadline=None)
@given(facts=st.dictionaries(st.sampled_from(FACT_KEYS), ODD, max_size=6),
       over=st.dictionaries(st.sampled_from(CONFIG_KEYS), ODD, max_size=5))
def test_never_raises(facts: dict, over: dict) -> None:
    est = estimate_plan(plan({**TINY, **facts}, **over))
    json.dumps(est, allow_nan=False)
    total = est["vram"]["total_gib"]
    assert total is None or total > 0


def test_absurd_finite_sizes_overflow_to_unknown() -> None:
    """Found by hypothesis: finite but absurd sizes overflowed to inf, which strict JSON cannot hold."""
    est = estimate_plan(plan({**TINY, "num_hidden_layers": 1.9351464199555203e153},
                             sequence__max_length=3.7948124400528256e151))
    json.dumps(est, allow_nan=False)
    assert est["vram"]["unknown"] and est["vram"]["total_gib"] is None


def test_non_finite_numbers() -> None:
    inf, nan = float("inf"), float("nan")
    for facts in ({"hidden_size": inf}, {"num_hidden_layers": nan}, {"vocab_size": -inf}):
        assert estimate_plan(plan({**TINY, **facts}))["vram"]["unknown"]
    for over in ({"training__micro_batch_size": inf}, {"sequence__max_length": nan}, {"adapter__dropout": nan},
                 {"target__num_gpus": inf}, {"derived__total_tokens": inf}):
        est = estimate_plan(plan(TINY, **over))
        json.dumps(est, allow_nan=False)
        assert est["vram"]["total_gib"] > 0


def test_estimates_match_the_plan_schema() -> None:
    import jsonschema

    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json").read_text())
    sub = schema["properties"]["estimate"]
    for p in (plan(TINY), plan({}), plan(TINY, adapter__type="qlora", derived__total_tokens=10**6)):
        jsonschema.validate(estimate_plan(p), sub)
