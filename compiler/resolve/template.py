"""The chat template: chosen from the library, a file or the model's own (compiler/templates.py), carried
into the bundle as chat_template.jinja with its sha256, end-of-turn token and loss-mask mode."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .context import Context


def resolve_template(ctx: Context, model: dict[str, Any], model_dir: Path | None) -> dict[str, Any]:
    from ..templates import select_template

    spec = ctx.cfg["template"]
    path = ctx.config_dir / os.path.expanduser(str(spec))
    if os.path.lexists(path) and not ctx.allowed(path, ("template",), "template file"):
        return {}
    # Axolotl renders chats with the tokenizer's own template: an Axolotl config never gets a guessed one
    chats = any(d.get("format") in ("messages", "sharegpt") or (d.get("format") == "alpaca"
                                                                and not d.get("prompt_style"))
                for d in ctx.cfg["data"].get("datasets") or [])
    try:
        choice = select_template(spec, model=model, model_dir=model_dir, config_dir=ctx.config_dir,
                                 allow_fallback=bool(ctx.cfg["template_mask_fallback"]),
                                 own_only=ctx.dialect == "axolotl" and chats)
    except ConfigError as e:
        ctx.adopt(e, "template")
        return {}
    for message in choice.warnings:  # every guess or fallback is a warning at `template:` (plan.md lists them)
        ctx.warn("template-fallback", ("template",), message)
    text = choice.text.encode("utf-8")
    ctx.attachments["chat_template.jinja"] = text
    if getattr(choice, "source", None) == "file":
        ctx.cfg["template"] = "chat_template.jinja"
    return {
        "name": choice.name,
        "source": choice.source,
        "file": "chat_template.jinja",
        "sha256": hashlib.sha256(text).hexdigest(),
        "end_of_turn": choice.end_of_turn,
        "tagged": bool(choice.tagged),
        "mask": choice.mask,
    }
