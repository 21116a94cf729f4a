"""The plan format, the loft version, and the package versions the bundle installs: the pins of
targets/requirements.json for the packages this plan needs (compiler/locks.py decides which, the same
choice that cuts the bundle's hashed lock, so plan.lock and requirements.lock agree)."""

from __future__ import annotations

from typing import Any

from ..locks import needs_flash_attn, normalize, plan_roots, requirements
from .context import Context

LOFT_VERSION = "0.1.0"
PLAN_FORMAT = 1


def resolve_versions(ctx: Context) -> dict[str, str]:
    req: dict[str, Any] = requirements()
    pins = {**req["packages"], **req["optional"]}
    by_name = {normalize(k): k for k in pins}
    out = {"python": req["python"]}
    for root in plan_roots(ctx.cfg):
        out[by_name[root]] = pins[by_name[root]]
    if needs_flash_attn(ctx.cfg):
        out["flash-attn"] = req["build"]["flash-attn"]["version"]
    return dict(sorted(out.items()))
