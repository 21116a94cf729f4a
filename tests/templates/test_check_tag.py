"""check_template (tags present, spans well formed, parity) and tag_template (auto-tagging with proof)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.compiler.cli import main
from loft.compiler.errors import ConfigError
from loft.compiler.template_env import render, render_spans, strip_generation_tags
from loft.compiler.template_probes import parity_failures
from loft.compiler.templates import check_template, families, library_text, tag_template

REFS = "reference/chat_templates"


def ref(shared: Path, family: str) -> str:
    return (shared / REFS / f"{family}.jinja").read_text(encoding="utf-8")


def specials(shared: Path, family: str) -> dict[str, str]:
    meta = json.loads((shared / REFS / "families.json").read_text(encoding="utf-8"))[family]
    return {"bos_token": meta["bos_token"] or "", "eos_token": meta["eos_token"] or ""}


# ------------------------------------------------------------------------------------------------ check

def test_library_template_checks_clean_with_parity(shared_dir: Path) -> None:
    r = check_template(library_text("qwen2.5"), ref(shared_dir, "qwen2.5"))
    assert r.ok and r.tagged and r.well_formed and r.parity is True and r.end_of_turn == "<|im_end|>"
    assert r.family == "qwen2.5"


def test_parity_failure_is_reported(shared_dir: Path) -> None:
    r = check_template(library_text("qwen2.5"), ref(shared_dir, "smollm2"))
    assert r.parity is False and not r.ok
    assert r.parity_failures and "reference" in r.parity_failures[0]


def test_untagged_is_not_ok(shared_dir: Path) -> None:
    r = check_template(ref(shared_dir, "zephyr"))
    assert not r.tagged and not r.ok and r.end_of_turn == "</s>"


def test_structure_problems() -> None:
    base = library_text("chatml")
    nested = base.replace("{% generation %}", "{% generation %}{% generation %}").replace(
        "{% endgeneration %}", "{% endgeneration %}{% endgeneration %}")
    r = check_template(nested)
    assert not r.well_formed and any("nested" in p for p in r.problems)
    with pytest.raises(ConfigError):  # an unclosed block is a Jinja syntax error, reported with its line
        check_template(base.replace("{% endgeneration %}", ""))


def test_span_problems_header_inside_and_missing_eot(shared_dir: Path) -> None:
    vendor_smollm3 = ref(shared_dir, "smollm3")  # the vendor's tags wrap the role header and the newline
    r = check_template(vendor_smollm3)
    assert r.tagged and not r.well_formed
    assert any("role header" in p for p in r.problems)
    assert any("does not end with the end-of-turn token" in p for p in r.problems)
    no_eot = library_text("chatml").replace(
        "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{ message['content'] }}{% endgeneration %}{{ '<|im_end|>' }}")
    r = check_template(no_eot)
    assert any("end-of-turn" in p for p in r.problems)
    user_too = "{% for m in messages %}{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{% endfor %}"
    r = check_template(user_too, end_of_turn="<|im_end|>")
    assert any("user message" in p and "inside" in p for p in r.problems)


# ------------------------------------------------------------------------------------------------- tag

TAGGABLE = ["qwen2.5", "llama3.1", "llama3.2", "zephyr", "gemma2", "phi3.5", "smollm2", "mistral-v3",
            "mistral-nemo", "command-r", "deepseek-r1"]


@pytest.mark.parametrize("family", TAGGABLE)
def test_tag_reference_templates(shared_dir: Path, family: str) -> None:
    vendor = ref(shared_dir, family)
    sp = specials(shared_dir, family)
    result = tag_template(vendor, specials={k: v for k, v in sp.items() if v} or None)
    assert result.ok, result.reason
    assert result.text is not None and result.end_of_turn == families()[family]["end_of_turn"]
    # parity, checked again here on conversations the tagger never saw
    convs = [
        [{"role": "user", "content": "Quelle heure est-il ?"}, {"role": "assistant", "content": "Midi. 🕛"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
         {"role": "assistant", "content": " spaced "}],
    ]
    assert parity_failures(result.text, vendor, convs, specials=sp) == []
    assert strip_generation_tags(result.text) != vendor or family == "never"
    assert render(strip_generation_tags(result.text), convs[1], False, **sp) == render(vendor, convs[1], False, **sp)
    # spans are exactly the assistant text (as the vendor prints it) + the end-of-turn token
    r = render_spans(result.text, convs[1], False, **sp)
    eot = result.end_of_turn
    assert [s.endswith(eot) for s in r.span_texts()] == [True, True]
    assert r.span_texts()[0].startswith("b")
    assert check_template(result.text, vendor, specials=sp).ok


def test_tag_generic_chatml() -> None:
    vendor = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
              "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
              "{% endif %}")
    result = tag_template(vendor)
    assert result.ok and result.text is not None
    r = render_spans(result.text, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert r.span_texts() == ["yo<|im_end|>"]


@pytest.mark.parametrize(("family", "why"), [
    ("qwen3", "end-of-turn token"), ("gemma3", "end-of-turn token"),
])
def test_tag_refuses_with_a_reason(shared_dir: Path, family: str, why: str) -> None:
    result = tag_template(ref(shared_dir, family))
    assert not result.ok and result.text is None and why in result.reason


def test_tag_refuses_already_tagged() -> None:
    result = tag_template(library_text("chatml"))
    assert not result.ok and "already" in result.reason


def test_tag_refuses_llama3_set_variable() -> None:
    """Meta-Llama-3's template builds header + content + eot into one variable: no split keeps the header out."""
    llama3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
              "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
              "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
              "{{ content }}{% endfor %}")
    result = tag_template(llama3)
    assert not result.ok and result.reason


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_list_show_check_tag(shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in families())
    assert main(["templates", "show", "qwen_25", "--untagged"]) == 0
    out = capsys.readouterr().out
    assert "generation" not in out.replace("add_generation_prompt", "") and "<|im_start|>" in out
    assert main(["templates", "show", "nope"]) == 1
    capsys.readouterr()
    vendor = shared_dir / REFS / "phi3.5.jinja"
    assert main(["templates", "check", str(vendor)]) == 1  # untagged
    assert "tagged:      no" in capsys.readouterr().out
    out_file = tmp_path / "phi-tagged.jinja"
    assert main(["templates", "tag", str(vendor), "-o", str(out_file)]) == 0
    assert main(["templates", "check", str(out_file), "--reference", str(vendor)]) == 0
    assert "identical on every probe" in capsys.readouterr().out
    assert main(["templates", "tag", str(shared_dir / REFS / "qwen3.jinja")]) == 1
    assert "cannot tag" in capsys.readouterr().err


def test_tag_joins_content_and_eos_printed_side_by_side() -> None:
    """`{{ m.content }}{{ eos_token }}`: two adjacent expressions, tagged as one block; system messages that
    share the branch stay outside through the added role condition."""
    alpaca = ("{% for m in messages %}{% if m.role == 'user' %}### Instruction:\n{{ m.content }}\n\n### Response:\n"
              "{% else %}{{ m.content }}{{ eos_token }}\n{% endif %}{% endfor %}")
    result = tag_template(alpaca)
    assert result.ok and result.text is not None, result.reason
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]
    r = render_spans(result.text, msgs, eos_token="</s>")
    assert r.text == render(alpaca, msgs, eos_token="</s>")
    assert r.span_texts() == ["a</s>"]
