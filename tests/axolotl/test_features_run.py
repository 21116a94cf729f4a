"""An Axolotl config using the phase-2 features builds and really runs (prepare + train on the tiny model):
data_files of a local directory, added tokens, a model config override, the cosine floor, early stopping
settings and a partial full fine-tune."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "data" / "chat.jsonl"

AXOLOTL = """\
base_model: ./model
datasets:
  - path: ./shards
    data_files: [b.jsonl]
    type: chat_template
    field_messages: messages
chat_template: llama3
tokens: ['<tool_call>']
model_config:
  rms_norm_eps: 0.125
sequence_len: 256
micro_batch_size: 2
gradient_accumulation_steps: 1
max_steps: 4
learning_rate: 0.01
lr_scheduler: cosine
cosine_min_lr_ratio: 0.5
warmup_steps: 0
val_set_size: 0.25
eval_steps: 2
early_stopping_patience: 5
unfrozen_parameters: ['model.layers.1.']
bf16: false
seed: 3
"""


@pytest.mark.slow
def test_axolotl_config_with_the_new_features_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.compiler import pipeline
    from loft.runtime.plan import load
    from loft.runtime.prepare.stage import run as prepare
    from loft.runtime.train.trainer import run as train
    from safetensors.torch import load_file

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "shards").mkdir()
    lines = CHAT.read_text(encoding="utf-8").splitlines()
    (tmp_path / "shards" / "a.jsonl").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    (tmp_path / "shards" / "b.jsonl").write_text("\n".join(lines[200:240]) + "\n", encoding="utf-8")
    cfg = tmp_path / "axo.yml"
    cfg.write_text(AXOLOTL, encoding="utf-8")
    out = tmp_path / "run"
    pipeline.build(cfg, out)
    plan = json.loads((out / "plan.lock").read_text())
    c = plan["config"]
    assert c["model"]["added_tokens"] == ["<tool_call>"] and c["model"]["config_overrides"] == {"rms_norm_eps": 0.125}
    assert c["training"]["lr_scheduler"] == "cosine_with_min_lr" and c["training"]["min_lr_ratio"] == 0.5
    assert c["training"]["unfrozen_parameters"] == [r"model\.layers\.1\."]
    assert c["data"]["datasets"][0]["data_files"] == ["b.jsonl"]

    bundle = load(out)
    report = prepare(bundle, log=lambda *a, **k: None)
    assert report["datasets"][c["data"]["datasets"][0]["name"]]["rows_raw"] == 40  # b.jsonl only
    # an Axolotl config names no target, so it plans for the default GPU; train here with the override
    assert train(load(out), allow_device_mismatch=True) == 0
    done = json.loads((out / "out" / "train_report.json").read_text())
    assert done["status"] == "completed" and done["global_step"] == 4 and not done["early_stopped"]
    final = out / "out" / "final"
    tok = json.loads((final / "tokenizer.json").read_text())
    assert any(t["content"] == "<tool_call>" for t in tok["added_tokens"])
    assert json.loads((final / "config.json").read_text())["rms_norm_eps"] == 0.125
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(final / "model.safetensors"))
    changed = {k for k in after if k in before and after[k].shape == before[k].shape and not after[k].equal(before[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed)
    lrs = [r["learning_rate"] for r in (json.loads(x) for x in (out / "out" / "metrics.jsonl").read_text()
                                        .splitlines()) if "learning_rate" in r]
    assert min(lrs) >= 0.005 - 1e-9  # the cosine floor: 0.5 × learning_rate
