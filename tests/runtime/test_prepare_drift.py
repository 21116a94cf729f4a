"""No silent drift: a dataset whose sha256 differs from plan.lock stops prepare with the file's path and both
hashes; LOFT_ALLOW_DATA_DRIFT=1 prepares it anyway and the report records that it did."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from loft.runtime.plan import load
from loft.runtime.prepare import PrepareError, run

from tests.runtime.bundle_factory import chat_rows, make_bundle, tiny_tokenizer, write_jsonl

QUIET = {"log": lambda *_: None}


def test_a_changed_dataset_stops_prepare_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "run"
    data = root / "data" / "chat.jsonl"
    write_jsonl(data, chat_rows(30))
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    built = hashlib.sha256(data.read_bytes()).hexdigest()
    write_jsonl(data, chat_rows(31))  # edited after the build
    now = hashlib.sha256(data.read_bytes()).hexdigest()
    monkeypatch.delenv("LOFT_ALLOW_DATA_DRIFT", raising=False)
    with pytest.raises(PrepareError) as e:
        run(load(root), **QUIET)
    text = str(e.value)
    assert str(data) in text and built in text and now in text and "LOFT_ALLOW_DATA_DRIFT=1" in text
    assert not (root / "out" / "prepared").exists()
    monkeypatch.setenv("LOFT_ALLOW_DATA_DRIFT", "1")
    rep = run(load(root), **QUIET)
    assert any("LOFT_ALLOW_DATA_DRIFT=1" in w and now in w for w in rep["warnings"])
    assert rep["datasets"]["chat"]["sha256"] == now
