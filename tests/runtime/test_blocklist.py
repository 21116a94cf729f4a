"""data.blocklist end to end: `loftc build` carries and hashes the file (errors at file:line), prepare drops
the listed samples (every chunk), counts them in prepare_report.{json,md} and warns about unmatched ids."""

from __future__ import annotations

import hashlib
import json

import datasets
import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.pipeline import build
from loft.runtime.plan import load
from loft.runtime.prepare import PrepareError, run

from tests.compiler.project_factory import BASE_CONFIG, make_project
from tests.runtime.bundle_factory import chat_rows, make_bundle, tiny_tokenizer, write_jsonl, write_plan


def test_build_carries_and_hashes_the_blocklist(tmp_path):
    text = "# loft spikes\nchat:3\nchat:5:chunk1\n\nchat:7  # a comment\nother:1\n"
    cfg = make_project(tmp_path, BASE_CONFIG.replace("data:\n", "data:\n  blocklist: block.txt\n"))
    (tmp_path / "block.txt").write_text(text)
    out = tmp_path / "run"
    plan = build(cfg, out)
    assert plan == json.loads((out / "plan.lock").read_text())
    assert plan["data"]["blocklist"] == {"path": "blocklist.txt", "entries": 4,
                                         "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert plan["config"]["data"]["blocklist"] == "blocklist.txt"
    assert (out / "blocklist.txt").read_text() == text
    assert any(w["code"] == "blocklist-unknown-dataset" and "other" in w["message"] for w in plan["warnings"])
    (tmp_path / "block.txt").write_text("chat:3\nchat three\n")
    with pytest.raises(ConfigError) as e:
        build(cfg, tmp_path / "run2")
    assert "block.txt:2" in str(e.value.diagnostics[0].message) and "not a sample id" in e.value.diagnostics[0].message
    (tmp_path / "block.txt").unlink()
    with pytest.raises(ConfigError, match="blocklist"):
        build(cfg, tmp_path / "run3")
    plain = build(make_project(tmp_path / "p2"), tmp_path / "run4")
    assert "blocklist" not in plain["data"] and plain["config"]["data"]["blocklist"] is None


def test_prepare_drops_blocklisted_samples_and_counts_them(tmp_path):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(30))
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}],
                sequence={"max_length": 24, "strategy": "split", "packing": False})
    text = "chat:2\nchat:4\nchat:99\n"
    (root / "blocklist.txt").write_text(text)
    plan = json.loads((root / "plan.lock").read_text())
    plan["data"]["blocklist"] = {"path": "blocklist.txt", "entries": 3, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    write_plan(root, plan)
    rep = run(load(root), log=lambda *_: None)
    ids = {sid for row in datasets.load_from_disk(str(root / "out" / "prepared" / "train"))["sample_ids"] for sid in row}
    bases = {i.split(":chunk")[0] for i in ids}
    assert "chat:2" not in bases and "chat:4" not in bases and {"chat:1", "chat:3"} <= bases
    assert any(":chunk" in i for i in ids)  # split samples exist, and none of a blocked one's chunks survive
    assert rep["blocklist"]["dropped"] == {"chat": 2} and rep["blocklist"]["unmatched"] == 1
    assert rep["datasets"]["chat"]["train_samples"] == 28
    assert any("1 of 3 ids matched no valid sample" in w for w in rep["warnings"])
    md = (root / "out" / "prepare_report.md").read_text()
    assert "**blocklist**: blocklist.txt" in md and "2 samples dropped (chat: 2)" in md
    (root / "blocklist.txt").write_text("chat:2\nnot an id\n")
    with pytest.raises(PrepareError, match=r"blocklist.txt:2: 'not an id'"):
        run(load(root), log=lambda *_: None)


def test_spikes_blocklist_feeds_prepare(tmp_path, capsys):
    """`loft spikes --blocklist` output is a valid blocklist file."""
    from loft.runtime.__main__ import main
    from loft.runtime.prepare.blocklist import parse

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0 if s == 12 else 1.0}) + "\n"
                                               for s in range(1, 13)))
    (out / "batches.jsonl").write_text("".join(json.dumps({"step": s, "sample_ids": [[f"chat:{s}:chunk0", "b:1"]]})
                                               + "\n" for s in range(1, 13)))
    assert main(["spikes", str(out), "--blocklist"]) == 0
    assert parse(capsys.readouterr().out, "x") == {"chat": {12}, "b": {1}}


