"""Training time: a roofline of one optimizer step, per GPU, then tokens ÷ tokens/s.

A step takes about the longer of two things that run side by side (their 2-norm: they overlap imperfectly):
- the GPU's work: matmul FLOPs at the card's peak × its catalog utilisation, plus the memory-bound work at
  its HBM bandwidth (the optimizer step, the weights read per pass, the loss over the vocabulary, LoRA's
  adapter traffic, QLoRA's dequantisation, autocast's weight casts);
- the host's work: eager PyTorch issues every kernel from Python; a small step cannot hide that cost
  behind the GPU's (kernels per layer by mode × KERNEL_LAUNCH_S).

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

# Host time per kernel: Python, transformers' module calls, the dispatcher and the launch itself, for one
# kernel of an eager step. One constant, measured from the calibration host's small steps (H100 box,
# ../shared/calibration: 2,048-token steps of 0.5-1B models are host-bound), valid for a comparable CPU.
KERNEL_LAUNCH_S = 34e-6
# The host queues kernels ahead of the GPU, but not perfectly: when the two legs are close, each waits on
# the other at synchronisation points (the loss, the optimizer step, allocations). The step is their
# p-norm — the larger leg when one dominates, √2 × either when they are equal (p = 2).
OVERLAP_NORM = 2.0
# Kernels one decoder layer issues (transformers' eager Llama-style layer): forward = 2 RMSNorms of ~8
# elementwise kernels, 4 attention projections, rotary on q and k (~6 each), the attention kernel, 2
# residual adds, gate/up/SiLU/product/down; the backward about twice the forward. Per LoRA adapter:
# dropout, A, B, scale and add forward (+2 casts of the fp32 adapter), ~10 more backward; a frozen base
# linear skips its weight-gradient matmul. Autocast over fp32 weights casts each linear's weight.
KERNELS_FWD = 41
KERNELS_BWD = 80
KERNELS_LORA_FWD = 7
KERNELS_LORA_BWD = 10
KERNELS_STEP = 30  # loss, optimizer (multi-tensor fused), zero_grad, bookkeeping
# Bytes the loss moves per token per vocabulary entry (unfused): bf16 logits read, fp32 upcast written and
# read, log_softmax's output written; backward: the fp32 loss gradient, log_softmax's backward (2 reads, 1
# write), the cast back to bf16 and the lm_head's two gradient matmuls reading it.
LOSS_BYTES_PER_VOCAB = 40
# QLoRA: each use of a 4-bit weight dequantises it (read 0.52 B, write 2 B) and the matmul reads the copy.
QLORA_BYTES_PER_USE = 4.5
# Optimizer and parameter offload move states over PCIe every step (not measured yet: a flat factor).
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
    """Fraction of peak the matmuls reach: the catalog's per-card figure, less offload and data-parallel
    communication."""
    mfu = float(gpu.get("mfu") or 0.35)
    if s.offload_optimizer or s.fsdp_offload:
        mfu *= OFFLOAD_EFFICIENCY["optimizer"]
    if s.offload_params or s.fsdp_offload:
        mfu *= OFFLOAD_EFFICIENCY["params"]
    if s.world > 1:
        mfu *= SCALING["multi_node" if s.nodes > 1 else "node"]
    return mfu


def kernels_per_step(s: Setup) -> int:
    """Kernel launches of one micro-step (host-side floor of a small step)."""
    from .params import lora_linears

    adapters = len(lora_linears(s.arch, s.lora_targets)) if s.adapter != "none" else 0
    fwd = KERNELS_FWD + KERNELS_LORA_FWD * adapters + (7 if s.autocast else 0)
    bwd = KERNELS_BWD + KERNELS_LORA_BWD * adapters - (7 if adapters else 0) + (7 if s.autocast else 0)
    return s.arch.layers * (fwd * (2 if s.grad_ckpt else 1) + bwd) + KERNELS_STEP


def memory_bytes_per_step(s: Setup) -> float:
    """HBM traffic of one step beyond what the catalog's matmul utilisation covers, per GPU."""
    from .params import lora_linears
    from .vram import shards

    a, t, sh = s.arch, s.tokens, shards(s)
    passes = 3 if s.grad_ckpt else 2  # forward, backward (+ the recomputation)
    linear = a.layers * sum(lin.params for lin in a.linears)
    if s.adapter == "qlora":
        weights = QLORA_BYTES_PER_USE * linear * passes + 2.0 * a.embedding * 2
    else:
        weights = (4.0 + 2.0 if s.autocast else 2.0) * s.params * passes  # every rank reads whole layers; autocast: fp32 read, bf16 written
    n = s.trainable / sh.optim
    state = 4 if (s.adapter != "none" or s.deepspeed) else s.weight_bytes
    grad = 4 if s.adapter != "none" else (4 if s.autocast else s.weight_bytes)
    param = 4 if (s.adapter != "none" or s.autocast) else s.weight_bytes
    optimizer = n * (2 * param + grad + 4 * state) if not (s.offload_optimizer or s.fsdp_offload) else 0.0
    loss = 0.0 if (s.liger or s.cce) else float(LOSS_BYTES_PER_VOCAB) * t * a.vocab
    adapters = 0.0
    if s.adapter != "none":  # dropout, A's input, B's output, scale and add; about twice that backward
        lins = lora_linears(a, s.lora_targets)
        adapters = 3.0 * a.layers * t * sum(7 * lin.d_in + 10 * lin.d_out for lin in lins)
    return weights + optimizer + loss + adapters


def step_roofline(s: Setup, gpu: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds of one micro-step by each limit, and which one binds."""
    flops = flops_per_token(s)["total"] * s.tokens
    compute = flops / (float(gpu["bf16_tflops"]) * 1e12 * utilisation(s, gpu))
    bandwidth = gpu.get("memory_tbps")
    traffic = memory_bytes_per_step(s)
    memory = traffic / (float(bandwidth) * 1e12) if bandwidth else 0.0
    kernels = kernels_per_step(s)
    launch = kernels * KERNEL_LAUNCH_S
    step = ((compute + memory) ** OVERLAP_NORM + launch**OVERLAP_NORM) ** (1.0 / OVERLAP_NORM)
    bound = "host (kernel launches)" if launch >= compute + memory else (
        "memory" if memory > compute else "compute")
    return {"step_s": step, "compute_s": compute, "memory_s": memory, "launch_s": launch, "kernels": kernels,
            "bytes": traffic, "flops": flops, "bound": bound}


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
                "flops_per_token": f["total"], "tokens_per_s": None, "mfu": None, "step": None,
                "basis": f"{basis}; no GPU spec for target.gpu, so no throughput"}
    r = step_roofline(s, gpu)
    tokens_per_s = s.tokens * s.world / r["step_s"]
    hours = tokens / tokens_per_s / 3600.0 if tokens else None
    mfu = f["total"] * tokens_per_s / (float(gpu["bf16_tflops"]) * 1e12 * s.world)
    bw = gpu.get("memory_tbps")
    roof = (f"step of {s.tokens:,} tokens per GPU: {r['step_s'] * 1e3:.1f} ms, bound by {r['bound']} — compute "
            f"{r['compute_s'] * 1e3:.1f} ms ({r['flops'] / 1e12:.2f} TFLOP at {gpu['bf16_tflops']:g} TFLOP/s × "
            f"{utilisation(s, gpu):.2f}), memory {r['memory_s'] * 1e3:.1f} ms ({r['bytes'] / 1e9:.1f} GB at "
            + (f"{float(bw):g} TB/s" if bw else "unknown bandwidth") + f"), host {r['launch_s'] * 1e3:.1f} ms "
            f"({r['kernels']:,} kernels × {KERNEL_LAUNCH_S * 1e6:.0f} µs)")
    return {
        "hours": hours,
        "tokens": tokens,
        "flops": f["total"] * tokens if tokens else None,
        "flops_per_token": f["total"],
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "step": {"seconds": r["step_s"], "compute_s": r["compute_s"], "memory_s": r["memory_s"],
                 "launch_s": r["launch_s"], "kernels": r["kernels"], "bound": r["bound"]},
        "basis": f"{basis}; {roof} × {s.world} GPU(s)",
    }
