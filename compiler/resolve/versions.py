"""The plan format, the loft version, and the package versions the bundle installs (targets/requirements.json,
plus DeepSpeed / bitsandbytes when the plan uses them)."""

from __future__ import annotations

import json
from typing import Any

from ..resources import data_dir
from .context import Context

LOFT_VERSION = "0.1.0"
PLAN_FORMAT = 1
REQUIREMENTS = data_dir("targets") / "requirements.json"


def requirements() -> dict[str, Any]:
    with open(REQUIREMENTS, encoding="utf-8") as f:
        out: dict[str, Any] = json.load(f)
    return out


def resolve_versions(ctx: Context) -> dict[str, str]:
    req = requirements()
    out = {"python": req["python"], **req["packages"]}
    cfg = ctx.cfg
    if cfg["deepspeed"]["stage"] > 0:
        out["deepspeed"] = req["optional"]["deepspeed"]
    if cfg["adapter"]["type"] == "qlora" or "8bit" in cfg["training"]["optimizer"]:
        out["bitsandbytes"] = req["optional"]["bitsandbytes"]
    return dict(sorted(out.items()))
