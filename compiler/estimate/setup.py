"""What the estimator reads from a plan, normalised once (the formulas never touch the raw plan).

Every unknown or "auto" value becomes an explicit choice recorded in `assumptions`, so the report says
what the numbers were computed for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .params import (
    Arch,
    arch_from_facts,
    count_expert_lora_params,
    count_lora_params,
    count_module_params,
    count_unfrozen_params,
    unfrozen_match,
)

# sequence.max_length: auto is decided at prepare time from the data; size for the schema default.
AUTO_MAX_LENGTH = 2048
DTYPE_BYTES = {"bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp32": 4, "float32": 4, "4bit": 2, "8bit": 2}
# Decoder families whose layers are Llama-shaped (RMSNorm/LayerNorm, attention, gated or plain MLP): the
# per-layer activation terms were derived for these. Others get the same formulas with a stated caveat.
LLAMA_LIKE = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "phi3", "phi", "cohere", "cohere2", "olmo", "olmo2", "granite", "smollm3", "starcoder2",
    "gpt_neox", "gpt2", "falcon", "stablelm", "internlm2", "deepseek_v2", "deepseek_v3", "exaone", "glm", "glm4",
})
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd")


def _get(d: Mapping[str, Any] | None, *keys: str, default: Any = None) -> Any:
    cur: Any = d
    for k in keys:
        if not isinstance(cur, Mapping):
            return default
        cur = cur.get(k)
    return default if cur is None else cur


def _pos_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 else None


@dataclass(frozen=True)
class Setup:
    """One training step's shape and memory-relevant switches."""

    arch: Arch
    params: int
    adapter: str  # none | lora | qlora
    lora_r: int
    lora_dropout: float
    lora_targets: Any
    lora_params: int
    weight_bytes: int  # as loaded (bf16 2, fp32 4); qlora: bf16 for non-quantised tensors
    precision: str  # bf16 | fp16 | fp32
    micro_batch: int
    micro_batch_auto: bool
    seq_len: int
    attn: str  # sdpa | eager | flash_attention_2 | flash_attention_3 | auto
    grad_ckpt: bool
    optimizer: str
    liger: bool
    cce: bool
    zero_stage: int
    offload_optimizer: bool
    offload_params: bool
    fsdp: str | None  # None, full_shard, shard_grad_op, hybrid_shard, no_shard
    fsdp_offload: bool
    num_gpus: int  # per node
    nodes: int
    gpu: str
    provider: str | None
    grad_accum: int = 1
    unfrozen: int | None = None  # full fine-tune of only the parameters training.unfrozen_parameters matches
    embedding_trainable: bool = True  # (full fine-tune) the input embedding gets a gradient
    assumptions: tuple[str, ...] = field(default=())

    @property
    def world(self) -> int:
        return max(1, self.num_gpus * self.nodes)

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len

    @property
    def compute_bytes(self) -> int:
        """Bytes of an activation element: bf16/fp16 under mixed precision, fp32 otherwise."""
        return 4 if self.precision == "fp32" else 2

    @property
    def autocast(self) -> bool:
        """Mixed precision over fp32 weights: autocast keeps a bf16 copy of each weight it casts."""
        return self.weight_bytes == 4 and self.precision in ("bf16", "fp16") and not self.deepspeed

    @property
    def deepspeed(self) -> bool:
        return self.zero_stage > 0

    @property
    def trainable(self) -> int:
        if self.adapter in ("lora", "qlora"):
            return self.lora_params
        return self.params if self.unfrozen is None else self.unfrozen

    def with_(self, **kw: Any) -> Setup:
        return replace(self, **kw)


def setup_from_plan(plan: Mapping[str, Any]) -> tuple[Setup | None, str]:
    """(Setup, "") or (None, why the model cannot be sized)."""
    facts = plan.get("model") or {}
    arch = arch_from_facts(facts)
    if arch is None:
        missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                               "intermediate_size") if _pos_int(facts.get(k)) is None]
        mid = facts.get("id") or facts.get("path") or "the model"
        return None, (f"{mid}: architecture facts unknown ({', '.join(missing) or 'unsupported layout'}), "
                      "so VRAM, time and cost cannot be estimated")
    cfg = plan.get("config") or {}
    derived = plan.get("derived") or {}
    assumptions: list[str] = []
    if arch.model_type not in LLAMA_LIKE:
        assumptions.append(f"model_type {arch.model_type or 'unknown'!r} is sized as a Llama-style decoder "
                           "(state-space or hybrid layers and vision towers are not modelled)")

    adapter = str(_get(cfg, "adapter", "type", default="none")).lower()
    if adapter not in ("none", "lora", "qlora"):
        assumptions.append(f"adapter.type {adapter!r} is not modelled: sized as LoRA")
        adapter = "lora"
    r = _pos_int(_get(cfg, "adapter", "r")) or 16
    dropout = _get(cfg, "adapter", "dropout", default=0.0)
    dropout = float(dropout) if isinstance(dropout, (int, float)) and math.isfinite(dropout) else 0.0
    targets = _get(cfg, "adapter", "target_modules", default="all-linear")
    lora_params = count_lora_params(arch, r, targets) if adapter != "none" else 0
    target_parameters = list(_get(cfg, "adapter", "target_parameters", default=[]) or [])
    to_save = list(_get(cfg, "adapter", "modules_to_save", default=[]) or [])
    extra_lora = 0
    if adapter != "none" and target_parameters:
        expert_lora = count_expert_lora_params(arch, r, target_parameters)
        extra_lora += expert_lora
        if not expert_lora:
            assumptions.append(f"adapter.target_parameters {target_parameters} matched no expert tensor of the "
                               "facts (dense model or unknown layout): sized without them")
    if adapter != "none" and to_save:
        extra_lora += count_module_params(arch, to_save)
        assumptions.append(f"adapter.modules_to_save {to_save}: trained in full (gradients and optimizer states "
                           "counted); the frozen original each keeps is not counted")
    only_experts = bool(target_parameters) and targets == []  # target_modules: [] = no module LoRA by design
    if adapter != "none" and lora_params == 0 and not only_experts:
        assumptions.append(f"adapter.target_modules {targets!r} matched no known linear: sized as all-linear")
        lora_params = count_lora_params(arch, r, "all-linear")
        targets = "all-linear"
    lora_params += extra_lora
    unfrozen, embedding_trainable = None, True
    patterns = _get(cfg, "training", "unfrozen_parameters")
    if adapter == "none" and patterns:
        unfrozen = count_unfrozen_params(arch, list(patterns))
        embedding_trainable = unfrozen_match(list(patterns), "model.embed_tokens.weight")
        assumptions.append(f"training.unfrozen_parameters: {unfrozen:,} of {arch.total:,} parameters train, counted "
                           "by matching the patterns against Llama-style parameter names built from the facts "
                           "(norms of a layer count as one name; other layouts may match differently)")

    dtype = str(_get(cfg, "model", "dtype", default="bf16")).lower()
    weight_bytes = DTYPE_BYTES.get(dtype, 2)
    precision = str(_get(cfg, "training", "precision", default="bf16")).lower()
    if precision not in ("bf16", "fp16", "fp32"):
        precision = "bf16"

    seq = _get(cfg, "sequence", "max_length")
    seq_len = _pos_int(seq)
    if seq_len is None:
        max_pos = _pos_int(facts.get("max_position_embeddings"))
        seq_len = min(AUTO_MAX_LENGTH, max_pos) if max_pos else AUTO_MAX_LENGTH
        assumptions.append(f"sequence.max_length is {seq!r} (chosen from the data at prepare): sized for {seq_len}")

    micro = _get(cfg, "training", "micro_batch_size")
    if micro is None:
        micro = derived.get("micro_batch_size")
    micro_auto = _pos_int(micro) is None
    micro_batch = _pos_int(micro) or 1

    opt = str(_get(cfg, "training", "optimizer", default="adamw_torch_fused")).lower()
    if opt not in OPTIMIZERS:
        assumptions.append(f"optimizer {opt!r} is not modelled: sized as AdamW (two states per parameter)")
        opt = "adamw_torch"

    attn = str(_get(cfg, "model", "attn_implementation", default="sdpa")).lower()
    stage = _pos_int(_get(cfg, "deepspeed", "stage")) or 0
    fsdp = None
    if _get(cfg, "fsdp", "enabled", default=False):
        fsdp = str(_get(cfg, "fsdp", "sharding", default="full_shard"))
        if stage:
            assumptions.append("both FSDP and DeepSpeed are set: sized as DeepSpeed")
            fsdp = None
    num_gpus = _pos_int(_get(cfg, "target", "num_gpus")) or 1
    nodes = _pos_int(_get(cfg, "target", "nodes")) or 1
    gpu = str(_get(cfg, "target", "gpu", default="H100"))
    provider = _get(cfg, "target", "provider")
    kernels = _get(cfg, "training", "kernels", default={}) or {}
    accum = _pos_int(derived.get("gradient_accumulation_steps")) or _pos_int(
        _get(cfg, "training", "gradient_accumulation_steps")) or 1
    setup = Setup(
        arch=arch,
        params=arch.total,
        adapter=adapter,
        lora_r=r,
        lora_dropout=dropout,
        lora_targets=targets,
        lora_params=lora_params,
        weight_bytes=weight_bytes,
        precision=precision,
        micro_batch=micro_batch,
        micro_batch_auto=micro_auto,
        seq_len=seq_len,
        attn=attn,
        grad_ckpt=bool(_get(cfg, "training", "gradient_checkpointing", default=False)),
        optimizer=opt,
        liger=bool(kernels.get("liger")) if isinstance(kernels, Mapping) else False,
        cce=bool(kernels.get("cut_cross_entropy")) if isinstance(kernels, Mapping) else False,
        zero_stage=min(stage, 3),
        offload_optimizer=bool(_get(cfg, "deepspeed", "offload_optimizer", default=False)) and stage > 0,
        offload_params=bool(_get(cfg, "deepspeed", "offload_params", default=False)) and stage == 3,
        fsdp=fsdp,
        fsdp_offload=bool(_get(cfg, "fsdp", "offload_params", default=False)) and fsdp is not None,
        num_gpus=num_gpus,
        nodes=nodes,
        gpu=gpu,
        provider=str(provider) if provider else None,
        grad_accum=accum,
        unfrozen=unfrozen,
        embedding_trainable=embedding_trainable,
        assumptions=tuple(assumptions),
    )
    return setup, ""
