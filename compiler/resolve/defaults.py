"""Every key of the schema present, defaults filled (the schema's `default`s are the one source), the run
name and output_dir settled."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..names import safe_name

if TYPE_CHECKING:
    from .context import Context


def fill_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Every key of the schema present: missing keys take the schema's `default` (recursively)."""
    props = schema.get("properties")
    if props is not None and isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, sub in props.items():
            v = value[k] if k in value else copy.deepcopy(sub.get("default"))
            out[k] = fill_defaults(v, sub)
        for k in value:  # keys the schema allows through additionalProperties (maps such as `roles`)
            if k not in out:
                out[k] = value[k]
        return out
    items = schema.get("items")
    if isinstance(items, dict) and isinstance(value, list):
        return [fill_defaults(v, items) for v in value]
    return value


MIN_LR_RATIO = 0.1  # cosine_with_min_lr's floor when min_lr_ratio is not given (docs/config.md)


def settle(ctx: Context) -> None:
    """The run name (default: the config file's stem), output_dir (a folder inside the bundle), and the
    learning-rate floor of cosine_with_min_lr written as a number (the runtime decides nothing)."""
    cfg = ctx.cfg
    t = cfg["training"]
    if t["lr_scheduler"] == "cosine_with_min_lr" and t["min_lr_ratio"] is None:
        t["min_lr_ratio"] = MIN_LR_RATIO
    if cfg.get("name") is None:
        cfg["name"] = safe_name(ctx.config_path.stem)
    out = cfg["output_dir"]
    norm = os.path.normpath(out)
    if os.path.isabs(out) or norm == ".." or norm.startswith("../") or norm == ".":
        ctx.error("path-escape", ("output_dir",), f"output_dir {out!r} must be a folder inside the bundle",
                  expected="a relative path such as 'out'")
    else:
        cfg["output_dir"] = Path(norm).as_posix()
