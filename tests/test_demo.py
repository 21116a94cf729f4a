"""`make demo` end to end (slow): examples/demo.py builds the tiny model, compiles examples/quickstart.yaml and
runs the bundle on CPU; the training loss goes down and every output the demo points at exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_end_to_end(tmp_path):
    run = tmp_path / "demo-run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(run)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = run / "out"
    for path in ("plan.md", "plan.lock", "launch.sh"):
        assert (run / path).is_file(), path
    for path in ("prepared/train", "metrics.jsonl", "batches.jsonl", "train_report.json", "final/adapter_config.json",
                 "eval/report.json", "eval/report.md", "merged/model.safetensors", "merged/tokenizer.json",
                 "export/safetensors/model.safetensors"):
        assert (out / path).exists(), path
    assert list((out / "checkpoints").glob("checkpoint-*/loft-complete.json"))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) >= 4 and losses[-1] < losses[0]
    report = json.loads((out / "train_report.json").read_text())
    assert report["status"] == "completed" and report["global_step"] >= 24  # a few dozen steps
    ev = json.loads((out / "eval" / "report.json").read_text())
    assert ev["eval_loss"] is not None and ev["generations"]
    # the demo says where everything is, and the first/last loss
    for word in ("plan.md", "metrics.jsonl", "checkpoints", "merged", "eval", "loss"):
        assert word in proc.stdout
    assert ": down" in proc.stdout
