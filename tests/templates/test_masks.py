"""Token level: transformers' `return_assistant_tokens_mask` on loft's templates marks exactly the assistant's
tokens (its content and the end-of-turn token), nothing of role headers or other turns, and each masked run
ends on the end-of-turn token.

Tokenizers are tiny byte-level BPEs built by examples/tiny.py with each family's special tokens (families
tiny.py lacks get their tokens through `extra_specials`; bos/eos are passed to the template as transformers
allows). The expected mask is computed independently of the generation spans: from the rendered text, the
assistant's region runs from the end of its role header to the end of the end-of-turn token, and a token is
expected in the mask iff its offsets overlap that region.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from loft.compiler.templates import families, library_text

transformers = pytest.importorskip("transformers")

# family -> (tiny.py family, extra special tokens, template kwargs, the assistant's role header as rendered)
SETUP: dict[str, tuple[str, list[str], dict[str, Any], str]] = {
    "chatml": ("chatml", [], {}, "<|im_start|>assistant\n"),
    "qwen2.5": ("chatml", [], {}, "<|im_start|>assistant\n"),
    "qwen3": ("chatml", [], {}, "<|im_start|>assistant\n"),
    "smollm2": ("chatml", [], {}, "<|im_start|>assistant\n"),
    "smollm3": ("chatml", [], {}, "<|im_start|>assistant\n"),
    "llama3": ("llama3", [], {}, "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "llama3.1": ("llama3", [], {"date_string": "01 Feb 2025"}, "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "llama3.2": ("llama3", [], {"date_string": "01 Feb 2025"}, "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "gemma2": ("gemma", [], {}, "<start_of_turn>model\n"),
    "gemma3": ("gemma", [], {}, "<start_of_turn>model\n"),
    "mistral-v3": ("mistral", [], {}, "[/INST] "),
    "mistral-nemo": ("mistral", [], {}, "[/INST]"),
    "phi3.5": ("phi3", [], {}, "<|assistant|>\n"),
    "zephyr": ("zephyr", [], {}, "<|assistant|>\n"),
    "command-r": ("llama3", ["<BOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                             "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"],
                  {"bos_token": "<BOS_TOKEN>", "eos_token": "<|END_OF_TURN_TOKEN|>"}, "<|CHATBOT_TOKEN|>"),
    "deepseek-r1": ("llama3", ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"],
                    {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}, "<｜Assistant｜>"),
}
TEXTS = ["the answer is forty two", "hello there, how are you today?", "I am fine, thank you very much."] * 4

CONVERSATIONS = [
    [{"role": "user", "content": "how are you"}, {"role": "assistant", "content": "I am fine, thank you."}],
    [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hello there"},
     {"role": "assistant", "content": "hello! how are you"}, {"role": "user", "content": "fine"},
     {"role": "assistant", "content": "the answer is forty two."}],
    [{"role": "user", "content": "one"}, {"role": "assistant", "content": "uno"}, {"role": "user", "content": "two"},
     {"role": "assistant", "content": "dos"}, {"role": "user", "content": "three"},
     {"role": "assistant", "content": "tres, très bien 🙂"}],
]

_cache: dict[tuple[str, tuple[str, ...]], Any] = {}


def _tokenizer(tmp: Path, base: str, extra: list[str]) -> Any:
    from examples.tiny import build_tokenizer

    key = (base, tuple(extra))
    if key not in _cache:
        out = build_tokenizer(tmp / f"{base}-{len(_cache)}", family=base, vocab_size=320, extra_specials=extra,
                              texts=TEXTS)
        _cache[key] = transformers.AutoTokenizer.from_pretrained(str(out))
    return _cache[key]


def _assistant_regions(text: str, msgs: list[dict[str, str]], header: str, eot: str) -> list[tuple[int, int]]:
    """(start, end) character regions of each rendered assistant turn: after its header, through its eot."""
    regions, pos = [], 0
    for m in msgs:
        if m["role"] != "assistant":
            continue
        c = text.index(m["content"].strip(), pos)
        start = text.rindex(header, 0, c) + len(header)
        end = text.index(eot, c + len(m["content"].strip())) + len(eot)
        assert re.fullmatch(r"\s?", text[c + len(m["content"].strip()): end - len(eot)]), "eot not right after"
        regions.append((start, end))
        pos = end
    return regions


@pytest.mark.parametrize("family", sorted(SETUP))
def test_assistant_mask_is_content_plus_end_of_turn(tmp_path_factory: pytest.TempPathFactory, family: str) -> None:
    base, extra, kwargs, header = SETUP[family]
    tok = _tokenizer(tmp_path_factory.mktemp("tok"), base, extra)
    eot = families()[family]["end_of_turn"]
    eot_id = tok.convert_tokens_to_ids(eot)
    assert eot_id != tok.unk_token_id and eot in tok.get_vocab(), f"{eot} must be one token"
    checked = 0
    for msgs in CONVERSATIONS:
        if family == "gemma2" and msgs[0]["role"] == "system":
            continue  # gemma2 rejects system messages
        out = tok.apply_chat_template(msgs, chat_template=library_text(family), tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True, **kwargs)
        text = tok.apply_chat_template(msgs, chat_template=library_text(family), tokenize=False, **kwargs)
        ids, mask = out["input_ids"], out["assistant_masks"]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert enc["input_ids"] == ids
        offsets = enc["offset_mapping"]
        regions = _assistant_regions(text, msgs, header, eot)
        expected = [int(any(a < r1 and b > r0 for r0, r1 in regions) and b > a) for a, b in offsets]
        assert mask == expected, family
        # runs of 1s: one per assistant turn, each ending on the end-of-turn token
        runs = [(m.start(), m.end()) for m in re.finditer("1+", "".join(map(str, mask)))]
        assert len(runs) == len(regions)
        for s, e in runs:
            assert ids[e - 1] == eot_id
            masked = tok.decode(ids[s:e])
            for special in ("<|im_start|>", "<|start_header_id|>", "<start_of_turn>", "[INST]", "<|user|>",
                            "<|assistant|>", "<|CHATBOT_TOKEN|>", "<｜Assistant｜>", "<｜User｜>"):
                assert special not in masked, (family, masked)
            for m in msgs:
                if m["role"] != "assistant":
                    assert m["content"] not in masked or m["content"] in "".join(
                        a["content"] for a in msgs if a["role"] == "assistant"), (family, masked)
        # the token after each run (a newline or the next header) is not the assistant's
        for _, e in runs:
            if e < len(mask):
                assert mask[e] == 0
        checked += 1
    assert checked >= 2
