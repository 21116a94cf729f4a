"""training.kernels, applied as the plan says. `liger`: Liger's kernels for the model (transformers'
`use_liger_kernel`; its defaults include the fused linear cross entropy). `cut_cross_entropy`: Apple's
cut-cross-entropy package patches the model's loss so the logits are never materialised (`cce_patch`), when
Liger is not already doing the same. Both need a CUDA GPU (Triton): the compiler refuses them for
`target.gpu: cpu`, and refuses cut_cross_entropy with the auxiliary losses (they need the logits)."""

from __future__ import annotations

from typing import Any


def liger_settings(kernels: dict[str, Any]) -> tuple[bool, dict[str, bool] | None]:
    """(use_liger_kernel, liger_kernel_config) for TrainingArguments."""
    return bool(kernels["liger"]), None


def uses_cut_cross_entropy(kernels: dict[str, Any]) -> bool:
    """cut-cross-entropy's patch is applied (Liger's fused linear cross entropy covers it when liger is on)."""
    return bool(kernels["cut_cross_entropy"]) and not kernels["liger"]


def apply_cut_cross_entropy(model: Any, kernels: dict[str, Any]) -> Any:
    if not uses_cut_cross_entropy(kernels):
        return model
    try:
        from cut_cross_entropy.transformers import cce_patch
    except ImportError:
        from .train.model import StageError

        raise StageError("training.kernels.cut_cross_entropy needs the cut-cross-entropy package (and a CUDA "
                         "GPU): install the bundle's requirements.lock") from None
    return cce_patch(model)
