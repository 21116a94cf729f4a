"""Training time: model FLOPs per token × tokens ÷ (peak bf16 FLOP/s × utilisation × GPUs).

FLOPs per token (forward = 2 FLOPs per multiply-add):
- matmuls: N = every linear a token passes through (MoE: its routed experts only) + the lm_head (V × h);
  full fine-tuning: forward 2N, backward 4N (input and weight gradients) → 6N;
  LoRA: forward 2N, backward 2N (input gradients only, the base is frozen) + 6 × adapter params;
- attention scores: QKᵀ and AV over a causal context of S/2 keys on average → 2·L·q_dim·S forward,
  twice that backward;
- gradient checkpointing re-runs every layer's forward once more in the backward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .setup import Setup

# Small models cannot keep a GPU's tensor cores busy: per-kernel overheads and memory-bound ops (norms,
# rotary, softmax, the loss) weigh more. Utilisation is scaled by (hidden / 2048) ** SIZE_EXPONENT below
# hidden 2048: Llama-3.2-1B (hidden 2048) already reaches 36-38% on an H100 in the calibration file, about
# what 7-8B models reach in published Trainer runs; Qwen2.5-0.5B (hidden 896) reaches 21-24%.
SIZE_REFERENCE_HIDDEN = 2048
SIZE_EXPONENT = 0.75
# LoRA steps run many small adapter matmuls and dropout kernels beside the frozen ones: the calibration
# runs reach about 0.5× the utilisation (in these FLOPs) of full fine-tuning of the same model.
LORA_EFFICIENCY = 0.5
# QLoRA dequantises every 4-bit weight before each matmul (memory-bound): published QLoRA throughput is
# roughly 0.6-0.7× LoRA on the same GPU.
QLORA_EFFICIENCY = 0.65
# fp32 weights under autocast re-cast every weight to bf16 in each forward (and each recomputation): the
# calibration's fp32-master runs reach ~0.88× the bf16 runs' utilisation.
AUTOCAST_EFFICIENCY = 0.88
# Optimizer and parameter offload move states over PCIe every step.
OFFLOAD_EFFICIENCY = {"optimizer": 0.7, "params": 0.5}
# Data-parallel scaling: gradients are all-reduced each step (NVLink inside a node, network across nodes).
SCALING = {"node": 0.95, "multi_node": 0.85}
# Characters per token for raw-bytes token estimates (English text in chat JSONL with its keys).
BYTES_PER_TOKEN = 4.0


def matmul_params(s: Setup) -> int:
    """Weights a token multiplies with: routed linears of every layer + the lm_head."""
    a = s.arch
    per_layer = 0
    for lin in a.linears:
        if lin.expert:
            per_layer += (lin.params // max(lin.count, 1)) * max(1, a.experts_per_tok)
        else:
            per_layer += lin.params
    return a.layers * per_layer + a.vocab * a.hidden


def flops_per_token(s: Setup) -> dict[str, float]:
    a = s.arch
    n = float(matmul_params(s))
    n_layers = n - a.vocab * a.hidden
    attn_fwd = 2.0 * a.layers * a.q_dim * s.seq_len
    if s.adapter == "none":
        train = 6.0 * n + 3.0 * attn_fwd
    else:
        train = 4.0 * n + 3.0 * attn_fwd + 6.0 * s.lora_params
    recompute = 2.0 * n_layers + attn_fwd if s.grad_ckpt else 0.0
    return {"matmul_params": n, "attention_forward": attn_fwd, "recompute": recompute, "total": train + recompute}


def utilisation(s: Setup, gpu: Mapping[str, Any]) -> float:
    mfu = float(gpu.get("mfu") or 0.35)
    mfu *= min(1.0, s.arch.hidden / SIZE_REFERENCE_HIDDEN) ** SIZE_EXPONENT
    if s.adapter == "lora":
        mfu *= LORA_EFFICIENCY
    elif s.adapter == "qlora":
        mfu *= LORA_EFFICIENCY * QLORA_EFFICIENCY
    if s.autocast:
        mfu *= AUTOCAST_EFFICIENCY
    if s.offload_optimizer or s.fsdp_offload:
        mfu *= OFFLOAD_EFFICIENCY["optimizer"]
    if s.offload_params or s.fsdp_offload:
        mfu *= OFFLOAD_EFFICIENCY["params"]
    if s.world > 1:
        mfu *= SCALING["multi_node" if s.nodes > 1 else "node"]
    return mfu


def total_tokens(s: Setup, plan: Mapping[str, Any]) -> tuple[int | None, str]:
    """Tokens the run trains on, and where the number comes from."""
    derived = plan.get("derived") or {}
    known = derived.get("total_tokens")
    if isinstance(known, int) and not isinstance(known, bool) and known > 0:
        return known, "plan derived.total_tokens (steps × global batch × max_length)"
    rows = derived.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows <= 0:
        return None, "dataset size unknown (hub dataset or a directory): no token count before prepare"
    padded = rows * s.seq_len
    cfg = plan.get("config") or {}
    packing = bool((cfg.get("sequence") or {}).get("packing"))
    datasets = (plan.get("data") or {}).get("datasets") or []
    sizes = [d.get("bytes") for d in datasets if isinstance(d, Mapping)]
    if packing and sizes and all(isinstance(b, int) and b > 0 for b in sizes):
        epochs = (cfg.get("training") or {}).get("epochs") or 1
        from_bytes = int(sum(sizes) / BYTES_PER_TOKEN * float(epochs))  # type: ignore[arg-type]
        if from_bytes < padded:
            return from_bytes, (f"packed data: dataset bytes / {BYTES_PER_TOKEN:g} bytes per token × epochs "
                                "(an estimate until prepare counts tokens)")
    return padded, "rows × max_length (upper bound: every row padded to max_length)"


def estimate_time(s: Setup, gpu: Mapping[str, Any] | None, plan: Mapping[str, Any]) -> dict[str, Any]:
    f = flops_per_token(s)
    tokens, basis = total_tokens(s, plan)
    if gpu is None:
        return {"hours": None, "tokens": tokens, "flops": f["total"] * tokens if tokens else None,
                "flops_per_token": f["total"], "tokens_per_s": None, "mfu": None,
                "basis": f"{basis}; no GPU spec for target.gpu, so no throughput"}
    mfu = utilisation(s, gpu)
    tokens_per_s = float(gpu["bf16_tflops"]) * 1e12 * mfu * s.world / f["total"]
    hours = tokens / tokens_per_s / 3600.0 if tokens else None
    return {
        "hours": hours,
        "tokens": tokens,
        "flops": f["total"] * tokens if tokens else None,
        "flops_per_token": f["total"],
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "basis": f"{basis}; {gpu['bf16_tflops']:g} TFLOP/s bf16 peak × {mfu:.3f} utilisation × {s.world} GPU(s)",
    }
