"""Load what the train stage produced (``<out>/final``): an adapter on the plan's base model, or a full model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import StageError, fit_embeddings, is_adapter_dir, load_base_model, load_tokenizer, torch_dtype

if TYPE_CHECKING:
    from ..plan import Bundle


def stopped_note(bundle: Bundle, stage: str) -> str | None:
    """When the last train run was stopped (save-and-quit), why ``stage`` has nothing to do yet.

    launch.sh runs every stage in a row and a stopped train exits 0, so later stages skip instead of failing.
    """
    import json

    report = bundle.out / "train_report.json"
    if not report.is_file():
        return None
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    if data.get("status") != "stopped":
        return None
    trial = f" --trial {bundle.trial}" if bundle.trial is not None else ""
    return (f"{stage} skipped: training was stopped at step {data.get('global_step')} and is not finished; "
            f"resume with `bash {bundle.root}/launch.sh` (or `loft train {bundle.root}{trial}`)")


def nothing_to_do(bundle: Bundle, stage: str) -> bool:
    """The gate every post-train stage (eval, merge, export) passes first: only rank 0 works on the trained
    model, and a stopped (not finished) training leaves nothing to work on yet; says why when it skips."""
    import os
    import sys

    if int(os.environ.get("RANK", "0")) != 0:
        return True
    note = stopped_note(bundle, stage)
    if note:
        print(f"[loft] {note}", file=sys.stderr)
        return True
    return False


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
