"""eval → report (loss, perplexity, generations); merge → a standalone model equal to base+adapter;
export → safetensors, and gguf either through llama.cpp's converter or a clear error."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle, runtime_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> Path:
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    run_dir = make_bundle(tmp_path_factory.mktemp("em"), tiny_model_dir,
                          {"training.max_steps": 4, "training.learning_rate": 2e-2,
                           "export.formats": ["safetensors", "gguf"]})
    assert run(load(run_dir)) == 0
    return run_dir


def test_eval_report(trained):
    import math

    from loft.runtime.__main__ import main

    assert main(["eval", str(trained), "--checkpoints", "all"]) == 0
    report = json.loads((trained / "out" / "eval" / "report.json").read_text())
    assert report["eval_loss"] > 0 and report["perplexity"] == pytest.approx(math.exp(report["eval_loss"]))
    assert report["tokens"] > 0 and report["backend"] == "transformers"
    # the base on the same split and the same prompts: the adapter disabled, not a second copy
    base = report["base"]
    assert base["tokens"] == report["tokens"] and base["eval_loss"] > report["eval_loss"]
    assert report["decoding"] == {"strategy": "greedy", "max_new_tokens": 8, "seed": 7}
    sources = [g["source"] for g in report["generations"]]
    assert sources[0] == "eval.prompts" and any(s.startswith("eval sample") for s in sources)
    assert "What is AI?" in report["generations"][0]["prompt"]
    assert all(g["reference"] for g in report["generations"][1:])
    assert all(isinstance(g["base"], str) for g in report["generations"])
    assert any(g["base"] != g["output"] for g in report["generations"])
    md = (trained / "out" / "eval" / "report.md").read_text()
    assert "perplexity" in md and "## Generations" in md and "Base:" in md and "## Checkpoints" in md
    # across checkpoints: checkpoint-3 (save_steps 3) and checkpoint-4 (the end; the final model is not
    # measured twice), the best named, a PNG
    ck = report["checkpoints"]
    assert [(r["checkpoint"], r["step"]) for r in ck["rows"]] == [("checkpoint-3", 3), ("checkpoint-4", 4)]
    assert ck["rows"][-1]["eval_loss"] == pytest.approx(report["eval_loss"], rel=1e-5)
    assert ck["best"] == min(ck["rows"], key=lambda r: r["eval_loss"])["checkpoint"]
    png = trained / "out" / "eval" / "checkpoints.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((trained / "out").glob(".eval*"))  # the staging directory is gone


def test_eval_checkpoint_errors(trained):
    from loft.runtime.__main__ import main
    from loft.runtime.eval_checkpoints import choose
    from loft.runtime.plan import load
    from loft.runtime.train.model import StageError

    bundle = load(trained)
    with pytest.raises(StageError, match=r"step\(s\) \[99\].*complete checkpoints: 3, 4"):
        choose(bundle, "3,99")
    with pytest.raises(StageError, match="expected `all`"):
        choose(bundle, "three")
    from loft.runtime.eval import run

    bundle.plan["config"]["eval"]["checkpoints"] = [99]  # the plan's list form, checked before any model loads
    with pytest.raises(StageError, match=r"step\(s\) \[99\]"):
        run(bundle)
    before = (trained / "out" / "eval" / "report.json").read_bytes()
    weights = trained / "out" / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors"
    hidden = weights.with_name("hidden.safetensors")
    weights.rename(hidden)
    try:
        assert main(["eval", str(trained), "--checkpoints", "3"]) == 1  # one line, no traceback
    finally:
        hidden.rename(weights)
    assert (trained / "out" / "eval" / "report.json").read_bytes() == before  # the old report is intact


def test_eval_loss_matches_the_trainer_on_the_same_split(trained):
    """The eval stage's token-weighted loss equals the Trainer's final eval_loss on the same data."""
    from loft.runtime.train.metrics import read_jsonl

    evals = [r for r in read_jsonl(trained / "out" / "metrics.jsonl") if "eval_loss" in r]
    report = json.loads((trained / "out" / "eval" / "report.json").read_text())
    assert report["eval_loss"] == pytest.approx(evals[-1]["eval_loss"], rel=1e-4)


def test_merge_equals_base_plus_adapter(trained):
    import torch
    from loft.runtime.__main__ import main
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["merge", str(trained)]) == 0
    merged_dir = trained / "out" / "merged"
    assert (merged_dir / "model.safetensors").is_file() and not (merged_dir / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(str(merged_dir))
    assert tok.chat_template == (trained / "chat_template.jinja").read_text()
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(trained / "model"))
    adapted = PeftModel.from_pretrained(base, str(trained / "out" / "final")).eval()
    ids = torch.tensor([tok.encode("user: What is AI?")])
    with torch.no_grad():
        a, b = merged(input_ids=ids).logits, adapted(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(trained / "model"))(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, plain, atol=1e-4)  # training changed something


def test_export_safetensors_and_gguf_with_model_cards(trained, monkeypatch):
    """No llama.cpp anywhere: gguf is written in Python; both formats carry a model card."""
    import hashlib

    from huggingface_hub import ModelCard
    from loft.runtime.__main__ import main

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert main(["export", str(trained)]) == 0
    st = trained / "out" / "export" / "safetensors"
    assert (st / "model.safetensors").is_file() and (st / "config.json").is_file()
    assert (st / "tokenizer.json").is_file() and (st / "chat_template.jinja").is_file()
    report = json.loads((trained / "out" / "export" / "export_report.json").read_text())
    assert report["formats"]["gguf"]["files"] == ["README.md", "t-f32.gguf"]  # model.dtype fp32 -> f32
    sha = hashlib.sha256((trained / "plan.lock").read_bytes()).hexdigest()
    for fmt in ("safetensors", "gguf"):
        card = ModelCard.load(str(trained / "out" / "export" / fmt / "README.md"))
        meta = card.data.to_dict()
        assert meta["library_name"] == "transformers" and "loft" in meta["tags"] and "lora" in meta["tags"]
        assert sha in card.text and "| learning rate | 0.02 |" in card.text and "| lora r / alpha / dropout |" in card.text
        assert "| fine-tuned |" in card.text  # the eval report's losses, base beside fine-tuned
        assert "![loss curve](loss.png)" in card.text
        assert (trained / "out" / "export" / fmt / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "gguf" in ModelCard.load(str(trained / "out" / "export" / "gguf" / "README.md")).data.to_dict()["tags"]


def test_export_bad_input_leaves_nothing(trained, monkeypatch, capsys):
    import errno

    from loft.runtime import gguf_export
    from loft.runtime.__main__ import main

    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    gguf_dir = trained / "out" / "export" / "gguf"
    before = sorted(p.name for p in gguf_dir.iterdir())
    assert main(["export", str(trained), "--format", "gguf", "--quant", "q3_x"]) == 1
    assert "unknown GGUF quant type 'q3_x'" in capsys.readouterr().err
    assert main(["export", str(trained), "--format", "tarball"]) == 1
    assert "'tarball' is not supported" in capsys.readouterr().err

    def full_disk(src, dest, quant, name):
        dest.write_bytes(b"GGUF" + b"\0" * 1000)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gguf_export, "write", full_disk)
    assert main(["export", str(trained), "--format", "gguf", "--quant", "q8_0"]) == 1
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "Traceback" not in err
    assert sorted(p.name for p in gguf_dir.iterdir()) == before  # the previous export is untouched
    assert not list((trained / "out" / "export").glob(".*"))  # no staging leftovers
    assert main(["export", str(trained), "--format", "gptq"]) == 1  # CPU: a clear error, nothing written
    assert "gptq export calibrates on a CUDA GPU" in capsys.readouterr().err
    assert not (trained / "out" / "export" / "gptq").exists()


def test_export_gguf_runs_the_llama_cpp_converter(trained, tmp_path):
    """With LLAMA_CPP_DIR set, export calls its convert_hf_to_gguf.py on merged/ with the plan's dtype."""
    fake = tmp_path / "llama.cpp"
    fake.mkdir()
    script = fake / "convert_hf_to_gguf.py"
    script.write_text("import sys, pathlib\nargs = sys.argv[1:]\nout = pathlib.Path(args[args.index('--outfile') + 1])\n"
                      "out.write_text(' '.join(args))\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    proc = subprocess.run([sys.executable, "-m", "loft.runtime", "export", str(trained)],
                          env=runtime_env(LLAMA_CPP_DIR=str(fake)), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = trained / "out" / "export" / "gguf" / "t-f32.gguf"
    args = out.read_text().split()
    assert args[0] == str(trained / "out" / "merged") and args[-2:] == ["--outtype", "f32"]


def test_push_to_hub_uploads_the_card_with_the_weights(trained, monkeypatch):
    """push_to_hub (stand-in HfApi: no network here) uploads the export folder, model card included."""
    import huggingface_hub
    from loft.runtime.export import run
    from loft.runtime.plan import load

    calls: dict = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            calls["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["card"] = (Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("MY_TOKEN", "hf_test")
    bundle = load(trained)
    bundle.plan["config"]["export"]["push_to_hub"] = {"repo_id": "me/tiny", "private": True, "token_env": "MY_TOKEN"}
    assert run(bundle, export_format="merged") == 0
    assert calls["repo"] == ("me/tiny", True, True) and calls["token"] == "hf_test"
    assert {"README.md", "loss.png", "model.safetensors", "tokenizer.json"} <= set(calls["files"])
    assert "plan.lock sha256" in calls["card"]
