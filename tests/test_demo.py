"""`make demo` end to end (slow): examples/demo.py builds the tiny model, compiles examples/quickstart.yaml and
runs the bundle on CPU. Every stage leaves its outputs, the loss falls clearly (not just by noise) both in
training and on the held-out rows, and the demo's summary says where everything is."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.long]

STAGE_OUTPUTS = {
    "prepare": ["prepared/train", "prepared/eval", "prepare_report.json", "prepare_report.md", "lengths.png",
                "blend_metadata.json"],
    "train": ["metrics.jsonl", "batches.jsonl", "train_report.json", "final/adapter_config.json",
              "final/adapter_model.safetensors"],
    "eval": ["eval/report.json", "eval/report.md"],
    "merge": ["merged/model.safetensors", "merged/config.json", "merged/tokenizer.json"],
    "export": ["export/safetensors/model.safetensors", "export/export_report.json"],
}


def test_demo_end_to_end(tmp_path: Path) -> None:
    run = tmp_path / "demo-run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(run)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for path in ("plan.md", "plan.lock", "launch.sh", "MANIFEST.sha256", "chat_template.jinja"):
        assert (run / path).is_file(), path
    out = run / "out"
    missing = [f"{stage}: {p}" for stage, paths in STAGE_OUTPUTS.items() for p in paths if not (out / p).exists()]
    assert not missing, missing
    plan = json.loads((run / "plan.lock").read_text())
    steps = plan["config"]["training"]["max_steps"]
    ckpts = sorted(int(p.parent.name.split("-")[1])
                   for p in (out / "checkpoints").glob("checkpoint-*/loft-complete.json"))
    assert ckpts and ckpts[-1] == steps, ckpts
    uniform = math.log(plan["model"]["vocab_size"])  # the loss of a uniform guess: where a random model starts
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    report = json.loads((out / "train_report.json").read_text())
    assert report["status"] == "completed" and report["global_step"] == steps
    assert len(losses) >= 10
    assert losses[0] > uniform - 0.3  # it really starts from (about) nothing
    assert losses[0] - losses[-1] > 0.5, losses  # a clear drop, far beyond step-to-step noise
    assert losses[0] - min(losses[-5:]) > 0.5
    ev = json.loads((out / "eval" / "report.json").read_text())
    assert ev["eval_loss"] < uniform - 0.5, (ev["eval_loss"], uniform)  # and it generalises to held-out rows
    assert ev["perplexity"] == pytest.approx(math.exp(ev["eval_loss"]), rel=1e-3) and ev["generations"]

    # the summary: the losses, and where everything is
    text = proc.stdout.split("=== done in", 1)[1]
    assert f"{losses[0]:.3f} (step 2) -> {losses[-1]:.3f} (step {steps}): down" in text
    assert f"eval loss     {ev['eval_loss']:.3f}" in text
    for path in ("plan.md", "plan.lock", "metrics.jsonl", "checkpoints", f"checkpoint-{steps}", "final", "merged",
                 "export", "train_report.json", "eval/report.md", "prepare_report.md"):
        assert path in text, path
    for hint in ("launch.sh eval", "STOP", "loft debug-tokens", "loftc verify"):
        assert hint in text, hint
