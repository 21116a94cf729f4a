"""`loftc check`: every problem listed with exit 1, a tokenized preview with the loss mask, the estimate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from loft.compiler.cli import main
from loft.compiler.commands.check import check

TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "vocab_size": 512, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}
CONFIG = """\
loft: 1
name: t
model:
  base: ./models/tiny
data:
  datasets:
    - path: data/chat.jsonl
template: {template}
target:
  gpu: cpu
training:
  precision: fp32
  optimizer: adamw_torch
"""
ROWS = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
        for i in range(6)]


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama3-family tokenizer (no weights: check never loads them)."""
    from examples.tiny import build_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tiny"
    build_tokenizer(out, family="llama3", vocab_size=300, texts=["hi hello there", "hello 1 2 3 4 5"] * 3)
    return out


def project(root: Path, tokenizer: Path, template: str = "auto", rows: list[dict] | None = None,
            extra: str = "") -> Path:
    model = root / "models" / "tiny"
    model.mkdir(parents=True)  # (root may not exist yet)
    for f in tokenizer.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    (root / "data").mkdir()
    (root / "data" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows or ROWS)),
                                              encoding="utf-8")
    cfg = root / "cfg.yaml"
    cfg.write_text(CONFIG.format(template=template) + textwrap.dedent(extra), encoding="utf-8")
    return cfg


def test_ok_project_previews_the_mask(tmp_path: Path, tokenizer_files: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cfg = project(tmp_path, tokenizer_files)
    found = check(cfg)
    assert found.errors == []
    sections = dict(found.sections)
    assert "llama3 (library)" in sections["template"] and "why: model_type 'llama'" in sections["template"]
    assert any("guessed 'llama3'" in w for w in found.warnings)  # the tiny model ships no chat template
    preview = sections["tokenization preview"]
    assert "chat: row 0" in preview
    tokens = preview.split("trained tokens in [[ ]])")[1]
    assert "[[hello 0<|eot_id|>]]" in tokens  # the assistant text and its end-of-turn token, trained
    head = tokens.split("[[hello 0")[0]
    assert "hi 0" in head and "[[" not in head  # nothing of the user turn or the headers is trained
    assert sections["estimate"] and "VRAM" in sections["estimate"]
    assert main(["check", str(cfg)]) == 0
    assert "ok" in capsys.readouterr().out


def test_every_problem_is_listed(tmp_path: Path, tokenizer_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = project(tmp_path / "a", tokenizer_files, extra="trainig:\n  epochs: 2\n")
    assert main(["check", str(cfg)]) == 1
    assert "trainig" in capsys.readouterr().err  # a schema error, with its line
    # a missing data file stops the compiler before the template is chosen; check still reports both
    cfg = project(tmp_path / "b", tokenizer_files, template="chatmll")
    (tmp_path / "b" / "data" / "chat.jsonl").unlink()
    found = check(cfg)
    assert any("chat.jsonl" in e and "not found" in e for e in found.errors)
    assert any("chatmll" in e and "did you mean 'chatml'" in e for e in found.errors)
    assert main(["check", str(cfg)]) == 1
    assert "2 problem(s)" in capsys.readouterr().out


def test_bad_rows_and_wrong_end_of_turn(tmp_path: Path, tokenizer_files: Path) -> None:
    rows = [{"text": "no messages here"}, *ROWS]
    cfg = project(tmp_path, tokenizer_files, template="chatml", rows=rows)
    found = check(cfg)
    assert any("row 0" in e and "missing_field" in e for e in found.errors)
    # chatml's <|im_end|> is no token of this llama3-family tokenizer: masks could not end on it
    assert any("<|im_end|>" in e and "single token" in e for e in found.errors)


def test_untagged_template_file_is_a_problem(tmp_path: Path, tokenizer_files: Path) -> None:
    cfg = project(tmp_path, tokenizer_files, template="plain.jinja")
    (tmp_path / "plain.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    found = check(cfg)
    assert any("generation" in e for e in found.errors)
    assert main(["check", str(cfg), "--format", "json"]) == 1


def test_no_preview_stays_torch_free(tmp_path: Path, tokenizer_files: Path) -> None:
    cfg = project(tmp_path, tokenizer_files)
    code = ("import sys; from loft.compiler.cli import main; rc = main(['check', sys.argv[1], '--no-preview']); "
            "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
            "print(rc, bad); sys.exit(1 if rc or bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
