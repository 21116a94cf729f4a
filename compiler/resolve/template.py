"""The chat template: chosen from the library, a file or the model's own (compiler/templates.py), carried
into the bundle as chat_template.jinja with its sha256, end-of-turn token and loss-mask mode."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .context import Context


def resolve_template(ctx: Context, model: dict[str, Any], model_dir: Path | None) -> dict[str, Any]:
    from ..templates import select_template

    spec = ctx.cfg["template"]
    try:
        choice = select_template(spec, model=model, model_dir=model_dir, config_dir=ctx.config_dir,
                                 allow_fallback=bool(ctx.cfg["template_mask_fallback"]))
    except ConfigError as e:
        ctx.adopt(e, "template")
        return {}
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
