"""`loftc convert`: clean commented loft YAML, and the same plan as building the Axolotl file directly."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from loft.compiler import cli
from loft.compiler.commands.convert import convert
from loft.compiler.dialects import detect
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse, parse_text
from loft.compiler.pipeline import plan
from loft.compiler.validate import validate

ROOT = Path(__file__).resolve().parents[2]
CORPUS_SAMPLE = [
    "examples__llama-2__qlora-fsdp.yml",  # FSDP1 with prefixed keys, alpaca
    "examples__jamba__qlora_deepspeed.yaml",  # DeepSpeed JSON from Axolotl's deepspeed_configs/
    "examples__qwen3.5__27b-qlora.yaml",  # Cut Cross Entropy plugin, chat_template with mappings, split slice
    "examples__qat_nvfp4__Gemma3-12B_baseline.yml",  # FSDP2 with plain fsdp_config keys
    "examples__llama-3__lora-1b-ray.yml",
]


def comparable(p: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The plan without `source` (which names the file and dialect), and its warnings as a set."""
    p = dict(p)
    p.pop("source")
    warnings = {json.dumps(w, sort_keys=True) for w in p.pop("warnings")}
    return p, warnings


def assert_same_plan(axolotl_file: Path, converted: Path, out_dir: Path) -> None:
    a, aw = comparable(plan(axolotl_file, out_dir=out_dir).plan)
    b, bw = comparable(plan(converted, out_dir=out_dir).plan)
    assert a == b
    # the converted file carries no Axolotl keys, so only the translation's warnings go away
    assert bw <= aw


@pytest.mark.parametrize("name", CORPUS_SAMPLE)
def test_corpus_round_trip(shared_dir: Path, tmp_path: Path, name: str) -> None:
    src = shared_dir / "corpus/axolotl/examples" / name
    if not src.exists():
        pytest.skip(f"{name} is not in this corpus")
    try:
        plan(src, out_dir=tmp_path / "run")
    except ConfigError as e:
        if all(d.code == "template-unavailable" for d in e.diagnostics):
            pytest.skip(f"{name} needs its model's chat template files (not cached offline)")
        raise
    out = tmp_path / "conv" / "loft.yaml"
    out.parent.mkdir()
    text, _ = convert(src, out)
    out.write_text(text)
    assert detect(parse(out))[0] == "loft"
    assert_same_plan(src, out, tmp_path / "run")


TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
               "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 1000, "max_position_embeddings": 512, "tie_word_embeddings": False}


def test_local_paths_are_rebased_and_plans_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOFT_ALLOW_PATHS", str(tmp_path))  # the model sits beside the configs' folders
    tiny_model_dir = tmp_path / "models/tiny"  # resolve reads config.json only; no weights needed to plan
    tiny_model_dir.mkdir(parents=True)
    (tiny_model_dir / "config.json").write_text(json.dumps(TINY_CONFIG))
    src_dir = tmp_path / "axolotl"
    (src_dir / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples/data/chat.jsonl", src_dir / "data/chat.jsonl")
    model_rel = os.path.relpath(tiny_model_dir, src_dir)
    src = src_dir / "axo.yml"
    src.write_text(f"""\
base_model: {model_rel}
datasets:
  - path: ./data/chat.jsonl
    type: chat_template
    roles_to_train: [assistant]
chat_template: llama3
val_set_size: 0.1
sequence_len: 256
sample_packing: true
adapter: lora
lora_r: 8
lora_alpha: 16
lora_target_linear: true
micro_batch_size: 2
gradient_accumulation_steps: 2
num_epochs: 1
learning_rate: 1e-4
evals_per_epoch: 2
""")
    out = tmp_path / "elsewhere/deeper/loft.yaml"
    assert cli.main(["convert", str(src), "-o", str(out)]) == 0
    cfg = parse(out).data
    assert cfg["data"]["datasets"][0]["path"] == "../../axolotl/data/chat.jsonl"
    assert cfg["model"]["base"] == os.path.relpath(tiny_model_dir, out.parent)
    assert_same_plan(src, out, tmp_path / "run")


def test_output_is_clean_commented_loft_yaml(shared_dir: Path) -> None:
    src = shared_dir / "corpus/axolotl/examples/examples__llama-2__qlora-fsdp.yml"
    text, warnings = convert(src)
    doc = parse_text(text, "loft.yaml")
    validate(doc.data, doc=doc)
    lines = text.splitlines()
    assert lines[0].startswith("# loft config converted from the Axolotl config examples__llama-2__qlora-fsdp.yml")
    assert any(line.startswith("loft: 1") for line in lines)
    assert any("r: 32" in line and "# axolotl: lora_r" in line for line in lines)
    assert any("# axolotl: fsdp_transformer_layer_cls_to_wrap" in line for line in lines)
    assert len(warnings) >= 1 and any(w.message[:40] in text for w in warnings)  # warnings in the header
    top = [line.split(":")[0] for line in lines if line and not line[0].isspace() and not line.startswith("#")]
    assert top[:4] == ["loft", "name", "model", "data"]


def test_refuses_to_overwrite_without_force(tmp_path: Path, shared_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_dir / "corpus/axolotl/examples/examples__llama-2__qlora-fsdp.yml"
    out = tmp_path / "loft.yaml"
    out.write_text("keep me\n")
    assert cli.main(["convert", str(src), "-o", str(out)]) == 1
    assert out.read_text() == "keep me\n"
    assert "--force" in capsys.readouterr().err
    assert cli.main(["convert", str(src), "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith("# loft config converted")


def test_refused_config_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "axo.yml"
    src.write_text("base_model: a/b\ndatasets:\n  - path: c/d\n    type: alpaca\nrl: dpo\nlearning_rate: 1e-5\n")
    out = tmp_path / "loft.yaml"
    assert cli.main(["convert", str(src), "-o", str(out)]) == 1
    assert not out.exists()


def test_converting_a_loft_config_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "loft.yaml"
    src.write_text("loft: 1\nmodel: {base: a/b}\n")
    assert cli.main(["convert", str(src)]) == 1


def test_estimate_plan_md_and_diff_work_on_translated_configs(shared_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A translated config gets the same estimate, plan.md and `loftc diff` as a native one."""
    text = (shared_dir / "corpus/axolotl/examples/examples__llama-2__qlora-fsdp.yml").read_text()
    text = text.replace("NousResearch/Llama-2-7b-hf", "Qwen/Qwen2.5-7B")  # a model in loft's catalog
    src, changed = tmp_path / "axo.yml", tmp_path / "axo-r64.yml"
    src.write_text(text)
    changed.write_text(text.replace("lora_r: 32", "lora_r: 64"))
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["build", str(src), "-o", str(a), "-q"]) == 0
    assert cli.main(["build", str(changed), "-o", str(b), "-q"]) == 0
    lock = json.loads((a / "plan.lock").read_text())
    assert lock["source"]["dialect"] == "axolotl"
    assert lock["estimate"]["vram"]["total_gib"] > 0
    assert "fsdp" in (a / "plan.md").read_text().lower()
    capsys.readouterr()
    assert cli.main(["diff", str(a), str(b), "--exit-code"]) == 1
    out = capsys.readouterr().out
    assert "adapter.r" in out and "32" in out and "64" in out
