"""Hand-built test plans kept honest: completed from a plan the compiler really wrote, then checked
against plan.schema.json the way the runtime checks a bundle (runtime/contract.py).

A fixture states only what its test is about; every other key takes the value `loftc build` gives a
minimal project (tests/compiler/project_factory.py), so no fixture runs on a shape the compiler never writes.
"""

from __future__ import annotations

import copy
import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from loft.runtime.contract import plan_errors


@lru_cache(maxsize=1)
def _compiled() -> str:
    from loft.compiler import pipeline

    from tests.compiler.project_factory import make_project

    root = Path(tempfile.mkdtemp(prefix="loft-plan-contract-"))
    cfg = make_project(root)
    return json.dumps(pipeline.plan(cfg, out_dir=root / "run", estimate=False).plan)


def compiled_plan() -> dict[str, Any]:
    """A fresh copy of the compiler's plan for the minimal project (cached per process)."""
    out: dict[str, Any] = json.loads(_compiled())
    return out


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(over, list) and base and isinstance(base[0], dict):
        return [_merge(base[0], v) if isinstance(v, dict) else copy.deepcopy(v) for v in over]
    return copy.deepcopy(over)


def complete(partial: dict[str, Any]) -> dict[str, Any]:
    """`partial` over the compiled plan (its values win; list items are completed from the compiled first
    item), and valid: a fixture that writes a key or type the schema does not allow fails here."""
    plan: dict[str, Any] = _merge(compiled_plan(), partial)
    assert_valid(plan)
    return plan


def assert_valid(plan: dict[str, Any]) -> None:
    errors = plan_errors(plan)
    assert not errors, "test plan does not match plan.schema.json:\n  " + "\n  ".join(errors)
