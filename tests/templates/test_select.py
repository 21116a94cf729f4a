"""select_template: `template: auto | <library name> | <path>` → the template a run uses, and its mask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.templates import library_text, select_template

CHATML_VENDOR = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                 "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                 "{% endif %}")
# Not a library family: Vicuna-style, untagged, but auto-taggable (one expression prints content + eos).
CUSTOM = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + '\n' }}"
          "{% elif m['role'] == 'assistant' %}{{ 'ASSISTANT: ' + m['content'] + eos_token + '\n' }}{% endif %}"
          "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# Not taggable: the assistant text and the end token come from different expressions inside a macro.
UNTAGGABLE = ("{% macro say(m) %}{{ m['content'] }}{% endmacro %}{% for m in messages %}{{ m['role'] + ': ' }}"
              "{{ say(m) }}{{ '<|end|>\n' }}{% endfor %}")


def choose(spec: str, tmp: Path, model: dict | None = None, model_dir: Path | None = None,
           fallback: bool = False):
    return select_template(spec, model=model or {}, model_dir=model_dir, config_dir=tmp, allow_fallback=fallback)


def model_dir_with(tmp: Path, template: object, name: str = "m", as_file: bool = False) -> Path:
    d = tmp / name
    d.mkdir()
    cfg = {"bos_token": "<s>", "eos_token": "</s>"}
    if as_file:
        (d / "chat_template.jinja").write_text(str(template), encoding="utf-8")
    else:
        cfg["chat_template"] = template  # type: ignore[assignment]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return d


@pytest.mark.parametrize(("spec", "family", "eot"), [
    ("qwen2.5", "qwen2.5", "<|im_end|>"), ("qwen_25", "qwen2.5", "<|im_end|>"), ("phi_35", "phi3.5", "<|end|>"),
    ("llama3", "llama3", "<|eot_id|>"), ("gemma", "gemma2", "<end_of_turn>"), ("chatml", "chatml", "<|im_end|>"),
    ("mistral_v3_tekken", "mistral-nemo", "</s>"), ("cohere", "command-r", "<|END_OF_TURN_TOKEN|>"),
])
def test_library_names_and_axolotl_aliases(tmp_path: Path, spec: str, family: str, eot: str) -> None:
    c = choose(spec, tmp_path)
    assert (c.name, c.source, c.end_of_turn, c.tagged, c.mask) == (family, "library", eot, True, "generation")
    assert c.text == library_text(family)


def test_unknown_name_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        choose("chatmll", tmp_path)
    d = e.value.diagnostics[0]
    assert d.key == "template" and "chatmll" in d.message and "'chatml'" in d.hint


def test_user_file_untagged_is_refused_unless_fallback(tmp_path: Path) -> None:
    (tmp_path / "t.jinja").write_text(CHATML_VENDOR, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        choose("t.jinja", tmp_path)
    d = e.value.diagnostics[0]
    assert d.key == "template" and "generation" in d.message and "template_mask_fallback: true" in d.hint
    c = choose("t.jinja", tmp_path, fallback=True)
    assert (c.source, c.tagged, c.mask, c.text, c.end_of_turn) == ("file", False, "prefix", CHATML_VENDOR,
                                                                    "<|im_end|>")


def test_user_file_tagged(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.jinja").write_text(library_text("zephyr"), encoding="utf-8")
    c = choose("sub/mine.jinja", tmp_path)
    assert (c.name, c.source, c.tagged, c.mask, c.end_of_turn) == ("mine.jinja", "file", True, "generation", "</s>")


def test_user_file_with_nested_tags_is_refused(tmp_path: Path) -> None:
    bad = library_text("chatml").replace("{% generation %}", "{% generation %}{% generation %}").replace(
        "{% endgeneration %}", "{% endgeneration %}{% endgeneration %}")
    (tmp_path / "bad.jinja").write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        choose("bad.jinja", tmp_path)
    assert "nested" in e.value.render()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        choose("nope/x.jinja", tmp_path)
    assert e.value.diagnostics[0].code == "template-missing"


@pytest.mark.parametrize("family", ["qwen2.5", "qwen3", "llama3.1", "llama3.2", "gemma2", "gemma3", "mistral-v3",
                                    "mistral-nemo", "phi3.5", "zephyr", "command-r", "deepseek-r1", "smollm2",
                                    "smollm3"])
def test_auto_recognises_vendor_templates(shared_dir: Path, tmp_path: Path, family: str) -> None:
    vendor = (shared_dir / "reference" / "chat_templates" / f"{family}.jinja").read_text(encoding="utf-8")
    c = choose("auto", tmp_path, model_dir=model_dir_with(tmp_path, vendor))
    assert (c.name, c.source, c.mask) == (family, "library", "generation")


def test_auto_reads_chat_template_jinja_and_named_lists(tmp_path: Path) -> None:
    c = choose("auto", tmp_path, model_dir=model_dir_with(tmp_path, CHATML_VENDOR, "a", as_file=True))
    assert c.name == "chatml"
    named = [{"name": "tool_use", "template": "{{ 'x' }}"}, {"name": "default", "template": CHATML_VENDOR}]
    c = choose("auto", tmp_path, model_dir=model_dir_with(tmp_path, named, "b"))
    assert c.name == "chatml"


def test_auto_tags_an_unknown_model_template(tmp_path: Path) -> None:
    c = choose("auto", tmp_path, model_dir=model_dir_with(tmp_path, CUSTOM))
    assert (c.source, c.tagged, c.mask, c.end_of_turn) == ("model", True, "generation", "</s>")
    assert "{% generation %}" in c.text and "auto-tagged" in c.reason


def test_auto_untaggable_model_template_needs_the_fallback(tmp_path: Path) -> None:
    d = model_dir_with(tmp_path, UNTAGGABLE)
    with pytest.raises(ConfigError) as e:
        choose("auto", tmp_path, model_dir=d)
    assert "template_mask_fallback" in e.value.diagnostics[0].hint
    c = choose("auto", tmp_path, model_dir=d, fallback=True)
    assert (c.source, c.tagged, c.mask) == ("model", False, "prefix")


def test_auto_without_a_local_template(tmp_path: Path) -> None:
    assert choose("auto", tmp_path, {"chat_template_family": "qwen3"}).name == "qwen3"
    assert choose("auto", tmp_path, {"chat_template_family": "qwen_25"}).name == "qwen2.5"
    assert choose("auto", tmp_path, {"id": "meta-llama/Llama-3.2-1B-Instruct"}).name == "llama3.2"
    assert choose("auto", tmp_path, {"id": "google/gemma-3-1b-it"}).name == "gemma3"
    c = choose("auto", tmp_path, {"model_type": "llama", "id": "someone/base-model"})
    assert c.name == "llama3" and c.warnings and "model_type" in c.warnings[0]
    c = choose("auto", tmp_path, {"model_type": "gpt2"})
    assert c.name == "chatml" and "chatml" in c.warnings[0]


@pytest.mark.slow  # builds the tiny model (shared fixture)
def test_auto_with_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """examples/tiny.py's model ships no chat template: llama model_type → the llama3 family, whose
    end-of-turn token is one of the tiny tokenizer's special tokens."""
    c = choose("auto", tmp_path, {"model_type": "llama"}, model_dir=tiny_model_dir)
    assert c.name == "llama3"
    cfg = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert c.end_of_turn in json.dumps(cfg)


def test_readme_table_lists_every_family() -> None:
    from loft.compiler.templates import families, library_dir

    readme = (library_dir() / "README.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1].strip().strip("`") for line in readme.splitlines() if line.startswith("| `")]
    assert rows == sorted(families())
    for name, fam in families().items():
        assert (library_dir() / fam["file"]).is_file(), name
