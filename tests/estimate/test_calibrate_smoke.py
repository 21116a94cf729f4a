"""benchmarks/estimator_calibrate.py's per-case runner works end to end (tiny model, CPU): full, LoRA, fp32
master and FSDP2 steps run and report. The GPU-only modes (QLoRA, 8-bit AdamW, Liger, flash, ZeRO) need CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_calibration_script_smoke_runs_on_cpu() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "estimator_calibrate.py"), "--smoke"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {r["mode"] for r in rows} == {"full_bf16", "lora_r16", "full_fp32_master", "fsdp2"}
    assert all(r["status"] == "ok" and r["step_s"] > 0 and r["trainable"] > 0 for r in rows)
