"""The model card: Hugging Face metadata, the plan's hyperparameters, datasets with their hashes, the loss
curve, eval results, loft version and plan sha256 (no training needed: a hand-made bundle and metrics)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle


def test_model_card_contents(tiny_model_dir, tmp_path):
    from huggingface_hub import ModelCard
    from loft.runtime.model_card import write_card
    from loft.runtime.plan import load

    model = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    sha = "ab" * 32
    run_dir = make_bundle(tmp_path, model, n_train=4, n_eval=0, plan_extra={
        "model.id": "org/tiny-base", "model.path": str(model),
        "data.datasets": [{"name": "chat", "source": "hub", "path": "org/chat-data", "sha256": None, "rows": 10,
                           "revision": "abc123"},
                          {"name": "faq", "source": "local", "path": "data/faq.jsonl", "sha256": sha, "rows": 5,
                           "revision": None}]})
    out = run_dir / "out"
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 / s}) + "\n" for s in range(1, 6)))
    (out / "eval").mkdir()
    (out / "eval" / "report.json").write_text(json.dumps({
        "eval_loss": 1.25, "perplexity": 3.49, "tokens": 100, "base": {"eval_loss": 2.5, "perplexity": 12.2,
                                                                     "tokens": 100},
        "lm_eval": {"tasks": ["qa"], "limit": 3, "scores": {"fine_tuned": {"qa": {"acc": 0.75}},
                                                            "base": {"qa": {"acc": 0.25}}}}}))
    dest = tmp_path / "export"
    dest.mkdir()
    write_card(load(run_dir), "gguf", dest, extra_tags=("gguf",))
    card = ModelCard.load(str(dest / "README.md"))
    meta = card.data.to_dict()
    assert meta["base_model"] == "org/tiny-base" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["org/chat-data"]  # hub ids only: a local file is no hub dataset
    assert meta["library_name"] == "transformers" and {"loft", "lora", "gguf"} <= set(meta["tags"])
    text = card.text
    assert "| learning rate | 0.005 |" in text and "| lora r / alpha / dropout | 4 / 8 / 0.05 |" in text
    assert f"| faq | local | data/faq.jsonl | — | 5 | {sha} |" in text
    assert "| chat | hub | org/chat-data | abc123 | 10 | — |" in text
    assert "| fine-tuned | 1.25 | 3.49 | 100 |" in text and "| base | 2.5 | 12.2 | 100 |" in text
    assert "| qa | acc | 0.75 | 0.25 |" in text
    assert hashlib.sha256((run_dir / "plan.lock").read_bytes()).hexdigest() in text
    assert "![loss curve](loss.png)" in text and (dest / "loss.png").read_bytes()[:4] == b"\x89PNG"
