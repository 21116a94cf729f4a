"""Load weights a user points loft at (checkpoints, adapters, model dirs) with a clear error when they are
not what they claim: a directory without weights, an adapter trained on another base (shape mismatch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .train.model import StageError

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def is_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def check_weights(path: Path, what: str = "model") -> str:
    """``"adapter"`` or ``"model"`` for a directory holding weights; a StageError naming what is missing."""
    if not path.is_dir():
        raise StageError(f"{what} {path}: no such directory")
    if is_adapter(path):
        if not any((path / f).is_file() for f in ADAPTER_WEIGHTS):
            raise StageError(f"{what} {path}: adapter_config.json but no adapter weights "
                             f"({' or '.join(ADAPTER_WEIGHTS)}); an interrupted save?")
        return "adapter"
    if not (path / "config.json").is_file():
        raise StageError(f"{what} {path}: neither a model (config.json) nor an adapter (adapter_config.json)")
    if not any((path / f).is_file() for f in MODEL_WEIGHTS) and not any(path.glob("model-*.safetensors")):
        raise StageError(f"{what} {path}: config.json but no weights (model.safetensors, pytorch_model.bin)")
    return "model"


def attach(base: Any, path: Path, name: str = "default", model: Any = None) -> Any:
    """``PeftModel.from_pretrained(base, path)`` (or ``model.load_adapter`` onto an existing PeftModel),
    turning PEFT's shape-mismatch traceback into one line that says the adapter belongs to another base."""
    from peft import PeftModel

    check_weights(path, "adapter")
    if not is_adapter(path):
        raise StageError(f"adapter {path}: a full model directory, not a LoRA adapter (adapter_config.json)")
    try:
        if model is None:
            return PeftModel.from_pretrained(base, str(path), adapter_name=name)
        model.load_adapter(str(path), adapter_name=name)
        return model
    except (RuntimeError, ValueError, KeyError) as e:
        text = str(e)
        if "size mismatch" in text or "shape" in text:
            first = next((ln.strip() for ln in text.splitlines() if "size mismatch" in ln), text.splitlines()[0])
            raise StageError(f"adapter {path} does not fit this base model (trained on another base?): "
                             f"{first[:300]}") from None
        raise StageError(f"adapter {path}: cannot be loaded onto this base model: {text.splitlines()[0][:300]}") \
            from None
