"""Peak device memory of one training step, per GPU, from the model's shape and the config.

Every term is a count of tensors that are alive at the same time, in bytes; the per-token activation
terms enumerate what autograd saves in a Llama-style decoder layer (see docs/estimator.md for the list and
for how they were checked against ../shared/calibration). The peak is the maximum over the phases of a
step — forward, the start of backward (loss gradient), the end of backward, the optimizer step — not the
sum of every term: gradients and the logits' gradient are never alive at their largest at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .setup import Setup

GIB = float(2**30)
# cuBLAS/cuDNN workspaces, RoPE tables, loss scalars and other small buffers the caching allocator holds
# during a step (the intercept left after every tensor above is counted; same on both calibration models).
WORKSPACE_BYTES = 0.10 * GIB
# Caching allocator (c10/cuda/CUDACachingAllocator.cpp): tensors above 1 MiB come from the large pool,
# in segments of 20 MiB (requests of 1-10 MiB) or of the request rounded up to 2 MiB; freed blocks stay
# reserved and are reused best-fit. Weights, fp32 masters and optimizer states are allocated once in
# segments of their own size (a multiple of 2 MiB for typical shapes), so they leave no gap. What gaps is
# what is freed and re-requested every step — activations, the loss path's blocks, gradients — in a
# different order each time: reserved = allocated + FRAGMENTATION × those transient bytes (+ the
# gradient holes below). One constant for every case (../shared/calibration: median 3%, worst 7%, with
# the holes term); the measured reserved − allocated is 0.0-4.7 GiB, order-dependent.
FRAGMENTATION = 0.07
# bitsandbytes NF4 with double quantisation: 4 bits + an 8-bit absmax per 64 weights + an fp32 scale per
# 256 absmax blocks, in bytes per weight.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
# Liger's fused linear cross-entropy / Cut Cross-Entropy never materialise batch × seq × vocab logits: they
# keep the input gradient (hidden × activation bytes) and a chunk of fp32 logits sized about hidden/token.
FUSED_LOSS_BYTES_PER_HIDDEN = 12
# DeepSpeed's "auto" reduce/prefetch buckets are hidden² elements (transformers' integration); two in flight.
BUCKETS = 2

PHASES = ("forward", "backward", "optimizer")
COMPONENTS = ("weights", "lora", "gradients", "optimizer", "master_weights", "activations", "logits",
              "workspace", "cuda_context", "allocator_overhead", "allocator_holes")


@dataclass(frozen=True)
class Shards:
    params: int
    grads: int
    optim: int


def shards(s: Setup) -> Shards:
    """How many GPUs each kind of state is split over (ZeRO-1/2/3; FSDP full_shard ≈ ZeRO-3,
    shard_grad_op ≈ ZeRO-2, hybrid_shard shards within a node)."""
    w = s.world
    if s.zero_stage:
        return Shards(w if s.zero_stage == 3 else 1, w if s.zero_stage >= 2 else 1, w)
    if s.fsdp in ("full_shard",):
        return Shards(w, w, w)
    if s.fsdp == "hybrid_shard":
        n = max(1, s.num_gpus)
        return Shards(n, n, n)
    if s.fsdp == "shard_grad_op":
        return Shards(1, w, w)
    return Shards(1, 1, 1)


def _state_bytes(s: Setup) -> int:
    """dtype of the optimizer's state tensors: torch keeps them in the parameter's dtype (bf16 states for
    bf16 weights); LoRA adapters are fp32 (PEFT upcasts them); DeepSpeed keeps fp32 states."""
    if s.deepspeed or s.adapter != "none":
        return 4
    return s.weight_bytes


def _grad_bytes(s: Setup) -> int:
    if s.adapter != "none":
        return 2 if s.deepspeed else 4
    return 2 if s.deepspeed else s.weight_bytes


def optimizer_state_bytes(s: Setup) -> float:
    """Optimizer states of all trainable parameters, unsharded."""
    n = s.trainable
    if s.optimizer in ("adamw_torch", "adamw_torch_fused"):
        return 2.0 * _state_bytes(s) * n
    if s.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return (2.0 + 2 * 4 / 2048) * n  # int8 m and v + an fp32 absmax per 2048-value block
    if s.optimizer == "adafactor":
        return 4.0 * _adafactor_elements(s)
    return 0.0  # sgd without momentum (transformers' default)


def _adafactor_elements(s: Setup) -> float:
    """Adafactor keeps a row and a column second-moment vector per matrix (fp32), a full one per vector."""
    a = s.arch
    if s.adapter != "none":
        from .params import lora_linears

        lins = lora_linears(a, s.lora_targets)
        return float(a.layers * sum((s.lora_r + lin.d_in) + (lin.d_out + s.lora_r) for lin in lins))
    per_layer = sum(lin.count * (lin.d_in + lin.d_out) for lin in a.linears) + a.norms_per_layer
    emb = (a.vocab + a.hidden) * (1 if a.tied else 2)
    return float(a.layers * per_layer + emb + a.hidden)


def _optimizer_temp_bytes(s: Setup, sh: Shards) -> float:
    """Transient memory inside optimizer.step()."""
    n = s.trainable / sh.optim
    if s.optimizer == "adamw_torch" and not s.deepspeed:
        return _state_bytes(s) * n  # foreach: sqrt(v) of every tensor at once
    if s.optimizer == "adafactor":
        a = s.arch
        biggest = max([a.embedding, *[lin.d_in * lin.d_out for lin in a.linears]])
        if s.adapter != "none":
            biggest = max(s.lora_r * max(lin.d_in, lin.d_out) for lin in a.linears)
        return 3.0 * 4 * biggest  # fp32 grad copy, update and parameter copy of one tensor
    if s.deepspeed and not s.offload_optimizer:
        return 4.0 * n  # fp32 copy of the gradient partition the optimizer consumes
    return 0.0


def _linear_params(s: Setup) -> int:
    a = s.arch
    return a.layers * sum(lin.params for lin in a.linears)


def weight_bytes_resident(s: Setup, sh: Shards) -> float:
    """The model's parameters as held on the device (sharded under ZeRO-3 / FSDP)."""
    if s.offload_params or s.fsdp_offload:
        return 0.0
    if s.adapter == "qlora":
        # PEFT's prepare_model_for_kbit_training (used by loft's runtime) upcasts every parameter that is
        # not 4-bit — embeddings, norms, the lm_head — to fp32.
        lin = _linear_params(s)
        return NF4_BYTES * lin + 4.0 * (s.params - lin)
    wb = 2 if s.deepspeed else s.weight_bytes
    if s.autocast:
        return 0.0  # the fp32 parameters are the master weights; see master_bytes
    return wb * s.params / sh.params


def master_bytes(s: Setup, sh: Shards) -> float:
    """fp32 master weights: the fp32 parameters themselves under autocast, DeepSpeed's fp32 partition."""
    if s.autocast:
        return 4.0 * s.params / sh.params if not (s.offload_params or s.fsdp_offload) else 0.0
    if s.deepspeed and s.precision in ("bf16", "fp16") and not s.offload_optimizer:
        return 4.0 * s.trainable / sh.optim
    return 0.0


def _gathered_bytes(s: Setup, sh: Shards) -> float:
    """ZeRO-3 / FSDP: the layer being computed and the one prefetched, plus the embedding at the loss."""
    if sh.params == 1 and not (s.offload_params or s.fsdp_offload):
        return 0.0
    a = s.arch
    return 2.0 * (2 * a.per_layer + a.embedding)


def _cast_cache_bytes(s: Setup, phase: str) -> float:
    """Autocast's cached bf16 copies of fp32 weights: every linear during forward; under checkpointing
    only the lm_head's copy outlives the forward (recomputation re-casts one layer at a time)."""
    a = s.arch
    if s.adapter == "qlora" and s.precision != "fp32":
        return 2.0 * a.embedding  # the fp32 lm_head's bf16 copy (the 4-bit linears dequantise per matmul)
    if not s.autocast or shards(s).params > 1:
        return 0.0  # sharded: FSDP casts each gathered unit (counted in the gathered working set)
    full = 2.0 * (_linear_params(s) + a.embedding)  # every linear + the lm_head (tied or not)
    if phase == "forward" or not s.grad_ckpt:
        return full
    return 2.0 * a.embedding + 2.0 * a.per_layer


def _residual_bytes(s: Setup) -> int:
    """dtype of the residual stream: fp32 when the weights are fp32 (autocast leaves adds in fp32), and
    under QLoRA (fp32 embeddings; bitsandbytes casts each 4-bit linear's output back to its input dtype)."""
    if s.precision == "fp32" or s.autocast or s.adapter == "qlora":
        return 4
    return 2


def layer_activation_bytes_per_token(s: Setup) -> float:
    """Bytes autograd saves in one decoder layer per token, without checkpointing."""
    a, c, rb = s.arch, s.compute_bytes, _residual_bytes(s)
    h, kv, q = a.hidden, a.kv_dim, a.q_dim
    full = s.adapter == "none"
    lora = set() if full else {lin.name.removeprefix("shared_") for lin in _lora_lins(s)}
    p = s.lora_dropout

    def linear_inputs(names: tuple[str, ...], dim: int, dtype: int) -> float:
        """What the linears reading one tensor save of it: trainable weights save their (compute-dtype)
        input; LoRA saves its dropout mask (1 byte) and the dropped copy per module."""
        out = 0.0
        shared_saved = False
        for name in names:
            if full or (name in lora and p == 0):
                if dtype != c:
                    out += c * dim  # autocast casts the input separately for each linear
                elif not shared_saved:
                    out += c * dim
                    shared_saved = True
            elif name in lora:
                out += (1 + c) * dim  # the adapter's linear saves the dropped copy, cast to compute dtype
        return out

    def norm(names: tuple[str, ...]) -> float:
        if s.liger:
            saved: float = rb * h
        else:
            saved = 4.0 * h + (rb * h if full else 0)  # fp32 upcast; normalised input for the weight grad
        return saved + linear_inputs(names, h, rb)

    mlp_names = ("gate_proj", "up_proj") if a.gated else ("up_proj",)
    total = norm(("q_proj", "k_proj", "v_proj")) + norm(mlp_names)
    if s.attn == "eager":
        total += c * (q + 2 * q)  # repeat_kv expands k and v to every head
        total += a.heads * s.seq_len * (4 + c)  # fp32 softmax output and its cast copy, per key
    else:
        total += c * (q + 2 * kv) + 4 * a.heads  # q, k, v for the kernel's backward; log-sum-exp
    total += c * q  # attention output (also o_proj's input)
    if "o_proj" in lora and p > 0:
        total += (1 + c) * q
    inter = a.intermediate
    mult = 1
    if a.experts:
        inter = next((lin.d_out for lin in a.linears if lin.name == "up_proj"), inter)
        mult = max(1, a.experts_per_tok)
        total += 2.0 * c * h * mult  # tokens dispatched to and gathered from the experts
    out_bytes = rb if s.adapter == "qlora" else c  # dtype of a linear's output
    if a.gated:
        mlp: float = (2 if s.liger else 3) * out_bytes * inter  # gate, silu, up outputs (liger recomputes silu)
    else:
        mlp = out_bytes * inter  # pre-activation
    mlp += linear_inputs(("down_proj",), inter, out_bytes)
    return total + mult * mlp


def _lora_lins(s: Setup) -> list[Any]:
    from .params import lora_linears

    return lora_linears(s.arch, s.lora_targets)


def final_norm_bytes_per_token(s: Setup) -> float:
    """The last norm before lm_head (lm_head trainable only in full fine-tuning)."""
    a, c, rb = s.arch, s.compute_bytes, _residual_bytes(s)
    if s.adapter != "none":
        return (rb if s.liger else 4.0) * a.hidden
    return (rb if s.liger else 4.0 + rb) * a.hidden + c * a.hidden


def saved_activation_bytes_per_token(s: Setup) -> float:
    a = s.arch
    if s.grad_ckpt:
        return a.layers * _residual_bytes(s) * a.hidden + final_norm_bytes_per_token(s)
    return a.layers * layer_activation_bytes_per_token(s) + final_norm_bytes_per_token(s)


def logits_bytes_per_token(s: Setup, phase: str) -> float:
    """Logits and loss. Unfused: the model's logits (bf16 under autocast) stay referenced by the output;
    the loss upcasts them to fp32 and log_softmax saves an fp32 result; its backward holds the saved
    result, the incoming gradient and the outgoing one (all fp32) at once."""
    a, c = s.arch, s.compute_bytes
    if s.liger or s.cce:
        return float(FUSED_LOSS_BYTES_PER_HIDDEN + c) * a.hidden
    upcast = 4 if c != 4 else 0
    if phase == "forward":
        return float(c + upcast + 4) * a.vocab
    return float(c + 12) * a.vocab


def embedding_backward_bytes(s: Setup) -> float:
    """Transient of the input embedding's backward, beyond the gradients already counted.

    `embedding_dense_backward` (aten/src/ATen/native/cuda/EmbeddingBackwardKernel.cu) writes a V×h gradient
    in the weight's dtype and sums per-token partials in an fp32 buffer of tokens × h (not V × h). Untied,
    that gradient becomes `.grad` itself (AccumulateGrad steals it): only the partials are extra. Tied, the
    lm_head's gradient is already `.grad`, so the new V×h tensor is alive while it is added in place."""
    a = s.arch
    partials = 4.0 * s.tokens * a.hidden
    if not a.tied:
        return partials
    return partials + float(_grad_bytes(s) if not s.autocast else 4) * a.embedding


def gradient_hole_bytes(s: Setup, grads: float) -> float:
    """Reserved memory the loss path's blocks leave unusable from the second step on (full fine-tuning
    with checkpointing, unsharded).

    With checkpointing nothing large is saved per layer, so in the first step the gradients are carved
    out of the only large free blocks there are: the loss path's fp32 tokens × vocab blocks, freed just
    before (log_softmax's output, the loss gradient, its input gradient). The optimizer's states, created
    lazily at the first `step()`, fill what is left of those segments and pin them; `zero_grad` then frees
    the gradients' region, which is too small for a tokens × vocab block: the next step's loss path gets
    new segments and that region stays reserved, unused (the gradients are re-created best-fit in their
    own freed segments). Without checkpointing the gradients reuse the per-layer activation blocks freed
    beside them; LoRA's gradients are small-pool tensors; DeepSpeed and FSDP keep flat gradient buffers."""
    if not s.grad_ckpt or s.adapter != "none" or s.deepspeed or s.fsdp not in (None, "no_shard"):
        return 0.0
    freed_loss_blocks = (logits_bytes_per_token(s, "backward") - s.compute_bytes * s.arch.vocab) * s.tokens
    return max(0.0, min(grads, freed_loss_blocks))


def _eager_mask_bytes(s: Setup) -> float:
    return 2.0 * s.micro_batch * s.seq_len * s.seq_len if s.attn == "eager" else 0.0


def vram(s: Setup, context_gib: float) -> dict[str, Any]:
    """Components at the peak phase (they sum to total_gib), each phase's peak, and per-component maxima."""
    a, sh, t = s.arch, shards(s), s.tokens
    lora_bytes: float = 0.0
    if s.adapter != "none":
        lora_bytes = (4.0 + (2.0 if s.precision != "fp32" else 0.0)) * s.lora_params  # fp32 + autocast copy
    weights = weight_bytes_resident(s, sh)
    gathered = _gathered_bytes(s, sh)
    dequant = 2.0 * max(lin.d_in * lin.d_out for lin in a.linears) if s.adapter == "qlora" else 0.0
    master = master_bytes(s, sh)
    states = 0.0 if (s.offload_optimizer or s.fsdp_offload) else optimizer_state_bytes(s) / sh.optim
    gb = _grad_bytes(s)
    if s.offload_optimizer or s.fsdp_offload:
        grads = BUCKETS * 2.0 * a.hidden**2
    elif s.deepspeed and sh.grads > 1:
        grads = gb * s.trainable / sh.grads + BUCKETS * 2.0 * a.hidden**2
    elif s.deepspeed:
        grads = gb * s.trainable + 2.0 * s.trainable / sh.optim
    else:
        grads = gb * s.trainable / sh.grads
        if s.world > 1 and sh.grads == 1:
            grads += gb * s.trainable  # DDP's gradient buckets, separate from .grad
    accumulating = s.grad_accum > 1
    emb_trainable = s.adapter == "none" and s.embedding_trainable
    emb_bwd = embedding_backward_bytes(s) if emb_trainable else 0.0

    saved = saved_activation_bytes_per_token(s) * t
    layer = (layer_activation_bytes_per_token(s) + 4.0 * s.compute_bytes * a.hidden) * t + _eager_mask_bytes(s)
    base = {"weights": weights, "lora": lora_bytes, "master_weights": master, "optimizer": states,
            "workspace": WORKSPACE_BYTES}
    g_at_start = grads if accumulating else 0.0

    phases: dict[str, dict[str, float]] = {}
    phases["forward"] = {
        **base, "weights": weights + gathered + dequant + _cast_cache_bytes(s, "forward"),
        "gradients": g_at_start,
        "activations": saved + (_eager_mask_bytes(s) if not s.grad_ckpt else 0.0),
        "logits": logits_bytes_per_token(s, "forward") * t,
    }
    bwd_start = {
        **base, "weights": weights + gathered + dequant + _cast_cache_bytes(s, "backward"),
        "gradients": g_at_start,
        "activations": saved + (_eager_mask_bytes(s) if not s.grad_ckpt else 0.0),
        "logits": logits_bytes_per_token(s, "backward") * t,
    }
    # End of backward: every gradient exists; then either the first layer's recomputation (checkpointing)
    # or the embedding's dense gradient is in flight — one after the other, never both.
    recompute = layer + (2.0 * a.per_layer if s.autocast else 0.0) if s.grad_ckpt else 0.0
    bwd_end = {
        **base, "weights": weights + gathered + dequant,
        "gradients": grads + (emb_bwd if emb_bwd >= recompute else 0.0),
        "activations": recompute if recompute > emb_bwd else 0.0,
        "logits": 0.0,
    }
    phases["backward"] = max(bwd_start, bwd_end, key=lambda d: sum(d.values()))
    moments = [phases["forward"], bwd_start, bwd_end]
    phases["optimizer"] = {**base, "gradients": grads, "optimizer": states + _optimizer_temp_bytes(s, sh)}
    moments.append(phases["optimizer"])

    peak_phase = max(PHASES, key=lambda p: sum(phases[p].values()))
    allocated = sum(phases[peak_phase].values())
    persistent = weights + lora_bytes + master + states + WORKSPACE_BYTES
    comps = {k: phases[peak_phase].get(k, 0.0) / GIB for k in COMPONENTS}
    comps["allocator_overhead"] = FRAGMENTATION * max(0.0, allocated - persistent) / GIB
    comps["allocator_holes"] = gradient_hole_bytes(s, grads) / GIB
    comps["cuda_context"] = context_gib
    total = sum(comps.values())
    maxima = {k: max(m.get(k, 0.0) for m in moments) / GIB for k in COMPONENTS}
    maxima["allocator_overhead"] = comps["allocator_overhead"]
    maxima["allocator_holes"] = comps["allocator_holes"]
    maxima["cuda_context"] = context_gib
    offload_cpu = 0.0
    if s.offload_optimizer or s.fsdp_offload:
        # fp32 states + fp32 master + the gradient partition: DeepSpeed's CPU optimizer reads fp32 gradients
        # (its pinned fp32 partition's .grad); FSDP offloads them in the parameter's dtype
        cpu_grad = 4.0 if s.deepspeed else float(gb)
        offload_cpu += (optimizer_state_bytes(s) + 4.0 * s.trainable + cpu_grad * s.trainable) / sh.optim
    if s.offload_params or s.fsdp_offload:
        offload_cpu += 2.0 * s.params / sh.params
    return {
        "total_gib": total,
        "allocated_gib": allocated / GIB,
        "components": comps,
        "component_max": maxima,
        "phase_peaks": {p: sum(phases[p].values()) / GIB + context_gib for p in PHASES},
        "peak_phase": peak_phase,
        "offload_cpu_gib": offload_cpu / GIB,
    }
