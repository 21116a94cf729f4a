"""Load what the train stage produced (``<out>/final``): an adapter on the plan's base model, or a full model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import StageError, fit_embeddings, is_adapter_dir, load_base_model, load_tokenizer, torch_dtype

if TYPE_CHECKING:
    from ..plan import Bundle


def final_dir(bundle: Bundle) -> Path:
    final = bundle.out / "final"
    if not (final / "config.json").is_file() and not is_adapter_dir(final):
        raise StageError(f"{final}: no trained model yet; run the train stage first "
                         f"(`loft train {bundle.root}`)")
    return final


def load_trained(bundle: Bundle, *, merge: bool = False) -> Any:
    """The trained model in the plan's dtype; with ``merge`` a LoRA adapter is folded into the weights."""
    final = final_dir(bundle)
    if is_adapter_dir(final):
        from peft import PeftModel

        base = load_base_model(bundle, for_training=False)
        fit_embeddings(base, load_tokenizer(bundle))  # as train did, before the adapter's saved embeddings load
        model = PeftModel.from_pretrained(base, str(final))
        return model.merge_and_unload() if merge else model
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(final), dtype=torch_dtype(bundle.config["model"]["dtype"]))
