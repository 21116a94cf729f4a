"""Opt-in auxiliary losses (``training.aux_losses``).

* training temperature τ: cross-entropy on ``logits / τ``. τ = 1 is transformers' own causal-LM loss,
  bit for bit (the logits are not divided at all).
* adaptive label smoothing: token t's loss is ``(1 - ε_t)·NLL + ε_t·mean_v(-log p_v)`` with
  ``ε_t = max_smoothing · clamp(ambiguity_t, 0, 1)``. ``ambiguity`` is prepare's per-token score aligned with
  ``labels`` (the score of the token being predicted), so it is shifted exactly like the labels.

Both reduce like transformers' ``ForCausalLMLoss``: a sum over target tokens divided by
``num_items_in_batch`` (the token count of the whole accumulated batch) when given, else a mean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0,
                   ambiguity: torch.Tensor | None = None, max_smoothing: float = 0.0,
                   num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    import torch.nn.functional as F
    from transformers.loss.loss_utils import ForCausalLMLoss

    if temperature <= 0:
        raise ValueError(f"training_temperature must be > 0, got {temperature}")
    if temperature != 1.0:
        logits = logits.float() / temperature
    vocab = logits.shape[-1]
    if ambiguity is None or max_smoothing == 0.0:
        return ForCausalLMLoss(logits, labels, vocab_size=vocab,
                               num_items_in_batch=num_items_in_batch)  # type: ignore[arg-type]

    logits = logits.float()
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1).to(logits.device)
    shift_amb = F.pad(ambiguity.float(), (0, 1), value=0.0)[..., 1:].reshape(-1).to(logits.device)
    flat = logits.reshape(-1, vocab)
    logp = F.log_softmax(flat, dim=-1)
    valid = shift_labels != IGNORE_INDEX
    target = shift_labels.clamp(min=0)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    uniform = -logp.mean(dim=-1)
    eps = max_smoothing * shift_amb.clamp(0.0, 1.0)
    per_token = ((1.0 - eps) * nll + eps * uniform) * valid
    total = per_token.sum()
    if num_items_in_batch is not None:
        denom: Any = num_items_in_batch
        if hasattr(denom, "to"):
            denom = denom.to(total.device)
        return total / denom
    return total / valid.sum().clamp(min=1)


def aux_losses_active(aux: dict[str, Any]) -> bool:
    """Whether the plan turns on anything beyond standard cross-entropy."""
    tau = float(aux.get("training_temperature", 1.0))
    als = aux.get("adaptive_label_smoothing") or {}
    return tau != 1.0 or bool(als.get("enabled"))
