"""W&B for sweeps: each trial is one offline W&B run, all in the sweep's group, with the trial's values in the
run's config and its losses logged (read back from the runs' own .wandb logs); the exported W&B sweep YAML
passes W&B's sweep-config schema (the `sweeps` package, W&B's own validation)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from loft.runtime.plan import load

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle

SMALL = {"training.max_steps": 2, "training.save_steps": 2, "sequence.max_length": 96,
         "training.micro_batch_size": 1, "training.gradient_accumulation_steps": 1,
         "tracking.wandb": {"project": "loft-test", "entity": None, "mode": "offline", "api_key_env": "WANDB_API_KEY"}}
SOURCE = {"source": {"file": "cfg.yaml", "dialect": "loft", "sha256": "0" * 64,
                     "config": {"loft": 1, "model": {"base": "model"}, "data": {"datasets": [{"path": "d.jsonl"}]}}},
          "launch.gpus_per_node": 0}


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a .wandb transaction log (LevelDB log format: 32 KiB blocks of records with a
    7-byte header; FULL=1, FIRST=2, MIDDLE=3, LAST=4), parsed with wandb's own Record message."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf, out = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            r = pb.Record()
            r.ParseFromString(buf)
            out.append(r)
    return out


def test_each_trial_is_one_wandb_run_in_the_sweeps_group(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install -c constraints.txt wandb)")
    import json

    from loft.runtime.sweep.runner import run as sweep

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=4, n_eval=0, plan_extra=SOURCE,
                      trials=[{"training.learning_rate": 1e-2}, {"training.learning_rate": 1e-3, "adapter.r": 2}])
    assert sweep(load(run)) == 0
    logs = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 2  # one run per trial
    results = {r["trial"]: r for r in map(json.loads, (run / "out" / "sweep" / "results.jsonl").read_text().splitlines())}
    seen = {}
    for log in logs:
        recs = wandb_records(log)
        head = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
        config = {u.key: json.loads(u.value_json) for u in head.config.update}
        assert head.run_group == "t-sweep" and head.job_type == "sweep-trial" and head.project == "loft-test"
        n = config["loft_trial"]
        assert head.display_name == f"t-trial-{n}"
        for key, value in results[n]["params"].items():
            assert config[key] == value
        history = [{i.nested_key[0] if i.nested_key else i.key: json.loads(i.value_json) for i in r.history.item}
                   for r in recs if r.WhichOneof("record_type") == "history"]
        logged = [h["train/loss"] for h in history if "train/loss" in h]
        metrics = [json.loads(line) for line in (run / results[n]["out_dir"] / "metrics.jsonl").read_text().splitlines()]
        assert logged == pytest.approx([m["loss"] for m in metrics if "loss" in m])
        summary = {}
        for r in recs:
            if r.WhichOneof("record_type") == "summary":
                summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
        assert summary["sweep/value"] == pytest.approx(results[n]["value"]) and summary["sweep/state"] == "complete"
        seen[n] = head.run_id
    assert sorted(seen) == [0, 1] and len(set(seen.values())) == 2


def test_exported_wandb_sweep_passes_wandbs_schema(tmp_path):
    sweeps = pytest.importorskip("sweeps", reason="W&B's sweep-config schema (pip install 'wandb[sweeps]') is absent")
    from loft.compiler.commands.sweep import wandb_config

    sweep = {"method": "bayes", "metric": "eval_loss", "direction": "minimize", "pruner": "median",
             "budget": {"trials": 8, "steps_per_trial": None, "wall_time_s": None}, "trials": [],
             "space": {"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True, "step": None},
                       "adapter.r": {"type": "int", "low": 4, "high": 32, "log": False, "step": 4},
                       "adapter.dropout": {"type": "float", "low": 0.0, "high": 0.1, "log": False, "step": None},
                       "data.datasets[0].weight": {"type": "categorical", "values": [1.0, 2.0]}}}
    cfg = wandb_config(sweep, "t")
    assert cfg["parameters"]["data.datasets.0.weight"] == {"values": [1.0, 2.0]}
    assert cfg.pop("run_cap") == 8  # a top-level key in W&B's docs that the sweeps 0.2 schema predates
    assert sweeps.schema_violations_from_proposed_config(cfg) == []
    assert sweeps.schema_violations_from_proposed_config({**cfg, "method": "tpe"})  # the check can fail
