"""warnings.py: each suspicious combination gives one warning with its code, key and line:col."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler import pipeline
from loft.compiler.errors import Diagnostic
from project_factory import BASE_CONFIG, make_project

GPU_BASE = BASE_CONFIG.replace("target:\n  gpu: cpu\n", "").replace(
    "training:\n  precision: fp32\n  optimizer: adamw_torch\n", "")


def warnings_of(tmp_path: Path, text: str) -> list[Diagnostic]:
    return pipeline.plan(make_project(tmp_path, text)).warnings


def test_a_sensible_config_has_no_warnings(tmp_path: Path) -> None:
    assert warnings_of(tmp_path, BASE_CONFIG) == []
    assert warnings_of(tmp_path / "gpu", GPU_BASE) == []


CASES = [
    # (extra YAML, base, code, key, text of the line the warning must point at)
    ("data_eval:\n", BASE_CONFIG.replace("    - path: data/chat.jsonl\n",
                                         "    - path: data/chat.jsonl\n  eval_split: 0.1\n") + "eval:\n  enabled: false\n",
     "eval-split-unused", "data.eval_split", "eval_split:"),
    ("", BASE_CONFIG.replace("  optimizer: adamw_torch\n", "  optimizer: adamw_torch\n  eval_steps: 10\n"),
     "eval-steps-without-split", "training.eval_steps", "eval_steps:"),
    ("", BASE_CONFIG.replace("  optimizer: adamw_torch\n", "  optimizer: adamw_torch\n  max_steps: 10\n  warmup_steps: 10\n"),
     "warmup-longer-than-run", "training.warmup_steps", "warmup_steps:"),
    ("adapter:\n  r: 64\n  alpha: 8\n", BASE_CONFIG, "lora-alpha-ratio", "adapter.alpha", "alpha:"),
    ("adapter:\n  type: none\n", BASE_CONFIG.replace("  optimizer: adamw_torch\n",
                                                   "  optimizer: adamw_torch\n  learning_rate: 2.0e-4\n"),
     "lr-high-full-ft", "training.learning_rate", "learning_rate:"),
    ("", BASE_CONFIG.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  attn_implementation: eager\n"),
     "packing-eager-attention", "model.attn_implementation", "attn_implementation:"),
    ("", GPU_BASE.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  dtype: bf16\n")
     + "training:\n  precision: fp16\n", "dtype-precision-mismatch", "training.precision", "precision:"),
    ("", BASE_CONFIG.replace("  precision: fp32\n", "  precision: bf16\n"), "precision-on-cpu", "training.precision", "precision:"),
    ("", BASE_CONFIG.replace("  precision: fp32\n", "  precision: fp32\n  micro_batch_size: auto\n"),
     "auto-batch-on-cpu", "training.micro_batch_size", "micro_batch_size:"),
    ("deepspeed:\n  stage: 2\n", GPU_BASE, "zero-single-gpu", "deepspeed.stage", "stage:"),
    ("target:\n  kind: multi_node\n", GPU_BASE, "multi-node-one-node", "target.nodes", "nodes:"),
    ("target:\n  kind: multi_gpu\n", GPU_BASE, "multi-gpu-one-gpu", "target.num_gpus", "num_gpus:"),
    ("sequence:\n  max_length: 8192\n", BASE_CONFIG, "max-length-over-model", "sequence.max_length", "max_length:"),
    ("", BASE_CONFIG.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  trust_remote_code: true\n"),
     "trust-remote-code", "model.trust_remote_code", "trust_remote_code:"),
    ("adapter:\n  modules_to_save: [lm_head]\n",
     BASE_CONFIG.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  added_tokens: ['<tool_call>']\n"),
     "added-tokens-untrained", "model.added_tokens", "added_tokens:"),
]


@pytest.mark.parametrize("extra,base,code,key,needle", CASES, ids=[c[2] for c in CASES])
def test_each_warning(tmp_path: Path, extra: str, base: str, code: str, key: str, needle: str) -> None:
    text = base + ("" if extra.startswith("data_eval") else extra)
    # the line the warning must point at: the key itself, or its nearest written parent section
    lines = text.splitlines()
    line = next((i + 1 for i, x in enumerate(lines) if x.strip().startswith(needle)), 0)
    if not line:
        section = key.split(".")[0] + ":"
        line = next(i + 1 for i, x in enumerate(lines) if x.startswith(section))
    got = [w for w in warnings_of(tmp_path, text) if w.code == code]
    assert len(got) == 1, [w.render() for w in warnings_of(tmp_path, text)]
    w = got[0]
    assert w.key == key and w.severity == "warning" and w.file.endswith("cfg.yaml")
    assert w.line == line, w.render()
    assert w.render().startswith(f"{w.file}:{line}:")


def test_warnings_are_recorded_in_the_plan(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG + "adapter:\n  r: 64\n  alpha: 8\n")
    plan = pipeline.plan(cfg).plan
    assert plan["warnings"] == [{"code": "lora-alpha-ratio", "key": "adapter.alpha",
                                 "message": plan["warnings"][0]["message"]}]
    assert "64" in plan["warnings"][0]["message"]


def test_vram_that_does_not_fit_is_a_warning(tmp_path: Path) -> None:
    text = GPU_BASE.replace("  base: ./models/tiny\n", "  base: meta-llama/Llama-3.1-70B\n  revision: abcdef0\n")
    text += "adapter:\n  type: none\ntraining:\n  learning_rate: 1.0e-5\n  micro_batch_size: 8\ntarget:\n  gpu: L4\n"
    got = [w for w in warnings_of(tmp_path, text) if w.code == "does-not-fit"]
    assert len(got) == 1 and got[0].key == "target.gpu" and "L4" in got[0].message
    assert got[0].line == text.splitlines().index("  gpu: L4") + 1
