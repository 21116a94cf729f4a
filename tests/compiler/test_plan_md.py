"""plan.md is rendered from plan.lock's values: every number and cadence it prints is checked against the
plan it was rendered from (each example's golden plan, and variants that exercise each cadence)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from loft.compiler.render import plan_md_view

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PLANS = sorted(p.parent.name for p in GOLDEN.glob("*/plan.lock"))


def _plan(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((GOLDEN / name / "plan.lock").read_text(encoding="utf-8"))
    return out


def _rows(plan: dict[str, Any]) -> dict[str, str]:
    view = plan_md_view(plan)
    return {k: str(v) for k, v in [*view["train_rows"], *view["template_rows"], *view["data_rows"]]}


def _expected_cadence(steps: Any, per_epoch: Any) -> str:
    return f"every {steps} steps" if steps else f"{per_epoch} times per epoch" if per_epoch else "every epoch"


def _check(plan: dict[str, Any]) -> None:
    t, d, seq = plan["config"]["training"], plan["derived"], plan["config"]["sequence"]
    rows = _rows(plan)
    lr = rows["learning rate"]
    assert lr.startswith(f"{t['learning_rate']} ({t['lr_scheduler']}, ")
    if d["warmup_steps"] is not None:
        assert f"{d['warmup_steps']} warmup steps" in lr
    assert rows["seed"] == str(t["seed"])
    assert f"weight decay {t['weight_decay']}, max grad norm {t['max_grad_norm']}" in rows["optimizer"]
    batch = rows["effective batch"]
    assert batch.startswith(f"{d['micro_batch_size']} micro × {d['gradient_accumulation_steps']} accumulation × "
                            f"{d['world_size']} ")
    assert f"= **{d['global_batch_size']}** sequences" in batch
    if d["tokens_per_step"] is not None:
        assert f"{d['tokens_per_step']:,} tokens per step" in batch
    total = rows["total"]
    assert total.startswith(f"{d['total_steps']:,} steps" if d["total_steps"] is not None else "— steps")
    evals, saves = rows["eval / save"].split(", keep ")[0].split(" / ")
    data = plan["config"]["data"]
    has_eval = bool(data["eval_split"]) or any(ds["eval_split"] for ds in data["datasets"])
    assert evals == (_expected_cadence(t["eval_steps"], t["evals_per_epoch"]) if has_eval
                     else "no eval (no eval split)")
    assert saves == _expected_cadence(t["save_steps"], t["saves_per_epoch"])
    assert rows["eval / save"].endswith(f"keep {t['save_total_limit']} checkpoints")
    assert rows["max length"].split(" ")[0] == str(seq["max_length"])
    assert rows["eval split"] == str(data["eval_split"]) and rows["temperature"] == str(data["temperature"])
    adapter = plan_md_view(plan)["adapter"]
    a = plan["config"]["adapter"]
    if a["type"] != "none":
        assert f"r={a['r']}, alpha={a['alpha']}, dropout={a['dropout']}" in adapter
    numbers = {float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*(?:e-?\d+)?", " ".join(rows.values()))}
    assert float(t["learning_rate"]) in numbers


@pytest.mark.parametrize("name", PLANS)
def test_plan_md_prints_the_plans_numbers(name: str) -> None:
    _check(_plan(name))


@pytest.mark.parametrize(("edit"), [
    {"evals_per_epoch": 4, "saves_per_epoch": 2, "eval_steps": None, "save_steps": None},
    {"eval_steps": 7, "save_steps": 11, "save_total_limit": 5},
    {"eval_steps": None, "save_steps": None, "evals_per_epoch": None, "saves_per_epoch": None},
])
def test_each_cadence_is_printed_as_the_plan_holds_it(edit: dict[str, Any]) -> None:
    plan = copy.deepcopy(_plan(PLANS[0]))
    plan["config"]["training"].update(edit)
    plan["config"]["data"]["eval_split"] = 0.1
    _check(plan)
    if edit.get("evals_per_epoch"):
        assert _rows(plan)["eval / save"].startswith("4 times per epoch / 2 times per epoch")
