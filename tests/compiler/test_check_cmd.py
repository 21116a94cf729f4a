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
from project_factory import TINY_MODEL_CONFIG

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
    (model / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG), encoding="utf-8")
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


HUB_CONFIG = """\
loft: 1
name: hub
model:
  base: {repo}
data:
  datasets:
    - path: data/chat.jsonl
template: llama3
target:
  gpu: cpu
training:
  precision: fp32
  optimizer: adamw_torch
"""


def hub_project(root: Path, repo: str) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    cfg = root / "cfg.yaml"
    cfg.write_text(HUB_CONFIG.format(repo=repo), encoding="utf-8")
    return cfg


def run_check(cfg: Path, hub_cache: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`loftc check` in a fresh process whose Hugging Face cache is `hub_cache` (empty unless a test fills it)."""
    import os
    import time

    full = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HOME=str(hub_cache.parent / "hf-home"), **env)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "loft.compiler", "check", str(cfg), *args], env=full,
                          capture_output=True, text=True, timeout=300)
    return proc, time.monotonic() - t0


def test_uncached_hub_tokenizer_offline_is_a_note(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 and a tokenizer that is certainly not cached (an empty cache, a made-up repo id): the
    preview is skipped with one note and the exit code stays 0; `--require-preview` turns it into a problem."""
    cfg = hub_project(tmp_path / "p", "loft-tests/never-cached-tokenizer-0")
    cache = tmp_path / "hub-cache"
    proc, secs = run_check(cfg, cache, HF_HUB_OFFLINE="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "preview skipped" in line]
    assert len(notes) == 1 and notes[0].startswith("note:") and "HF_HUB_OFFLINE=1" in notes[0], proc.stderr
    assert "loft-tests/never-cached-tokenizer-0" in notes[0]
    assert "(skipped:" in proc.stdout and "Traceback" not in proc.stderr
    assert "Retrying" not in proc.stderr and secs < 60
    proc, _ = run_check(cfg, cache, "--require-preview", HF_HUB_OFFLINE="1")
    assert proc.returncode == 1
    assert any(line.startswith("error: preview: tokenization preview skipped") for line in proc.stderr.splitlines())
    assert "1 problem(s)" in proc.stdout


def test_unreachable_hub_is_one_short_try(tmp_path: Path) -> None:
    """Online mode, but the hub endpoint refuses connections: one request, no retries, a note, exit 0."""
    cfg = hub_project(tmp_path / "p", "loft-tests/never-cached-tokenizer-1")
    proc, secs = run_check(cfg, tmp_path / "hub-cache", HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
                           HF_ENDPOINT="http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    note = [line for line in proc.stderr.splitlines() if "preview skipped" in line]
    assert note and "http://127.0.0.1:9 is unreachable" in note[0] and "one try" in note[0], proc.stderr
    assert "Retrying" not in proc.stderr and secs < 60


@pytest.mark.slow
def test_cached_hub_tokenizer_is_previewed_without_a_request(tmp_path: Path, tokenizer_files: Path) -> None:
    """A hub tokenizer in the local cache is used as it is, even online with an unreachable hub (no request,
    so no retries): the preview shows the trained tokens."""
    repo = "loft-tests/cached-tokenizer"
    cache = tmp_path / "hub-cache"
    sha = "0" * 40
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / sha
    snap.mkdir(parents=True)
    for f in tokenizer_files.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (snap / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG), encoding="utf-8")  # as a hub repo has it
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(sha)
    cfg = hub_project(tmp_path / "p", repo)
    proc, _ = run_check(cfg, cache, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "preview skipped" not in proc.stderr and "Retrying" not in proc.stderr
    assert "[[hello 0<|eot_id|>]]" in proc.stdout


@pytest.mark.slow
def test_uncached_hub_dataset_offline_is_a_note(tmp_path: Path, tokenizer_files: Path) -> None:
    """The same for a hub dataset: not cached and HF_HUB_OFFLINE=1 skips its preview with a note, exit 0."""
    cfg = project(tmp_path / "p", tokenizer_files)
    cfg.write_text(cfg.read_text().replace("data/chat.jsonl", "loft-tests/never-cached-dataset"), encoding="utf-8")
    proc, _ = run_check(cfg, tmp_path / "hub-cache", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "ds"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "preview skipped" in line]
    assert len(notes) == 1 and "dataset loft-tests/never-cached-dataset" in notes[0], proc.stderr
    proc, _ = run_check(cfg, tmp_path / "hub-cache", "--require-preview", HF_HUB_OFFLINE="1",
                        HF_DATASETS_CACHE=str(tmp_path / "ds"))
    assert proc.returncode == 1 and "preview: tokenization preview skipped: dataset" in proc.stderr


def test_preview_reads_only_the_dataset_data_files(tmp_path: Path, tokenizer_files: Path) -> None:
    """`data_files` narrows what the preview reads, as it narrows what prepare reads."""
    cfg = project(tmp_path, tokenizer_files)
    shards = tmp_path / "data" / "shards"
    shards.mkdir()
    (shards / "a.jsonl").write_text('{"text": "not a chat"}\n', encoding="utf-8")
    (shards / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    text = cfg.read_text(encoding="utf-8").replace("    - path: data/chat.jsonl\n",
                                                   "    - path: data/shards\n      data_files: [b.jsonl]\n")
    cfg.write_text(text, encoding="utf-8")
    found = check(cfg)
    assert found.errors == []  # a.jsonl (no messages) was not read
    assert "[[hello 0<|eot_id|>]]" in dict(found.sections)["tokenization preview"]
