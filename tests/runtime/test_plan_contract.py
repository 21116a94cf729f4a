"""plan.lock is checked against plan.schema.json before any stage: a missing, extra or wrong-typed key stops
with its key path (exit 1, no traceback); the schema travels in the bundle beside the runtime copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loft.runtime.contract import plan_errors, resolved_config_schema
from loft.runtime.plan import PlanError, load

from tests.plan_contract import compiled_plan


def _write(root: Path, plan: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.lock").write_text(json.dumps(plan), encoding="utf-8")
    return root


def test_a_compiled_plan_is_valid() -> None:
    assert plan_errors(compiled_plan()) == []


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda p: p["config"]["training"].pop("seed"), "config.training: 'seed' is a required property"),
    (lambda p: p["config"]["adapter"].pop("dropout"), "config.adapter: 'dropout' is a required property"),
    (lambda p: p["derived"].pop("warmup_steps"), "derived: 'warmup_steps' is a required property"),
    (lambda p: p["config"]["training"].update(min_lr=0.1), "config.training: Additional properties"),
    (lambda p: p["config"]["training"].update(save_total_limit="3"), "config.training.save_total_limit: '3'"),
    (lambda p: p["config"]["data"]["datasets"][0].pop("weight"),
     "config.data.datasets[0]: 'weight' is a required property"),
])
def test_a_bad_key_is_named_by_its_path(tmp_path: Path, edit, needle: str) -> None:
    plan = compiled_plan()
    edit(plan)
    root = _write(tmp_path / "run", plan)
    with pytest.raises(PlanError) as e:
        load(root)
    assert needle in str(e.value) and "plan.schema.json" in str(e.value)


def test_every_filled_config_key_is_required() -> None:
    """What resolve's fill_defaults writes is exactly what the runtime may rely on: all of it required."""
    from loft.compiler.validate import load_schema

    strict = resolved_config_schema(load_schema())

    def walk(node: dict, path: str) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            assert node["required"] == sorted(props), path
            for k, sub in props.items():
                walk(sub, f"{path}.{k}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(strict, "config")
    assert "learning_rate" in strict["properties"]["training"]["required"]


def test_cli_exits_1_naming_the_key_without_traceback(tmp_path: Path) -> None:
    plan = compiled_plan()
    del plan["config"]["training"]["learning_rate"]
    root = _write(tmp_path / "run", plan)
    proc = subprocess.run([sys.executable, "-m", "loft.runtime", "train", str(root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "'learning_rate' is a required property" in proc.stderr and "Traceback" not in proc.stderr


def test_the_bundle_carries_the_schemas_the_runtime_checks_against() -> None:
    from loft.compiler.render import runtime_files
    from loft.compiler.resources import data_dir

    files = runtime_files()
    for name in ("plan.schema.json", "config.schema.json"):
        assert files[f"loft/schemas/{name}"] == (data_dir("schemas") / name).read_bytes()
    from loft.runtime import contract

    # the runtime finds them beside itself: loft/runtime/../schemas in a bundle, a checkout or an install
    assert (contract.SCHEMA_DIR / "plan.schema.json").read_bytes() == files["loft/schemas/plan.schema.json"]
