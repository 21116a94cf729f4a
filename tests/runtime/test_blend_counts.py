"""One blend formula on both sides: the rows the compiler locks in `derived.rows` are the samples prepare
really draws (prepared/schedule.json, prepare_report.md), for weights, subsets, epochs, eval splits,
temperature and several datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from loft.compiler import pipeline
from loft.runtime.plan import load
from loft.runtime.prepare import run

from tests.compiler.project_factory import BASE_CONFIG, chat_rows, make_project
from tests.runtime.bundle_factory import tiny_tokenizer

CASES = {
    "natural": ("    - path: data/a.jsonl\n    - path: data/b.jsonl\n", {"a": 40, "b": 25}, ""),
    "weights-epochs-temperature": (
        "    - {path: data/a.jsonl, weight: 3.0, epochs: 2}\n"
        "    - {path: data/b.jsonl, weight: 0.5}\n"
        "    - {path: data/c.jsonl, epochs: 0.5, eval_split: 4}\n",
        {"a": 50, "b": 30, "c": 17}, "  temperature: 2.0\n  eval_split: 0.1\n"),
    "subsets": (
        "    - {path: data/a.jsonl, subset: 30}\n"
        "    - {path: data/b.jsonl, subset: 0.5, subset_mode: first, weight: 2.0}\n"
        "    - {path: data/c.jsonl, subset: 7, eval_split: 0.25}\n",
        {"a": 60, "b": 33, "c": 20}, "  eval_split: 3\n"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiler_rows_are_the_samples_prepare_draws(tmp_path: Path, case: str) -> None:
    datasets, sizes, data_keys = CASES[case]
    text = BASE_CONFIG.replace("    - path: data/chat.jsonl\n", datasets + data_keys)
    text += "sequence: {packing: false, max_length: 512}\n"
    cfg = make_project(tmp_path, text)
    for name, n in sizes.items():
        (tmp_path / "data" / f"{name}.jsonl").write_text(chat_rows(n), encoding="utf-8")
    for f in tiny_tokenizer().iterdir():
        shutil.copy(f, tmp_path / "models" / "tiny" / f.name)
    pipeline.build(cfg, tmp_path / "run")
    bundle = load(tmp_path / "run")
    derived = bundle.derived
    assert derived["rows"] is not None, "every row count is known at build"

    run(bundle, log=lambda *_: None)
    prepared = bundle.prepared
    schedule = json.loads((prepared / "schedule.json").read_text(encoding="utf-8"))
    drawn = {name: b["drawn"] for name, b in schedule["blend"].items()}
    assert set(drawn) == set(sizes)
    assert sum(drawn.values()) == schedule["rows"] == derived["rows"]  # no packing: one row per sample
    assert schedule["total_steps"] == derived["total_steps"]
    assert schedule["warmup_steps"] == derived["warmup_steps"]
    report = (bundle.out / "prepare_report.md").read_text(encoding="utf-8")
    for name, b in schedule["blend"].items():
        assert f"| {name} | {b['available']} | {b['drawn']} |" in report
