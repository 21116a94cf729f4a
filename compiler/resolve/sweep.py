"""Sweep trials: expanded from `sweep` by compiler/sweep.py; its errors point at the `sweep` key."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .context import Context


def resolve_sweep(ctx: Context) -> list[dict[str, Any]]:
    from ..sweep import expand

    try:
        return expand(ctx.cfg)
    except ConfigError as e:
        ctx.adopt(e, "sweep")
        return []
