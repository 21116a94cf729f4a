"""Load a bundle's plan.lock. The only input every runtime stage reads to decide what to do."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class PlanError(Exception):
    """The bundle is unusable (missing or malformed plan.lock)."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    plan: dict[str, Any]
    trial: int | None = None  # a sweep trial (``--trial N``): its overrides are applied to ``config``

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

    @property
    def base_out(self) -> Path:
        """The run's output directory before a trial's ``trial-N`` suffix."""
        if self.trial is None:
            return self.out
        return self.path(self.plan["config"].get("output_dir", "out")).parent

    @property
    def prepared(self) -> Path:
        """Prepared data: the trial's own when its prepare ran, else the run's."""
        own = self.out / "prepared"
        return own if own.is_dir() or self.trial is None else self.base_out / "prepared"

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


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config["a"]["b"] = value`` for ``key == "a.b"`` (intermediate mappings must exist)."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise PlanError(f"sweep override {key!r}: {part!r} is not a section of the config")
        node = node[part]
    node[parts[-1]] = value


def with_trial(bundle: Bundle, trial: int) -> Bundle:
    """The bundle as sweep trial ``trial`` sees it: the plan's overrides applied, output in <out>/trial-N."""
    sweep = bundle.plan.get("sweep") or []
    match = [t for t in sweep if t.get("trial") == trial]
    if not match:
        have = ", ".join(str(t.get("trial")) for t in sweep) or "none"
        raise PlanError(f"--trial {trial}: the plan has no such sweep trial (trials: {have})")
    plan = copy.deepcopy(bundle.plan)
    for key, value in sorted((match[0].get("overrides") or {}).items()):
        set_dotted(plan["config"], key, value)
    out = plan["config"].get("output_dir", "out")
    plan["config"]["output_dir"] = f"{out.rstrip('/')}/trial-{trial}"
    return replace(bundle, plan=plan, trial=trial)
