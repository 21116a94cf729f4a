"""Template resolution as Axolotl does it: the model's own template (local files, or the hub's fetched at the
pinned revision); an Axolotl config never gets a guessed template; every fallback is a visible warning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from loft.compiler import templates
from loft.compiler.errors import ConfigError
from loft.compiler.pipeline import plan

OWN = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
       "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
AXOLOTL = """\
base_model: someorg/unknown-model-7b
revision_of_model: 0123456789abcdef0123456789abcdef01234567
datasets:
  - path: data/chat.jsonl
    type: chat_template
sequence_len: 512
micro_batch_size: 1
num_epochs: 1
learning_rate: 0.0001
"""


def project(tmp_path: Path, text: str = AXOLOTL) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, '
                                                  '{"role": "assistant", "content": "hello"}]}\n')
    cfg = tmp_path / "axo.yml"
    cfg.write_text(text)
    return cfg


def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str] | None) -> list[Any]:
    """hf_hub_download stand-in: serves `files` (None = offline with an empty cache); records the calls."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    calls: list[Any] = []

    def download(repo_id: str, filename: str, revision: str | None = None, **_: Any) -> str:
        calls.append((repo_id, filename, revision))
        if files is None:
            raise LocalEntryNotFoundError("offline")
        if filename not in files:
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        p = tmp_path / "hub" / filename
        p.parent.mkdir(exist_ok=True)
        p.write_text(files[filename])
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return calls


def test_hub_model_template_is_fetched_at_the_pinned_revision(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_hub(monkeypatch, tmp_path, {"tokenizer_config.json": json.dumps({"chat_template": OWN})})
    r = plan(project(tmp_path))
    assert ("someorg/unknown-model-7b", "tokenizer_config.json", "0123456789abcdef0123456789abcdef01234567") in calls
    assert r.plan["template"]["name"] == "chatml"  # the model's own text renders like the library's chatml
    assert not [w for w in r.warnings if w.code == "template-fallback"]


def test_offline_without_cache_an_axolotl_config_is_refused_with_how_to_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, tmp_path, None)
    with pytest.raises(ConfigError) as e:
        plan(project(tmp_path))
    d = e.value.diagnostics[0]
    assert d.code == "template-unavailable" and "hf download someorg/unknown-model-7b" in d.hint
    assert d.line > 0  # pointed at the config


def test_a_model_without_any_template_is_refused_for_axolotl_never_chatml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, tmp_path, {"tokenizer_config.json": "{}"})
    with pytest.raises(ConfigError) as e:
        plan(project(tmp_path))
    assert e.value.diagnostics[0].code == "template-missing"


def test_a_loft_config_falls_back_with_a_warning_at_template(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, tmp_path, None)
    cfg = project(tmp_path, "loft: 1\nmodel:\n  base: someorg/unknown-model-7b\n"
                            "  revision: 0123456789abcdef0123456789abcdef01234567\n"
                            "data:\n  datasets:\n    - path: data/chat.jsonl\n")
    r = plan(cfg)
    assert r.plan["template"]["name"] == "chatml"
    assert [w.code for w in r.warnings if w.code == "template-fallback"] == ["template-fallback"]
    assert any(w["code"] == "template-fallback" for w in r.plan["warnings"])  # plan.md renders these


def test_fetch_reads_chat_template_jinja_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_hub(monkeypatch, tmp_path, {"chat_template.jinja": OWN, "tokenizer_config.json": "{}"})
    assert templates.fetch_model_template("a/b", "main") == OWN
