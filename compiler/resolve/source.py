"""The source config as plan.lock records it: file name, dialect, sha256 of its bytes, its content, and the
data.config file it pulled in. Names, not paths: the same config built into any folder gives the same bytes
(`loftc verify --config` points at the sources when they are not in the bundle)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .context import Context
from .files import sha256_file


def resolve_source(ctx: Context) -> dict[str, Any]:
    doc = ctx.doc
    src: dict[str, Any] = {
        "file": ctx.config_path.name,
        "dialect": ctx.dialect,
        "sha256": hashlib.sha256(doc.text.encode("utf-8")).hexdigest(),
        "config": doc.data,
    }
    given = doc.data.get("data") if isinstance(doc.data, dict) else None
    if ctx.dialect == "loft" and isinstance(given, dict) and isinstance(given.get("config"), str):
        p = Path(os.path.abspath(ctx.config_dir / given["config"]))
        src["data_config"] = {"file": p.name, "sha256": sha256_file(p)}
    return src
