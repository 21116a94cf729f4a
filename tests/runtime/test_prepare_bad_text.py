"""A 0xff byte or a lone surrogate in a dataset line is one bad sample (`bad_encoding`): counted and skipped
under `bad_samples: skip`, an error naming file:line under `fail`; never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.runtime.plan import load
from loft.runtime.prepare import PrepareError, run

from tests.runtime.bundle_factory import chat_rows, make_bundle, tiny_tokenizer

QUIET = {"log": lambda *_: None}


def _write(root: Path) -> None:
    lines = [json.dumps(r).encode() for r in chat_rows(6)]
    lines.insert(2, b'{"messages": [{"role": "user", "content": "caf\xff"}]}')  # not UTF-8
    lines.insert(4, b'{"messages": [{"role": "user", "content": "\\ud800 x"}, '
                    b'{"role": "assistant", "content": "y"}]}')  # valid JSON, lone surrogate
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "chat.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def test_bad_text_is_skipped_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _write(root)
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    rep = run(load(root), **QUIET)
    assert rep["datasets"]["chat"]["bad"] == {"bad_encoding": 2}
    assert rep["datasets"]["chat"]["valid"] == 6


def test_bad_text_fails_with_file_and_line_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "run"
    _write(root)
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}], data={"bad_samples": "fail"})
    with pytest.raises(PrepareError, match=r"chat\.jsonl:3: bad_encoding"):
        run(load(root), **QUIET)


def test_a_dataset_with_no_usable_rows_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "run"
    (root / "data").mkdir(parents=True)
    (root / "data" / "chat.jsonl").write_text('{"messages": []}\n' * 5)
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    with pytest.raises(PrepareError, match=r"'chat': no usable rows after filtering \(empty_conversation: 5\)"):
        run(load(root), **QUIET)
