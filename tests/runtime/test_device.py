"""The device is part of the contract: a GPU plan never trains silently on another machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loft.runtime.device import ALLOW_ENV, Machine, check, mismatch
from loft.runtime.train.model import StageError

from tests.plan_contract import compiled_plan


def _plan(gpu: str = "H100", gpus: int = 2) -> dict:
    plan = compiled_plan()
    plan["config"]["target"]["gpu"] = gpu
    plan["launch"]["gpus_per_node"] = gpus
    return plan


@pytest.mark.parametrize(("machine", "needle"), [
    (Machine(0, ""), "no CUDA GPU is visible"),
    (Machine(1, "NVIDIA H100 80GB HBM3"), "only 1 are visible"),
    (Machine(2, "NVIDIA A100-SXM4-80GB"), "compiled for H100"),
])
def test_a_mismatch_stops_with_the_override_named(machine: Machine, needle: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert needle in (mismatch(_plan(), machine) or "")
    with pytest.raises(StageError, match="--allow-device-mismatch") as e:
        check(_plan(), machine)
    assert ALLOW_ENV in str(e.value)


def test_the_planned_machine_and_the_overrides_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert check(_plan(), Machine(8, "NVIDIA H100 80GB HBM3")) is True
    assert check(_plan("A100-80GB", 1), Machine(1, "NVIDIA A100-SXM4-80GB")) is True
    assert check(_plan(), Machine(0, ""), allow=True) is False  # allowed: runs on what there is
    monkeypatch.setenv(ALLOW_ENV, "1")
    assert check(_plan(), Machine(0, "")) is False


def test_a_cpu_plan_runs_on_the_cpu_even_beside_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    assert check(_plan("cpu", 0), Machine(1, "NVIDIA H100 80GB HBM3")) is False


def test_train_on_this_cpu_box_refuses_a_gpu_plan(tmp_path: Path) -> None:
    plan = _plan()
    (tmp_path / "plan.lock").write_text(json.dumps(plan), encoding="utf-8")
    env = {k: v for k, v in __import__("os").environ.items() if k != ALLOW_ENV}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([sys.executable, "-m", "loft.runtime", "train", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "no CUDA GPU is visible" in proc.stderr
    assert "--allow-device-mismatch" in proc.stderr and "Traceback" not in proc.stderr
