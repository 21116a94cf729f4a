"""Load a bundle's plan.lock, checked against plan.schema.json. The only input every runtime stage reads
to decide what to do."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class PlanError(Exception):
    """The bundle is unusable (missing or malformed plan.lock). `problems` holds one (key path, message) per
    schema violation, for `--json`'s structured errors."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None, file: str = "") -> None:
        # problems: (offending key path, what is wrong)
        super().__init__(message)
        self.problems = problems or []
        self.file = file


@dataclass(frozen=True)
class Bundle:
    root: Path
    plan: dict[str, Any]
    trial: int | None = None  # a sweep trial (``--trial N``): ``plan`` is that trial's resolved plan

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
    if not isinstance(plan, dict) or plan.get("format") != 1:
        found = plan.get("format") if isinstance(plan, dict) else None
        raise PlanError(f"{lock}: plan format {found!r} is not supported by this runtime (expects 1)")
    check(plan, lock)
    return Bundle(root=root, plan=plan)


def trial_plan(plan: dict[str, Any], record: dict[str, Any], name: str) -> dict[str, Any]:
    """The plan one sweep trial runs: the run's plan with the trial's resolved config, derived numbers and
    estimate (recorded by the compiler for grid/random trials; nothing is re-derived here)."""
    out = copy.deepcopy(plan)
    out.update(config=copy.deepcopy(record["config"]), derived=copy.deepcopy(record["derived"]),
               estimate=copy.deepcopy(record["estimate"]), name=name)
    return out


def check(plan: dict[str, Any], where: Path | str = "plan.lock") -> None:
    """Stop unless the plan matches plan.schema.json (every key the runtime reads present and typed)."""
    from .contract import plan_problems

    problems = plan_problems(plan)
    if problems:
        errors = [f"{where}: {message}" for where, message, _ in problems]
        shown = "\n  ".join(errors[:8]) + (f"\n  … {len(errors) - 8} more" if len(errors) > 8 else "")
        raise PlanError(f"{where}: does not match plan.schema.json ({len(errors)} problem"
                        f"{'s' if len(errors) > 1 else ''}); rebuild the bundle with `loftc build`:\n  {shown}",
                        [(key, message) for _, message, key in problems], file=str(where))


def with_trial(bundle: Bundle, trial: int) -> Bundle:
    """The bundle as sweep trial ``trial`` sees it: its own resolved plan, output in <out>/trial-N."""
    sweep = bundle.plan.get("sweep")
    if not sweep:
        raise PlanError(f"--trial {trial}: this plan has no sweep")
    if sweep["method"] == "bayes":
        raise PlanError(f"--trial {trial}: a bayes sweep's trials are chosen while it runs; run them all with "
                        "`bash launch.sh sweep` (each trial's config is in out/sweep/results.jsonl)")
    match = [t for t in sweep["trials"] if t["trial"] == trial]
    if not match:
        have = f"0..{len(sweep['trials']) - 1}" if sweep["trials"] else "none"
        raise PlanError(f"--trial {trial}: the plan has no such sweep trial (trials: {have})")
    plan = trial_plan(bundle.plan, match[0], f"{bundle.plan['name']}-trial-{trial}")
    return replace(bundle, plan=plan, trial=trial)
