"""`loft STAGE RUN --json`: the stage's report as the only thing on stdout; errors as a structured object."""

from __future__ import annotations

import json

from loft.runtime.__main__ import main
from loft.runtime.jsonout import ERROR_FIELDS

from tests.runtime.bundle_factory import chat_rows, make_bundle, tiny_tokenizer, write_jsonl


def test_prepare_json_and_structured_errors(tmp_path, capsys):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(20))
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    assert main(["prepare", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # the terminal summary went to stderr
    assert out["ok"] and out["stage"] == "prepare" and out["report"]["datasets"]["chat"]["valid"] == 20
    assert captured.err.strip()  # the human summary is still shown, on stderr
    assert main(["train", str(tmp_path / "nope"), "--json"]) == 1
    err = json.loads(capsys.readouterr().out)
    assert err["stage"] == "train" and err["ok"] is False and len(err["errors"]) == 1
    (e,) = err["errors"]
    assert set(e) == set(ERROR_FIELDS) and e["code"] == "plan" and "plan.lock" in e["message"]
