"""`loft analyze`: duplicates (exact, near), languages, shape, end-of-turn and length findings, and the
warnings they turn into; on a hand-made bundle with a tiny tokenizer."""

from __future__ import annotations

import json

import pytest
from loft.runtime.analyze import checks
from loft.runtime.analyze import run as analyze
from loft.runtime.plan import load

from tests.runtime.bundle_factory import chat_rows, make_bundle, tiny_tokenizer, write_jsonl

pytest.importorskip("datasketch", reason="loft analyze needs the observe extra (pip install 'loft[observe]')")
pytest.importorskip("py3langid", reason="loft analyze needs the observe extra (pip install 'loft[observe]')")

FR = "Le chat est assis sur le tapis et regarde les oiseaux qui chantent dans le jardin tous les matins."
DE = "Der Hund schläft im Garten, weil die Sonne heute sehr warm scheint und alle Vögel singen."


def chat(user: str, assistant: str, system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system is not None else [])
    return {"messages": [*msgs, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def test_checks_on_plain_inputs():
    n, groups = checks.exact_duplicates(["a", "b", "a", "a", "c"])
    assert n == 2 and groups == [[0, 2, 3]]
    base = " ".join(f"word{i}" for i in range(60))
    near, pairs = checks.near_duplicates([base, base.replace("word30", "other"), "completely different text here"])
    assert near == 1 and pairs == [(0, 1)]
    langs = checks.languages(["This is an English sentence about the weather today.", FR, DE, "", "hi 0"])
    assert langs == {"en": 1, "fr": 1, "de": 1, "none": 1, "und": 1}
    shape = checks.shape([chat("hi there friend", "")["messages"], chat("q", "a long enough answer", "sys")["messages"]])
    assert shape["turns"]["max"] == 3 and shape["messages_per_role"] == {"assistant": 2, "system": 1, "user": 2}
    assert (shape["empty_messages"], shape["very_short_messages"]) == (1, 2)  # "" ; "q", "sys" and shape["last_role"] == {"assistant": 2}
    eot = frozenset({9})
    # one sample's trained span ends on eot, the other's does not
    assert checks.without_end_of_turn([[-100, 5, 9], [-100, 5, 6]], [[1, 5, 9], [1, 5, 6]], eot) == 1
    assert checks.without_end_of_turn([[-100, 5, 9, -100, 7]], [[1, 5, 9, 3, 7]], eot) == 1


def test_analyze_bundle_reports_and_warns(tmp_path):
    rows = chat_rows(40)
    rows += [rows[0]] * 15  # 15 exact duplicates of row 0
    rows += [chat(FR, FR), chat(DE, DE), chat("", "ok")]  # two other languages, an empty message
    rows += [{"messages": []}]  # a bad row
    write_jsonl(tmp_path / "run" / "data" / "chat.jsonl", rows)
    make_bundle(tmp_path / "run", tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}],
                sequence={"max_length": 48})
    result = analyze(load(tmp_path / "run"))
    d = result["datasets"]["chat"]
    assert d["rows"] == 59 and d["samples"] == 58 and d["bad"] == {"empty_conversation": 1}
    assert d["exact_duplicates"] == 15 and d["exact_duplicate_examples"][0][:2] == [0, 40]
    assert d["languages"]["fr"] == 1 and d["languages"]["de"] == 1 and d["languages"]["en"] >= 40
    assert d["shape"]["empty_messages"] == 1 and d["shape"]["conversations"] == 58
    assert d["assistant_without_end_of_turn"] == 0  # the tagged template ends every reply with <|eot_id|>
    t = d["tokens"]
    assert t["count"] == 58 and t["max_length"] == 48 and 0 < t["over_max_length"] < 58
    text = " | ".join(result["warnings"])
    assert "26% of samples are exact duplicates (15 of 58)" in text
    assert "of messages are empty" in text and "bad samples" in text and "longer than max_length 48" in text
    out = tmp_path / "run" / "out" / "analysis"
    assert json.loads((out / "analysis.json").read_text())["datasets"]["chat"]["exact_duplicates"] == 15
    md = (out / "analysis.md").read_text()
    assert "26% of samples are exact duplicates" in md and "![token lengths](lengths.png)" in md
    assert (out / "lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_cli_errors_are_one_line(tmp_path, capsys):
    from loft.runtime.__main__ import main

    assert main(["analyze", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("loft: 1\nmodel: {base: 3}\n")
    assert main(["analyze", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "Traceback" not in err
