"""Loss mask: generation spans end on the end-of-turn token, train_on_eos policies, incomplete samples,
and the prefix-rendering fallback agreeing with the tagged path."""

from __future__ import annotations

import pytest
from loft.runtime.prepare.formats import DatasetSpec, Example
from loft.runtime.prepare.mask import IGNORE, labels_for, runs_of, turns_from_runs
from loft.runtime.prepare.template import Encoder

from tests.runtime.bundle_factory import LLAMA3_TAGGED, LLAMA3_UNTAGGED, tiny_tokenizer

EOT = 9
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is AI?"},
    {"role": "assistant", "content": "A branch of science."},
    {"role": "user", "content": "And ML?"},
    {"role": "assistant", "content": "Learning from data."},
]
# Content rendered as-is (no trim), generation closed before the end-of-turn token, and a newline after it:
# the whitespace-ending spans that used to make the mask run to the end.
UNTRIMMED = (
    "{{- bos_token }}{%- for m in messages %}"
    "{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}"
    "{%- else %}{{ m['content'] }}{%- endif %}<|eot_id|>\\n{%- endfor %}"
)


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer()))


def encode(tok, template, messages, mask="generation", complete=True, eot="<|eot_id|>", **spec):
    enc = Encoder(tok, template, mask, eot, DatasetSpec(name="t", **spec))
    return enc, enc.encode([Example(messages=messages, complete=complete)])[0]


def trained_runs(labels):
    return runs_of([lab != IGNORE for lab in labels])


def test_run_spilling_to_the_end_is_clipped_at_its_end_of_turn():
    # the bug being guarded: a span ending on whitespace mapped to "until the end of the sequence"
    ids = [1, 5, 5, EOT, 7, 7, 5, 5, EOT, 7]
    mask = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    turns = turns_from_runs(ids, runs_of(mask), frozenset({EOT}))
    assert turns == [(1, 3, 3)]
    labels = labels_for(ids, turns, frozenset({EOT}), "turn")
    assert labels == [IGNORE, 5, 5, EOT] + [IGNORE] * 6


def test_end_of_turn_outside_the_tag_is_attached_and_policies():
    ids = [1, 7, EOT, 5, 5, EOT, 7, EOT, 5, EOT]
    runs = [(3, 5), (8, 9)]  # content only; the end-of-turn tokens follow the tagged spans
    turns = turns_from_runs(ids, runs, frozenset({EOT}))
    assert turns == [(3, 5, 5), (8, 9, 9)]
    assert turns_from_runs([1, 5, 6, EOT], [(1, 2)], frozenset({EOT})) == [(1, 2, None)]  # not adjacent
    lab = {p: labels_for(ids, turns, frozenset({EOT}), p) for p in ("turn", "last", "all", "none")}
    assert [i for i, v in enumerate(lab["turn"]) if v != IGNORE] == [3, 4, 5, 8, 9]
    assert [i for i, v in enumerate(lab["last"]) if v != IGNORE] == [3, 4, 8, 9]
    assert [i for i, v in enumerate(lab["none"]) if v != IGNORE] == [3, 4, 8]
    assert [i for i, v in enumerate(lab["all"]) if v != IGNORE] == [2, 3, 4, 5, 7, 8, 9]


def test_incomplete_sample_gets_no_loss_on_its_last_turn_unless_overridden():
    ids = [1, 5, EOT, 7, EOT, 5, 5, EOT]
    turns = [(1, 2, 2), (5, 7, 7)]
    e = frozenset({EOT})
    assert labels_for(ids, turns, e, "turn", complete=False) == [IGNORE, 5, EOT] + [IGNORE] * 5
    over = labels_for(ids, turns, e, "turn", complete=False, train_on_incomplete=True)
    assert over == [IGNORE, 5, EOT, IGNORE, IGNORE, 5, 5, IGNORE]  # content trained, never the eot it lacked


@pytest.mark.parametrize("template", [LLAMA3_TAGGED, UNTRIMMED])
def test_each_trained_span_ends_on_the_end_of_turn_token(tok, template):
    chat = [dict(m) for m in CHAT]
    chat[2]["content"] = "A branch of science. \n "  # whitespace at the end of a generation span
    chat[4]["content"] = "Learning from data.\n\n"
    _, r = encode(tok, template, chat)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    runs = trained_runs(r.labels)
    assert len(runs) == 2
    for _start, end in runs:
        assert r.input_ids[end - 1] == eot  # the last trained token of each turn is the end-of-turn token
    assert all(v == IGNORE for v in r.labels[runs[-1][1]:])  # nothing after the last turn is trained
    trained = tok.decode([t for t, v in zip(r.input_ids, r.labels, strict=True) if v != IGNORE])
    assert "Learning from data." in trained and "What is AI" not in trained and "Be brief" not in trained


def test_fast_path_matches_apply_chat_template(tok):
    enc, r = encode(tok, LLAMA3_TAGGED, CHAT)
    assert enc.fast
    ref = tok.apply_chat_template(CHAT, chat_template=LLAMA3_TAGGED, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    assert r.input_ids == list(ref["input_ids"])
    ref_runs = runs_of(ref["assistant_masks"])
    assert [(s, e) for s, e in trained_runs(r.labels)] == ref_runs


def test_prefix_fallback_gives_the_same_labels_as_generation_tags(tok):
    _, tagged = encode(tok, LLAMA3_TAGGED, CHAT, mask="generation")
    enc, prefix = encode(tok, LLAMA3_UNTAGGED, CHAT, mask="prefix")
    assert enc.mask_mode == "prefix"
    assert prefix.input_ids == tagged.input_ids
    assert prefix.labels == tagged.labels


def test_roles_to_train_beyond_assistant_uses_prefix_rendering(tok):
    enc, r = encode(tok, LLAMA3_TAGGED, CHAT, roles_to_train=("user", "assistant"))
    assert enc.mask_mode == "prefix"
    trained = tok.decode([t for t, v in zip(r.input_ids, r.labels, strict=True) if v != IGNORE])
    assert "What is AI?" in trained and "A branch of science." in trained and "Be brief" not in trained


def test_template_error_is_a_counted_bad_sample(tok):
    strict = "{%- for m in messages %}{%- if m['role'] == 'system' %}{{ raise_exception('no system') }}{%- endif %}" \
             "{% generation %}{{ m['content'] }}<|eot_id|>{% endgeneration %}{%- endfor %}"
    enc = Encoder(tok, strict, "generation", "<|eot_id|>", DatasetSpec(name="t"))
    good = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = enc.encode([Example(messages=CHAT), Example(messages=good)])
    assert out[0].reason == "template_error"
    assert out[1].input_ids and any(v != IGNORE for v in out[1].labels)


LIBRARY = [("llama3", "llama3.2"), ("chatml", "qwen2.5"), ("gemma", "gemma3"), ("mistral", "mistral-v3"),
           ("phi3", "phi3.5"), ("zephyr", "zephyr")]


@pytest.mark.parametrize("family,name", LIBRARY)
def test_library_templates_mask_ends_on_their_end_of_turn(family, name):
    import json
    from importlib.resources import files

    from transformers import AutoTokenizer

    lib = files("loft.chat_templates")
    if not lib.joinpath("index.json").is_file():
        pytest.skip("chat template library not present")
    meta = json.loads(lib.joinpath("index.json").read_text())["families"].get(name)
    if meta is None:
        pytest.skip(f"{name} not in the template library")
    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer(family)))
    chat = [dict(m) for m in CHAT]
    chat[2]["content"] = "A branch of science. "  # whitespace at a span's end
    enc, r = encode(tok, lib.joinpath(meta["file"]).read_text(), chat, eot=meta["end_of_turn"])
    assert enc.fast  # the fast path agreed with apply_chat_template
    eot = tok.convert_tokens_to_ids(meta["end_of_turn"])
    runs = trained_runs(r.labels)
    assert len(runs) == 2 and all(r.input_ids[end - 1] == eot for _, end in runs)
    trained = tok.decode([t for t, v in zip(r.input_ids, r.labels, strict=True) if v != IGNORE])
    assert "A branch of science." in trained and "Learning from data." in trained
    assert "What is AI" not in trained and "Be brief" not in trained


def test_template_date_is_pinned_not_today():
    from importlib.resources import files

    path = files("loft.chat_templates").joinpath("llama3.2.jinja")
    if not path.is_file():
        pytest.skip("chat template library not present")
    from loft.runtime.prepare.template import DEFAULT_DATE
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer()))
    enc = Encoder(tok, path.read_text(), "generation", "<|eot_id|>", DatasetSpec(name="t"), keep_text=True)
    [r] = enc.encode([Example(messages=CHAT[1:3])])
    assert f"Today Date: {DEFAULT_DATE}" in r.text  # reproducible, cacheable data whatever the calendar says
    pinned = Encoder(tok, path.read_text(), "generation", "<|eot_id|>", DatasetSpec(name="t"), keep_text=True,
                     template_vars={"date_string": "01 Jan 2030"})
    assert "Today Date: 01 Jan 2030" in pinned.encode([Example(messages=CHAT[1:3])])[0].text
