"""Loss-spike attribution: the rolling-median rule, the dumps a training run writes, `loft spikes`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.runtime.spikes import blocklist, collect, source_id
from loft.runtime.train.spikes import Detector, SampleDecoder, SpikeRule, SpikeWatcher, detect
from train_bundle import make_bundle, read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def recs(values, key="loss"):
    return [{"step": i + 1, key: v} for i, v in enumerate(values)]


def test_rule_flags_values_above_k_times_the_rolling_median():
    series = [2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 9.0, 2.0, 2.0, 8.5, 2.0]
    found = detect(recs(series), SpikeRule(factor=3.0, window=5, min_history=3, metrics=("loss",)))
    assert [s["step"] for s in found] == [7, 10]
    hit = found[0]["metrics"]["loss"]
    assert hit["value"] == 9.0 and hit["median"] == pytest.approx(2.0) and hit["ratio"] == pytest.approx(4.5)


def test_rule_needs_history_and_uses_the_median_not_the_mean():
    # too little history: nothing flagged, however large
    assert detect(recs([1.0, 50.0]), SpikeRule(min_history=3, metrics=("loss",))) == []
    # two spikes in a row: the first does not hide the second (a mean would have risen to ~4.4)
    found = detect(recs([1.0] * 6 + [10.0, 10.0]), SpikeRule(factor=3.0, window=8, min_history=3, metrics=("loss",)))
    assert [s["step"] for s in found] == [7, 8]
    # grad norm watched too; eval records and missing values ignored
    rs = recs([1.0] * 5 + [7.0], "grad_norm")
    for r in rs:
        r["loss"] = 1.0
    rs.insert(3, {"step": 3, "eval_loss": 99.0})
    found = detect(rs, SpikeRule(min_history=3))
    assert [(s["step"], list(s["metrics"])) for s in found] == [(6, ["grad_norm"])]


def test_rule_from_plan_and_disabled():
    rule = SpikeRule.from_plan({"spikes": {"factor": 2.5, "window": 7, "metrics": ["loss"], "unknown": 1}})
    assert (rule.factor, rule.window, rule.metrics) == (2.5, 7, ("loss",))
    assert SpikeRule.from_plan(None) == SpikeRule()
    det = Detector(SpikeRule(metrics=("loss",), min_history=1))
    assert det.observe({"loss": 1.0}) is None and det.observe({"loss": 5.0}) is not None


class FakeTok:
    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids)


class FakeBatches:
    def __init__(self, recent):
        self.recent = recent


def test_watcher_dumps_the_flagged_steps_samples(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_dict({"input_ids": [[1, 2, 3, 4, 5], [6, 7]], "labels": [[-100, 2, 3, -100, 5], [6, 7]],
                            "position_ids": [[0, 1, 2, 0, 1], [0, 1]], "sample_ids": [["a:0", "a:1"], ["b:4:chunk1"]]})
    batches = FakeBatches([{"step": 1, "sample_ids": [["b:4:chunk1"]]}, {"step": 2, "sample_ids": [["a:0", "a:1"]]}])
    w = SpikeWatcher(tmp_path, SpikeRule(metrics=("loss",), min_history=1, max_dumps=1), batches,
                     SampleDecoder(ds, FakeTok()))
    assert w.observe({"step": 1, "loss": 1.0}) is None
    spike = w.observe({"step": 2, "loss": 4.0, "learning_rate": 0.1})
    assert spike["sample_ids"] == ["a:0", "a:1"] and spike["dump"] == "spikes/step_2.md"
    md = (tmp_path / "spikes" / "step_2.md").read_text()
    assert "## a:0" in md and "t1 t2 t3" in md and "## a:1" in md and "t4 t5" in md and "t6" not in md
    line = read_jsonl(tmp_path / "spikes" / "spikes.jsonl")[0]
    assert line["step"] == 2 and [s["id"] for s in line["samples"]] == ["a:0", "a:1"]
    assert line["samples"][0]["trained_tokens"] == 2 and line["samples"][1]["tokens"] == 2
    # the dump cap: a later spike is flagged in the record but writes no file
    spike = w.observe({"step": 3, "loss": 40.0})
    assert spike is not None and "dump" not in spike and not (tmp_path / "spikes" / "step_3.md").exists()
    assert source_id("b:4:chunk1") == "b:4" and blocklist([line]) == ["a:0", "a:1"]


def test_spikes_cli_rescans_metrics_without_dumps(tmp_path, capsys):
    from loft.runtime.__main__ import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs([1.0] * 12 + [9.0])))
    (out / "batches.jsonl").write_text("".join(json.dumps({"step": s, "sample_ids": [[f"chat:{s}", f"chat:{s}:chunk0"]]})
                                               + "\n" for s in range(1, 14)))
    assert [s["step"] for s in collect(out, {})] == [13]
    assert main(["spikes", str(out), "--blocklist"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("#")]
    assert lines == ["chat:13"]
    assert main(["spikes", str(out), "--json", "--factor", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["spikes"] == []
    assert main(["spikes", str(out)]) == 0
    assert "step 13: loss 9" in capsys.readouterr().out
    assert main(["spikes", str(tmp_path / "nope")]) == 1
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.slow
def test_training_flags_dumps_and_measures(tiny_model_dir, tmp_path):
    """A real (tiny) run: spike records in metrics.jsonl name exactly the step's batch, the dump holds their
    decoded text, and train_report.json has the measured block beside the estimate."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    # factor 0.5 flags every step after the first: the rule's detection is tested above; here the wiring
    run_dir = make_bundle(tmp_path, tiny_model_dir, {"training.max_steps": 3, "training.save_steps": 100,
                                                     "tracking.spikes": {"factor": 0.5, "min_history": 1,
                                                                         "metrics": ["loss"], "max_dumps": 1}},
                          n_eval=0, plan_extra={"estimate": {"vram": {"total_gib": 1.5, "allocated_gib": 1.0},
                                                             "time": {"tokens_per_s": 1000.0}}})
    assert run(load(run_dir)) == 0
    out = run_dir / "out"
    metrics = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    batches = {b["step"]: [i for row in b["sample_ids"] for i in row] for b in read_jsonl(out / "batches.jsonl")}
    flagged = [r for r in metrics if r.get("spike")]
    assert [r["step"] for r in flagged] == [2, 3]
    for r in flagged:
        assert r["spike"]["sample_ids"] == batches[r["step"]]
    assert all(r["max_steps"] == 3 for r in metrics) and all(r["tokens_per_s"] > 0 for r in metrics[1:])
    md = (out / "spikes" / "step_2.md").read_text()
    assert not (out / "spikes" / "step_3.md").exists()  # max_dumps 1
    dumped = read_jsonl(out / "spikes" / "spikes.jsonl")[0]["samples"]
    assert [str(s["id"]) for s in dumped] == [str(i) for i in batches[2]]
    assert all(s["text"] and s["text"] in md for s in dumped)
    report = json.loads((out / "train_report.json").read_text())
    m = report["measured"]
    assert m["tokens_per_s"] == pytest.approx(report["tokens"] / report["train_runtime_s"], rel=1e-3)
    assert m["estimate"] == {"total_gib": 1.5, "allocated_gib": 1.0, "tokens_per_s": 1000.0, "gpu": None}
    assert m["ratio"]["tokens_per_s"] == pytest.approx(m["tokens_per_s"] / 1000.0, rel=1e-3)
    assert m["ratio"]["total_gib"] is None and m["source"] == []  # a CPU run: no device memory to measure
