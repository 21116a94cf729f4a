"""`loftc estimate` and `loftc gpus` end to end: loft and Axolotl configs, hub ids from the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from estimate_facts import QWEN05
from loft.compiler.cli import main

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "chat.jsonl"
REV = "7ae557604adf67be50417f59c2c2f167def9a775"

LOFT = f"""\
loft: 1
model:
  base: {{base}}
  revision: {REV}
data:
  datasets:
    - path: chat.jsonl
template: qwen2.5
sequence:
  max_length: 2048
  packing: true
adapter:
  type: lora
  r: 16
  alpha: 32
  dropout: 0.05
  target_modules: all-linear
training:
  micro_batch_size: 4
  optimizer: adamw_torch_fused
  gradient_checkpointing: true
target:
  gpu: H100
"""

AXOLOTL = f"""\
base_model: Qwen/Qwen2.5-0.5B-Instruct
revision_of_model: {REV}
datasets:
  - path: chat.jsonl
    type: chat_template
    field_messages: messages
chat_template: qwen_25
sequence_len: 2048
sample_packing: true
pad_to_sequence_len: true
adapter: lora
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_linear: true
micro_batch_size: 4
gradient_accumulation_steps: 1
num_epochs: 1
optimizer: adamw_torch_fused
learning_rate: 0.0002
bf16: true
gradient_checkpointing: true
output_dir: ./out
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml", base: str = "Qwen/Qwen2.5-0.5B-Instruct") -> Path:
    (tmp_path / "chat.jsonl").write_text("\n".join(DATA.read_text(encoding="utf-8").splitlines()[:40]) + "\n",
                                         encoding="utf-8")
    path = tmp_path / name
    path.write_text(text.replace("{base}", base), encoding="utf-8")
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["estimate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_total_and_components(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    est = run_json(capsys, str(write(tmp_path, LOFT)))
    v = est["vram"]
    assert set(v["components"]) >= {"weights", "lora", "gradients", "optimizer", "master_weights", "activations",
                                     "logits", "cuda_context", "allocator_overhead"}
    assert v["total_gib"] == pytest.approx(sum(v["components"].values()), abs=0.01)
    assert v["trainable_params"] == 8_798_208 and v["params"] == 494_032_768
    assert v["fits"]["H100"] and v["max_micro_batch"] >= 4
    assert est["time"]["tokens"] and est["cost"]["options"]


def test_text_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(write(tmp_path, LOFT))]) == 0
    out = capsys.readouterr().out
    assert "Peak VRAM per GPU" in out and "logits and loss" in out and "total (what nvidia-smi shows)" in out
    assert "Cheapest that fits" in out and "as of 2025-06-01" in out


def test_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write(tmp_path, LOFT))
    base = run_json(capsys, cfg)
    est = run_json(capsys, cfg, "--gpu", "a100 40gb", "--num-gpus", "2", "--provider", "RunPod", "--micro-batch", "2")
    assert est["vram"]["gpu"] == "A100-40GB" and est["vram"]["num_gpus"] == 2 and est["vram"]["micro_batch"] == 2
    assert est["vram"]["total_gib"] < base["vram"]["total_gib"]
    assert {(o["provider"], o["gpu"]) for o in est["cost"]["options"]} <= {("runpod", "A100-40GB")}


@pytest.mark.parametrize("argv", [["--gpu", "H1000"], ["--provider", "nowhere"], ["--num-gpus", "0"]])
def test_bad_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["estimate", str(write(tmp_path, LOFT)), *argv]) == 2
    assert "loftc: error:" in capsys.readouterr().err


def test_axolotl_config_matches_the_loft_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loft = run_json(capsys, str(write(tmp_path, LOFT)))
    axo = run_json(capsys, str(write(tmp_path, AXOLOTL, "axolotl.yml")))
    assert axo["vram"]["total_gib"] == loft["vram"]["total_gib"]
    assert axo["vram"]["trainable_params"] == 8_798_208


def test_local_model_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({**QWEN05, "architectures": ["Qwen2ForCausalLM"]}))
    est = run_json(capsys, str(write(tmp_path, LOFT.replace(f"  revision: {REV}\n", ""), base="./qwen")))
    hub = run_json(capsys, str(write(tmp_path, LOFT)))
    assert est["vram"]["total_gib"] == hub["vram"]["total_gib"]


def test_unknown_hub_model_warns_instead_of_crashing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write(tmp_path, LOFT, base="someone/exotic-model-9b"))
    assert main(["estimate", cfg]) == 0
    assert "estimate unavailable" in capsys.readouterr().out
    est = run_json(capsys, cfg)
    assert est["vram"]["unknown"] and est["vram"]["total_gib"] is None


def test_gpus_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus"]) == 0
    out = capsys.readouterr().out
    assert "H100" in out and "RTX4090" in out and "MI300X" in out
    assert main(["gpus", "--providers"]) == 0
    assert "runpod" in capsys.readouterr().out
    assert main(["gpus", "--json"]) == 0
    assert "H200" in json.loads(capsys.readouterr().out)["gpus"]


def test_axolotl_deepspeed_file_and_gpu_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Full fine-tune with Axolotl's zero3_bf16.json: ZeRO-3 on 8 GPUs holds a fraction of one GPU's states."""
    text = (AXOLOTL.replace("Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.1-8B-Instruct")
            .replace("chat_template: qwen_25", "chat_template: llama3")
            .replace("adapter: lora\n", "").replace("lora_r: 16\nlora_alpha: 32\nlora_dropout: 0.05\n", "")
            .replace("lora_target_linear: true\n", "") + "deepspeed: deepspeed_configs/zero3_bf16.json\n")
    cfg = str(write(tmp_path, text, "axolotl_ds.yml"))
    one = run_json(capsys, cfg)
    eight = run_json(capsys, cfg, "--num-gpus", "8")
    assert one["vram"]["trainable_params"] == 8_030_261_248
    assert one["vram"]["component_max"]["master_weights"] > 29  # DeepSpeed's fp32 master copy, 4 bytes × 8B
    assert eight["vram"]["num_gpus"] == 8 and eight["vram"]["fits"]["H100"] and not one["vram"]["fits"]["H100"]
    states = ("weights", "optimizer", "master_weights", "gradients")
    assert sum(eight["vram"]["component_max"][k] for k in states) < sum(one["vram"]["component_max"][k]
                                                                          for k in states) / 6
