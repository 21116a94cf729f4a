"""The GPU and provider catalogs (targets/catalog/gpus.json, providers.json), read once per process."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ..resources import data_dir


@functools.cache
def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_catalog_file(name).read_text(encoding="utf-8"))
    return data


def _catalog_file(name: str) -> Path:
    return data_dir("targets") / "catalog" / name


def gpus() -> dict[str, dict[str, Any]]:
    """Canonical GPU name → spec (memory_gib, bf16_tflops, mfu, cuda_context_gib, aliases, source)."""
    return dict(_load("gpus.json")["gpus"])


def providers() -> dict[str, dict[str, Any]]:
    """Provider key → {name, as_of, source, prices: [{gpu, on_demand, spot, note?, gpu_counts?}]}."""
    return dict(_load("providers.json")["providers"])


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def gpu_name(name: str | None) -> str | None:
    """The catalog's name for a GPU given as a name or alias, case and punctuation ignored (or None)."""
    if not name:
        return None
    key = _norm(str(name))
    for canon, spec in gpus().items():
        if _norm(canon) == key or any(_norm(a) == key for a in spec.get("aliases", [])):
            return canon
    return None


def provider_name(name: str | None) -> str | None:
    if not name:
        return None
    key = _norm(str(name))
    for canon, spec in providers().items():
        if _norm(canon) == key or _norm(str(spec.get("name", ""))) == key:
            return canon
    return None
