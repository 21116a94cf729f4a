"""Parameter counts from config.json facts alone (no weights, no torch).

The estimator needs more than a total: LoRA sizes come from each targeted linear's (in, out), Adafactor's
factored states from each matrix's (rows, cols), and the logits/embedding terms from vocab × hidden. So
the architecture is described once, as a list of linear modules per layer plus the non-layer tensors,
and every count is derived from that list. Checked exactly against Qwen2.5-0.5B (494,032,768) and
Llama-3.2-1B (1,235,814,400).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Architectures whose MLP is a plain up → act → down (two matrices) instead of gated (three).
NON_GATED_MLP = frozenset(
    {"gpt2", "gpt_neox", "gptj", "phi", "falcon", "starcoder2", "opt", "bloom", "gpt_bigcode", "mpt"}
)
# Architectures with a bias on q, k, v (Qwen2 family); others default to no attention bias.
QKV_BIAS = frozenset({"qwen2", "qwen2_moe", "qwen2_vl"})
# Gemma 2/3 norm both before and after attention and MLP (four RMSNorms per layer instead of two).
SANDWICH_NORM = frozenset({"gemma2", "gemma3", "gemma3_text"})
# RMSNorm over each head's queries and keys (one head_dim-sized weight each).
QK_NORM = frozenset({"qwen3", "qwen3_moe", "gemma3", "gemma3_text"})
# The linear module names PEFT's "all-linear" resolves to in Llama-style decoders.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Common aliases of other families, mapped onto the Llama-style names above.
MODULE_ALIASES = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
    "c_attn": ("q_proj", "k_proj", "v_proj"),
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
    "dense": ("o_proj",),
    "c_proj": ("o_proj", "down_proj"),
    "fc1": ("up_proj",),
    "fc2": ("down_proj",),
    "w1": ("gate_proj",),
    "w3": ("up_proj",),
    "w2": ("down_proj",),
    "dense_h_to_4h": ("up_proj",),
    "dense_4h_to_h": ("down_proj",),
    "out_proj": ("o_proj",),
}


@dataclass(frozen=True)
class Linear:
    """One linear module of a decoder layer: `count` copies per layer (experts), shape in → out."""

    name: str
    d_in: int
    d_out: int
    count: int = 1
    bias: bool = False
    expert: bool = False  # inside an MoE expert (transformers 5 stores these as fused 3-D parameters)

    @property
    def params(self) -> int:
        return self.count * (self.d_in * self.d_out + (self.d_out if self.bias else 0))


@dataclass(frozen=True)
class Arch:
    """The shapes the estimator needs, derived from config.json facts."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int
    experts_per_tok: int
    linears: tuple[Linear, ...]
    gated: bool
    norms_per_layer: int

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def embedding(self) -> int:
        return self.vocab * self.hidden

    @property
    def per_layer(self) -> int:
        return sum(lin.params for lin in self.linears) + self.norms_per_layer

    @property
    def total(self) -> int:
        lm_head = 0 if self.tied else self.embedding
        return self.embedding + lm_head + self.layers * self.per_layer + self.hidden

    @property
    def active_per_token(self) -> int:
        """Parameters one token's forward pass multiplies with (MoE: only the routed experts)."""
        if not self.experts:
            return self.total
        dense = sum(lin.params for lin in self.linears if not lin.expert)
        expert_one = sum(lin.params // max(lin.count, 1) for lin in self.linears if lin.expert)
        per_layer = dense + self.experts_per_tok * expert_one + self.norms_per_layer
        lm_head = 0 if self.tied else self.embedding
        return self.embedding + lm_head + self.layers * per_layer + self.hidden


def _int(facts: Mapping[str, Any], key: str) -> int | None:
    value = facts.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 else None


def arch_from_facts(facts: Mapping[str, Any]) -> Arch | None:
    """The architecture, or None when a fact the formulas need is missing (exotic or unknown models)."""
    hidden = _int(facts, "hidden_size")
    layers = _int(facts, "num_hidden_layers")
    heads = _int(facts, "num_attention_heads")
    vocab = _int(facts, "vocab_size")
    if hidden is None or layers is None or heads is None or vocab is None:
        return None
    kv_heads = _int(facts, "num_key_value_heads") or heads
    head_dim = _int(facts, "head_dim") or hidden // heads
    model_type = str(facts.get("model_type") or "").lower()
    gated = model_type not in NON_GATED_MLP
    intermediate = _int(facts, "intermediate_size") or (4 * hidden if not gated else None)
    if intermediate is None:
        return None
    experts = _int(facts, "num_experts") or _int(facts, "num_local_experts") or 0
    experts_per_tok = _int(facts, "num_experts_per_tok") or (2 if experts else 0)
    qkv_bias = bool(facts.get("attention_bias")) or model_type in QKV_BIAS
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    linears: list[Linear] = [
        Linear("q_proj", hidden, q_dim, bias=qkv_bias),
        Linear("k_proj", hidden, kv_dim, bias=qkv_bias),
        Linear("v_proj", hidden, kv_dim, bias=qkv_bias),
        Linear("o_proj", q_dim, hidden, bias=bool(facts.get("attention_bias"))),
    ]
    if experts:
        moe_inter = _int(facts, "moe_intermediate_size") or intermediate
        linears += [
            Linear("gate_proj", hidden, moe_inter, count=experts, expert=True),
            Linear("up_proj", hidden, moe_inter, count=experts, expert=True),
            Linear("down_proj", moe_inter, hidden, count=experts, expert=True),
            Linear("router", hidden, experts),
        ]
        shared = _int(facts, "shared_expert_intermediate_size")
        if shared:
            linears += [
                Linear("shared_gate_proj", hidden, shared),
                Linear("shared_up_proj", hidden, shared),
                Linear("shared_down_proj", shared, hidden),
            ]
    elif gated:
        linears += [
            Linear("gate_proj", hidden, intermediate),
            Linear("up_proj", hidden, intermediate),
            Linear("down_proj", intermediate, hidden),
        ]
    else:
        linears += [
            Linear("up_proj", hidden, intermediate, bias=True),
            Linear("down_proj", intermediate, hidden, bias=True),
        ]
    tied = facts.get("tie_word_embeddings")
    norms = (4 if model_type in SANDWICH_NORM else 2) * hidden + (2 * head_dim if model_type in QK_NORM else 0)
    return Arch(
        model_type=model_type,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        tied=bool(tied) if tied is not None else False,
        experts=experts,
        experts_per_tok=experts_per_tok,
        linears=tuple(linears),
        gated=gated,
        norms_per_layer=norms,
    )


def param_breakdown(facts: Mapping[str, Any]) -> dict[str, int] | None:
    """Parameters per component (embedding, lm_head, attention, mlp, norms, total), or None if unknown."""
    arch = arch_from_facts(facts)
    if arch is None:
        return None
    attn = sum(lin.params for lin in arch.linears if lin.name in ("q_proj", "k_proj", "v_proj", "o_proj"))
    mlp = sum(lin.params for lin in arch.linears) - attn
    return {
        "embedding": arch.embedding,
        "lm_head": 0 if arch.tied else arch.embedding,
        "attention": arch.layers * attn,
        "mlp": arch.layers * mlp,
        "norms": arch.layers * arch.norms_per_layer + arch.hidden,
        "total": arch.total,
        "active_per_token": arch.active_per_token,
    }


def count_params(model_facts: Mapping[str, Any]) -> int | None:
    """Total parameters from config.json facts, or None when the facts are not enough to count them."""
    breakdown = param_breakdown(model_facts)
    return None if breakdown is None else breakdown["total"]


def resolve_targets(target_modules: object) -> tuple[str, ...]:
    """LoRA target names (all-linear, a list, or aliases such as qkv_proj) as Llama-style module names."""
    if target_modules is None or target_modules == "all-linear" or target_modules == "all_linear":
        return ALL_LINEAR
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)  # type: ignore[call-overload]
    out: list[str] = []
    for name in names:
        for mapped in MODULE_ALIASES.get(str(name), (str(name),)):
            if mapped not in out:
                out.append(mapped)
    return tuple(out)


def lora_linears(arch: Arch, target_modules: object) -> list[Linear]:
    """The linears a LoRA adapter wraps. MoE experts are fused 3-D parameters in transformers 5, which
    PEFT's all-linear does not wrap, so only attention, router and shared-expert linears count there."""
    targets = resolve_targets(target_modules)
    chosen = []
    for lin in arch.linears:
        base = lin.name.removeprefix("shared_")
        if lin.expert or lin.name == "router":
            continue
        if base in targets or lin.name in targets:
            chosen.append(lin)
    return chosen


def count_lora_params(arch: Arch, r: int, target_modules: object) -> int:
    """r × (in + out) per targeted linear per layer (A is r×in, B is out×r)."""
    return arch.layers * sum(r * (lin.d_in + lin.d_out) * lin.count for lin in lora_linears(arch, target_modules))


# --- partial training: parameters named the way transformers' Llama-style decoders name them ---------------

def _linear_param_name(layer: int, lin: Linear) -> str:
    base = lin.name.removeprefix("shared_")
    if lin.name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        return f"model.layers.{layer}.self_attn.{lin.name}.weight"
    if lin.name == "router":
        return f"model.layers.{layer}.mlp.gate.weight"
    if lin.expert:  # transformers 5 fuses experts into 3-D tensors: gate_up_proj and down_proj
        return f"model.layers.{layer}.mlp.experts.{'down_proj' if base == 'down_proj' else 'gate_up_proj'}"
    if lin.name.startswith("shared_"):
        return f"model.layers.{layer}.mlp.shared_expert.{base}.weight"
    return f"model.layers.{layer}.mlp.{lin.name}.weight"


def named_params(arch: Arch) -> list[tuple[str, int]]:
    """(name, element count) of every parameter, with the names a Llama-style transformers decoder gives them
    (norms of a layer are one entry, `input_layernorm`). An approximation for other layouts: the estimator uses
    it to count what `training.unfrozen_parameters` patterns select."""
    out = [("model.embed_tokens.weight", arch.embedding)]
    for i in range(arch.layers):
        per_name: dict[str, int] = {}
        for lin in arch.linears:
            name = _linear_param_name(i, lin)
            per_name[name] = per_name.get(name, 0) + lin.params
        out += list(per_name.items())
        out.append((f"model.layers.{i}.input_layernorm.weight", arch.norms_per_layer))
    out.append(("model.norm.weight", arch.hidden))
    if not arch.tied:
        out.append(("lm_head.weight", arch.embedding))
    return out


def count_unfrozen_params(arch: Arch, patterns: list[str]) -> int:
    """Parameters whose names match any pattern (`re.search`, as the runtime does). Multimodal checkpoints
    name the text model `model.language_model.*`: a name matches when either spelling does."""
    return sum(n for name, n in named_params(arch) if unfrozen_match(patterns, name))


def unfrozen_match(patterns: list[str], name: str) -> bool:
    """Whether a parameter name (or its `model.language_model.` spelling) matches one of the patterns."""
    import re

    spellings = (name, name.replace("model.", "model.language_model.", 1) if name.startswith("model.") else name)
    return any(re.search(p, s) for p in patterns for s in spellings)


def count_expert_lora_params(arch: Arch, r: int, target_parameters: list[str]) -> int:
    """LoRA on fused expert tensors (PEFT `target_parameters`): r × (in + out) per expert and per layer, for the
    expert tensors whose name ends with a target (`experts.gate_up_proj` is one tensor: out = gate + up)."""
    fused: dict[str, tuple[int, int, int]] = {}  # tensor name -> (in, out, experts); gate and up share one
    for lin in arch.linears:
        if lin.expert:
            name = _linear_param_name(0, lin)
            d_in, d_out, count = fused.get(name, (lin.d_in, 0, lin.count))
            fused[name] = (d_in, d_out + lin.d_out, count)
    total = 0
    for name, (d_in, d_out, count) in fused.items():
        if any(name.endswith(t.strip(".")) for t in target_parameters):
            total += r * count * (d_in + d_out)  # PEFT: A is (r·experts × in), B is (out × r·experts)
    return arch.layers * total


def count_module_params(arch: Arch, modules: list[str]) -> int:
    """Parameters of the modules PEFT's `modules_to_save` trains in full (embed_tokens, lm_head, or a linear
    name such as o_proj in every layer)."""
    total = 0
    for m in modules:
        leaf = m.rsplit(".", 1)[-1]
        if leaf in ("embed_tokens", "wte", "word_embeddings"):
            total += arch.embedding
        elif leaf in ("lm_head", "output", "embed_out"):
            total += arch.embedding  # a tied head gets its own trainable copy
        else:
            total += arch.layers * sum(lin.params for lin in arch.linears if lin.name == leaf)
    return total
