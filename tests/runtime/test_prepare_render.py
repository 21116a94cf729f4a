"""The compiled-marks renderer (render.py) against transformers' tracked renderer, the fast encode path
against apply_chat_template(..., return_assistant_tokens_mask=True) over many real chats, the per-chat
fallback, the arrow conversion, and lengths.png."""

from __future__ import annotations

import struct
from importlib.resources import files

import numpy as np
import pytest
from loft.runtime.prepare.formats import DatasetSpec, Example
from loft.runtime.prepare.mask import runs_of
from loft.runtime.prepare.render import OPEN, SpanRenderer
from loft.runtime.prepare.template import Encoder

from tests.runtime.bundle_factory import LLAMA3_TAGGED, chat_rows, tiny_tokenizer

VARS = {"bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"}
EXTRA = [  # shapes the shipped data lacks: system turn, reasoning, trailing whitespace, non-ASCII
    [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "Été ?"},
     {"role": "assistant", "content": "Oui.\n\n", "reasoning_content": "The user asks in French."}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": " b "}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}],
]


def library_templates() -> list[str]:
    lib = files("loft.chat_templates")
    names = sorted(p.name for p in lib.iterdir() if p.name.endswith(".jinja"))
    return [n for n in names if "generation" in lib.joinpath(n).read_text()]


@pytest.mark.parametrize("name", library_templates())
def test_renderer_gives_transformers_text_and_spans(name):
    from transformers.utils.chat_template_utils import render_jinja_template

    template = files("loft.chat_templates").joinpath(name).read_text()
    chats = [r["messages"] for r in chat_rows(150)] + EXTRA
    renderer = SpanRenderer(template, VARS)
    compared = 0
    for chat in chats:
        try:
            texts, spans = render_jinja_template(conversations=[chat], chat_template=template,
                                                 return_assistant_tokens_mask=True, **VARS)
        except Exception as ref_error:  # e.g. a template without a system role: it must fail here too
            with pytest.raises(type(ref_error)):
                renderer.render(chat)
            continue
        got = renderer.render(chat)
        assert got is not None
        assert got[0] == texts[0]
        assert got[1] == [tuple(s) for s in spans[0]]
        compared += 1
    assert compared >= 150


def test_renderer_hands_back_chats_it_cannot_mark():
    renderer = SpanRenderer(LLAMA3_TAGGED, VARS)
    marked = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": f"a{OPEN}b"}]
    assert renderer.render(marked) is None  # data carrying the sentinel
    nested = "{% for m in messages %}{% generation %}{% generation %}{{ m['content'] }}{% endgeneration %}" \
             "{% endgeneration %}{% endfor %}"
    assert SpanRenderer(nested, VARS).render([{"role": "assistant", "content": "x"}]) is None
    captured = "{% set x %}{% generation %}{{ messages[0]['content'] }}{% endgeneration %}{% endset %}{{ x | trim }}"
    out = SpanRenderer(captured, VARS).render([{"role": "assistant", "content": "x"}])
    assert out is None or OPEN not in out[0]  # never a sentinel in the text


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer()))


def test_fast_path_equals_apply_chat_template_on_many_chats(tok):
    """Every chat, not just the first batch the runtime checks: ids and assistant mask runs."""
    chats = [r["messages"] for r in chat_rows(400)] + EXTRA
    chats.append([{"role": "user", "content": "q"}, {"role": "assistant", "content": f"x{OPEN}y"}])  # fallback
    enc = Encoder(tok, LLAMA3_TAGGED, "generation", "<|eot_id|>", DatasetSpec(name="t"))
    out = enc.encode([Example(messages=c) for c in chats])
    assert enc.fast
    for chat, r in zip(chats, out, strict=True):
        ref = tok.apply_chat_template(chat, chat_template=LLAMA3_TAGGED, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        assert r.input_ids == list(ref["input_ids"])
        mask = [int(v != -100) for v in r.labels]
        assert runs_of(mask) == runs_of(ref["assistant_masks"])  # the LLAMA3 tags end on <|eot_id|>


def test_stream_keeps_order_and_matches_batch_encode(tok):
    chats = [Example(messages=r["messages"]) for r in chat_rows(300)]
    enc = Encoder(tok, LLAMA3_TAGGED, "generation", "<|eot_id|>", DatasetSpec(name="t"))
    whole = enc.encode(chats)
    streamed = [r for _, rs in enc.encode_stream((i, chats[i:i + 37]) for i in range(0, 300, 37)) for r in rs]
    assert [r.input_ids for r in streamed] == [r.input_ids for r in whole]
    assert [r.labels for r in streamed] == [r.labels for r in whole]


def test_int32_lists_equal_pyarrow_conversion():
    import pyarrow as pa
    from loft.runtime.prepare.tokenize import int32_lists as _int32_lists

    lists = [[1, 2, 3], [], [7], list(range(100))]
    got = _int32_lists(lists, np.array([len(x) for x in lists]))
    assert got.equals(pa.array(lists, pa.list_(pa.int32())))


def test_lengths_png_is_a_valid_deterministic_image(tmp_path):
    import matplotlib.image
    from loft.runtime.prepare.lengths import plot

    lengths = np.random.default_rng(0).integers(5, 900, 3000)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot(lengths, 512, a)
    plot(lengths, 512, b)
    data = a.read_bytes()
    assert data == b.read_bytes()  # no timestamp in the metadata
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (700, 350)
    pixels = (matplotlib.image.imread(str(a))[:, :, :3] * 255).round().astype(int)
    colours = {tuple(int(c) for c in p) for p in pixels.reshape(-1, 3)}
    assert (76, 114, 176) in colours  # the bars
    assert (196, 78, 82) in colours  # the max_length line
