"""Secrets in the environment never reach an artefact: with tokens exported, build → prepare → 3 train
steps → export, then every file of the bundle and its outputs and every log line is scanned (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SECRETS = {"HF_TOKEN": "hf_" + "Q7w" * 12, "WANDB_API_KEY": "0f" * 20, "OPENAI_API_KEY": "sk-" + "Z9x" * 12}


def test_env_secrets_are_in_no_file_and_no_log(tiny_model_dir: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "data" / "chat.jsonl", proj / "data" / "chat.jsonl")
    shutil.copytree(tiny_model_dir, proj / "models" / "tiny")
    (proj / "cfg.yaml").write_text(
        "loft: 1\nname: s\nmodel: {base: ./models/tiny, dtype: fp32}\n"
        "data: {datasets: [{path: data/chat.jsonl}], eval_split: 0.05}\ntemplate: llama3.2\n"
        "sequence: {max_length: 128}\nadapter: {type: lora, r: 4, alpha: 8}\n"
        "training: {max_steps: 3, micro_batch_size: 2, optimizer: adamw_torch, precision: fp32,"
        " gradient_checkpointing: false, logging_steps: 1}\n"
        "eval: {enabled: false}\nexport: {merge: true, formats: [safetensors]}\ntarget: {gpu: cpu}\n")
    env = {**os.environ, **SECRETS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHON": sys.executable, "WANDB_MODE": "offline"}
    run = tmp_path / "run"
    logs = []
    for cmd in ([sys.executable, "-m", "loft.compiler", "build", str(proj / "cfg.yaml"), "-o", str(run)],
                ["bash", str(run / "launch.sh"), "all"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, logs[-1][-3000:]
    assert (run / "out" / "export").is_dir() and (run / "out" / "train_report.json").is_file()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) > 20
    for name, value in SECRETS.items():
        assert not any(value in log for log in logs), name
        hits = [str(p) for p in files if value.encode() in p.read_bytes()]
        assert not hits, (name, hits)
