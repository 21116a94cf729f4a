"""Load a bundle's plan.lock. The only input every runtime stage reads to decide what to do."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PlanError(Exception):
    """The bundle is unusable (missing or malformed plan.lock)."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    plan: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.plan["config"]

    @property
    def derived(self) -> dict[str, Any]:
        return self.plan["derived"]

    @property
    def out(self) -> Path:
        """The run's output directory (created on first use)."""
        path = self.path(self.config.get("output_dir", "out"))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, rel: str) -> Path:
        """A plan path (relative to the bundle, or absolute) as an absolute path."""
        p = Path(rel)
        return p if p.is_absolute() else (self.root / p).resolve()


def load(run_dir: str | Path) -> Bundle:
    root = Path(run_dir).resolve()
    lock = root / "plan.lock"
    if not lock.is_file():
        raise PlanError(f"{lock}: no plan.lock here; is {root} a loft bundle? (build one with `loftc build`)")
    try:
        plan = json.loads(lock.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PlanError(f"{lock}:{e.lineno}:{e.colno}: plan.lock is not valid JSON ({e.msg})") from None
    if plan.get("format") != 1:
        raise PlanError(f"{lock}: plan format {plan.get('format')!r} is not supported by this runtime (expects 1)")
    return Bundle(root=root, plan=plan)
