"""The prepare stage end to end on hand-made bundles: contract outputs, lengths, strategies, bad data,
blending, the incremental cache, formats and sources, ambiguity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import datasets
import pytest
from loft.runtime.plan import load
from loft.runtime.prepare import PrepareError, run
from loft.runtime.prepare.template import Encoder

from tests.runtime.bundle_factory import (
    LLAMA3_UNTAGGED,
    chat_rows,
    make_bundle,
    tiny_tokenizer,
    write_jsonl,
    write_plan,
)

QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def tok_dir() -> Path:
    return tiny_tokenizer()


def bundle(root: Path, tok_dir: Path, rows=None, datasets_=None, **config):
    if datasets_ is None:
        write_jsonl(root / "data" / "chat.jsonl", rows if rows is not None else chat_rows(120))
        datasets_ = [{"name": "chat", "path": "data/chat.jsonl"}]
    make_bundle(root, tok_dir, datasets_, **config)
    return load(root)


def prepared(root: Path, split: str = "train"):
    return datasets.load_from_disk(str(root / "out" / "prepared" / split))


def test_contract_outputs_packing_and_position_ids(tmp_path, tok_dir):
    b = bundle(tmp_path / "run", tok_dir, sequence={"max_length": 128}, data={"eval_split": 0.1})
    rep = run(b, **QUIET)
    out = tmp_path / "run" / "out"
    for f in ("prepare_report.json", "prepare_report.md", "lengths.png", "blend_metadata.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "prepare_report.json").read_text())["max_length"] == 128
    train, ev = prepared(tmp_path / "run"), prepared(tmp_path / "run", "eval")
    assert set(train.column_names) == {"input_ids", "labels", "position_ids", "sample_ids", "length"}
    assert len(ev) > 0 and rep["eval"]["samples"] == 12 and rep["train"]["samples"] == 108
    seen = set()
    for row in train:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == row["length"] <= 128
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert len(starts) == len(row["sample_ids"])  # positions restart once per packed sample
        for a, z in zip(starts, [*starts[1:], row["length"]], strict=False):
            assert row["position_ids"][a:z] == list(range(z - a))
        seen.update(row["sample_ids"])
    assert all(s.startswith("chat:") for s in seen) and len(seen) == 108
    assert rep["train"]["packing_efficiency"] > 0.8
    assert rep["train"]["rows"] < rep["train"]["samples"]
    md = (out / "prepare_report.md").read_text()
    assert "max_length" in md and "packing efficiency" in md


def test_auto_max_length_is_resolved_and_explained(tmp_path, tok_dir):
    b = bundle(tmp_path / "run", tok_dir, sequence={"max_length": "auto", "auto_length": "p95"})
    rep = run(b, **QUIET)
    import numpy as np

    p95 = rep["lengths"]["p95"]
    assert rep["max_length_source"] == "auto"
    assert rep["max_length"] == int(-(-int(np.ceil(p95)) // 8) * 8)
    assert "p95" in rep["max_length_reason"]
    over = rep["would_cut"]["truncate"]["samples"]
    assert over == rep["datasets"]["chat"]["cut"] and 0 < over <= 0.06 * 120
    knee = run(bundle(tmp_path / "k", tok_dir, sequence={"max_length": "auto", "auto_length": "knee"}), **QUIET)
    assert knee["max_length_reason"].startswith("auto: knee")


def test_split_strategy_carries_chunk_ids(tmp_path, tok_dir):
    long = {"messages": []}
    for i in range(6):
        long["messages"] += [{"role": "user", "content": f"Question number {i} about robots?"},
                             {"role": "assistant", "content": f"Answer number {i}: robots are machines."}]
    b = bundle(tmp_path / "run", tok_dir, rows=[long, *chat_rows(5)],
               sequence={"max_length": 96, "strategy": "split", "packing": False})
    rep = run(b, **QUIET)
    ids = [s for row in prepared(tmp_path / "run") for s in row["sample_ids"]]
    chunks = sorted(s for s in ids if s.startswith("chat:0:chunk"))
    assert len(chunks) >= 2 and rep["datasets"]["chat"]["chunks"] == len(chunks) - 1
    assert all(len(r["input_ids"]) <= 96 for r in prepared(tmp_path / "run"))


def test_drop_and_truncate_left(tmp_path, tok_dir):
    rows = chat_rows(40)
    lengths_by_strategy = {}
    for strategy in ("drop", "truncate_left"):
        rep = run(bundle(tmp_path / strategy, tok_dir, rows=rows, sequence={"max_length": 48, "strategy": strategy}),
                  **QUIET)
        lengths_by_strategy[strategy] = rep
        assert all(r["length"] <= 48 for r in prepared(tmp_path / strategy))
    cut = lengths_by_strategy["drop"]["datasets"]["chat"]["cut"]
    assert cut > 0 and lengths_by_strategy["drop"]["datasets"]["chat"]["dropped"] == cut


def test_bad_samples_are_counted_or_fail_with_file_line(tmp_path, tok_dir):
    rows = [*chat_rows(5), {"messages": []}, {"messages": [{"role": "wizard", "content": "x"}]},
            {"prompt": "no messages"}, *chat_rows(3, start=10)]
    root = tmp_path / "run"
    b = bundle(root, tok_dir, rows=rows)
    before = hashlib.sha256((root / "data" / "chat.jsonl").read_bytes()).hexdigest()
    rep = run(b, **QUIET)
    assert rep["datasets"]["chat"]["bad"] == {"empty_conversation": 1, "missing_field": 1, "unknown_role": 1}
    assert rep["datasets"]["chat"]["valid"] == 8 and rep["datasets"]["chat"]["train_samples"] == 8
    assert rep["lengths"]["count"] == 8 and rep["train"]["samples"] == 8
    assert hashlib.sha256((root / "data" / "chat.jsonl").read_bytes()).hexdigest() == before  # input untouched
    b = bundle(tmp_path / "fail", tok_dir, rows=rows, data={"bad_samples": "fail"})
    with pytest.raises(PrepareError, match=r"chat\.jsonl:6: empty_conversation"):
        run(b, **QUIET)


def test_malformed_jsonl_line_names_file_and_line(tmp_path, tok_dir):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(3))
    with (root / "data" / "chat.jsonl").open("a") as fh:
        fh.write('{"messages": [oops\n')
    make_bundle(root, tok_dir, [{"name": "chat", "path": "data/chat.jsonl"}])
    with pytest.raises(PrepareError, match=r"chat\.jsonl:4:\d+: malformed JSON"):
        run(load(root), **QUIET)


def test_incremental_cache_retokenizes_only_the_edited_dataset(tmp_path, tok_dir, monkeypatch):
    calls: list[int] = []
    original = Encoder._backend_encode

    def counting(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(Encoder, "_backend_encode", counting)
    root = tmp_path / "run"
    write_jsonl(root / "data" / "a.jsonl", chat_rows(30))
    write_jsonl(root / "data" / "b.jsonl", chat_rows(20, start=100))
    sets = [{"name": "a", "path": "data/a.jsonl"}, {"name": "b", "path": "data/b.jsonl"}]
    make_bundle(root, tok_dir, sets)
    run(load(root), **QUIET)
    assert sum(calls) == 50
    calls.clear()
    rep = run(load(root), **QUIET)  # nothing changed: no tokenizer call at all
    assert sum(calls) == 0 and {d["cache"] for d in rep["datasets"].values()} == {"hit"}
    write_jsonl(root / "data" / "b.jsonl", chat_rows(21, start=100))  # edit b only
    make_bundle(root, tok_dir, [sets[0], {**sets[1], "weight": 2.0}], sequence={"max_length": 512})
    rep = run(load(root), **QUIET)
    assert sum(calls) == 21  # b re-tokenized; a (weight/length changes only) served from cache
    assert rep["datasets"]["a"]["cache"] == "hit" and rep["datasets"]["b"]["cache"] == "miss"
    assert rep["datasets"]["b"]["tokenized_rows"] == 21


def test_blend_is_deterministic_and_follows_temperature(tmp_path, tok_dir):
    def go(name):
        root = tmp_path / name
        write_jsonl(root / "data" / "big.jsonl", chat_rows(90))
        write_jsonl(root / "data" / "small.jsonl", chat_rows(10, start=500))
        make_bundle(root, tok_dir, [{"name": "big", "path": "data/big.jsonl"},
                                    {"name": "small", "path": "data/small.jsonl", "epochs": 1}],
                    data={"temperature": 2.0})
        run(load(root), **QUIET)
        return root

    r1, r2 = go("one"), go("two")
    meta = json.loads((r1 / "out" / "blend_metadata.json").read_text())
    assert meta["datasets"]["big"]["drawn"] == 75 and meta["datasets"]["small"]["drawn"] == 25  # 90:10 → 3:1
    assert meta == json.loads((r2 / "out" / "blend_metadata.json").read_text())
    ids = [s for row in prepared(r1) for s in row["sample_ids"]]
    assert sum(s.startswith("small:") for s in ids) == 25
    assert prepared(r1).to_dict() == prepared(r2).to_dict()
    assert set(meta) >= {"config_hash", "datasets", "seed"} and meta["datasets"]["big"]["sha256"]


def test_formats_and_sources(tmp_path, tok_dir):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "sg.jsonl", [{"conversations": [{"from": "human", "value": "Hi there"},
                                                                {"from": "gpt", "value": "Hello friend"}]}] * 3)
    datasets.Dataset.from_list([{"instruction": "Add", "input": "2+2", "output": "four"}] * 3).to_parquet(
        str(root / "data" / "alp.parquet"))
    datasets.Dataset.from_list([{"body": "plain completion text"}] * 3).to_csv(str(root / "data" / "c.csv"),
                                                                                 index=False)
    datasets.Dataset.from_list([{"messages": chat_rows(1)[0]["messages"]}] * 3).save_to_disk(str(root / "data" / "saved"))
    make_bundle(root, tok_dir, [
        {"name": "sg", "path": "data/sg.jsonl", "format": "sharegpt"},
        {"name": "alp", "path": "data/alp.parquet", "format": "alpaca"},
        {"name": "c", "path": "data/c.csv", "format": "completion", "fields": {"text": "body"}},
        {"name": "saved", "path": "data/saved"},
    ], sequence={"packing": False, "max_length": 256})
    rep = run(load(root), **QUIET)
    assert {n: d["valid"] for n, d in rep["datasets"].items()} == {"sg": 3, "alp": 3, "c": 3, "saved": 3}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    trained = {}
    for row in prepared(root):
        name = row["sample_ids"][0].split(":")[0]
        trained[name] = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100])
    assert trained["sg"] == "Hello friend<|eot_id|>"
    assert trained["alp"] == "four<|eot_id|>"
    assert trained["c"] == "plain completion text<|eot_id|>"  # completion: every token, eos appended
    assert trained["saved"].endswith("<|eot_id|>")


def test_untagged_template_falls_back_to_prefix_masks_and_says_so(tmp_path, tok_dir):
    tagged = run(bundle(tmp_path / "t", tok_dir, rows=chat_rows(20)), **QUIET)
    b = bundle(tmp_path / "u", tok_dir, rows=chat_rows(20), template=LLAMA3_UNTAGGED)
    rep = run(b, **QUIET)
    assert rep["template"]["mask"] == "prefix" and "prefixes" in rep["template"]["note"]
    assert rep["train"]["trained_tokens"] == tagged["train"]["trained_tokens"]


def test_dataset_complete_column_and_override(tmp_path, tok_dir):
    cut = {"messages": [{"role": "user", "content": "Tell me"}, {"role": "assistant", "content": "Once upon"}],
           "_complete": False}
    rows = [chat_rows(1)[0], cut]
    rep = run(bundle(tmp_path / "a", tok_dir, rows=rows), **QUIET)
    assert rep["datasets"]["chat"]["bad"] == {"no_trainable_tokens": 1}  # incomplete last turn: no loss
    rep = run(bundle(tmp_path / "b", tok_dir, rows=rows, sequence={"train_on_incomplete_assistant": True}), **QUIET)
    assert rep["datasets"]["chat"]["valid"] == 2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    for row in prepared(tmp_path / "b"):
        text = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100])
        assert "Once upon<|eot_id|>" not in text  # the end it never had is never trained


def test_ambiguity_column_when_adaptive_label_smoothing(tmp_path, tok_dir):
    b = bundle(tmp_path / "run", tok_dir, rows=chat_rows(60),
               training={"aux_losses": {"adaptive_label_smoothing": {"enabled": True}}})
    rep = run(b, **QUIET)
    train = prepared(tmp_path / "run")
    assert "ambiguity" in train.column_names and rep["ambiguity"]["aligned_with"] == "labels"
    for row in train:
        amb = row["ambiguity"]
        assert len(amb) == len(row["labels"])
        assert all(0.0 <= a <= 1.0 for a in amb)
        assert all(a == 0.0 for a, lab in zip(amb, row["labels"], strict=True) if lab == -100)
    assert any(a > 0 for row in train for a in row["ambiguity"])


def test_hub_id_offline_is_a_clear_error(tmp_path, tok_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "run"
    make_bundle(root, tok_dir, [{"name": "hub", "path": "org/some-chat"}])
    plan = json.loads((root / "plan.lock").read_text())
    plan["data"]["datasets"] = [{"name": "hub", "source": "hub", "path": "org/some-chat", "sha256": None,
                                 "revision": None}]
    plan["config"]["data"]["datasets"] = [{"name": "hub", "path": "org/some-chat", "format": "messages"}]
    write_plan(root, plan)
    with pytest.raises(PrepareError, match="offline"):
        run(load(root), **QUIET)


def test_cache_prune_keeps_the_newest_and_the_current_entries(tmp_path):
    import os

    from loft.runtime.prepare import cache

    keys = [f"{n:020x}" for n in range(9)]
    for n, k in enumerate(keys):
        d = cache.entry(tmp_path, "chat", k)
        d.mkdir()
        os.utime(d, (1000 + n, 1000 + n))
    cache.entry(tmp_path, "chat2", keys[0]).mkdir()  # another dataset's entry is never touched
    cache.prune(tmp_path, "chat", keep={keys[0]}, max_entries=3)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["chat-" + keys[0], "chat-" + keys[6], "chat-" + keys[7], "chat-" + keys[8], "chat2-" + keys[0]]


def test_worker_processes_give_the_same_data(tmp_path, tok_dir):
    rows = chat_rows(60)
    one = run(bundle(tmp_path / "one", tok_dir, rows=rows, data={"num_proc": 1}), **QUIET)
    two = run(bundle(tmp_path / "two", tok_dir, rows=rows, data={"num_proc": 2}), **QUIET)
    assert two["datasets"]["chat"]["num_proc"] == 2 and one["datasets"]["chat"]["num_proc"] == 1
    assert prepared(tmp_path / "one").to_dict() == prepared(tmp_path / "two").to_dict()


def test_worker_processes_report_progress_in_a_log(tmp_path, tok_dir, monkeypatch, capfd):
    """With num_proc > 1 and stderr not a terminal, the tokenize step still prints loft's progress lines
    (chunk by chunk), and the chunked map gives the same rows and sample ids as one process."""
    import loft.runtime.prepare.tokenize as tokenize

    monkeypatch.setattr(tokenize, "WORKER_CHUNK_ROWS", 25)
    monkeypatch.setenv("LOFT_PROGRESS", "1")
    monkeypatch.setenv("LOFT_PROGRESS_S", "0")
    rows = chat_rows(60)
    run(bundle(tmp_path / "one", tok_dir, rows=rows, data={"num_proc": 1}), **QUIET)
    capfd.readouterr()
    run(bundle(tmp_path / "two", tok_dir, rows=rows, data={"num_proc": 2}), **QUIET)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "tokenize chat (2 processes)" in ln]
    assert [ln.split(": ", 1)[1].split(" rows")[0] for ln in lines] == ["25/60", "50/60", "60/60", "60/60"], lines
    assert lines[-1].endswith("done")
    assert prepared(tmp_path / "one").to_dict() == prepared(tmp_path / "two").to_dict()
