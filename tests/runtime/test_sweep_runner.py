"""The sweep stage: one base model for every trial (fresh seeded adapters, base verified bit-identical, full
fine-tune weights restored), Optuna's pruner with the reason recorded, TPE's seeded suggestions, results in
out/sweep/, a trial equal to its standalone run, and save-and-quit / resume."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from loft.runtime.plan import load, trial_plan, with_trial

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle, read_jsonl, runtime_env

SMALL = {"training.max_steps": 2, "training.save_steps": 2, "sequence.max_length": 96,
         "training.micro_batch_size": 1, "training.gradient_accumulation_steps": 1}
SOURCE = {"source": {"file": "cfg.yaml", "dialect": "loft", "sha256": "0" * 64,
                     "config": {"loft": 1, "model": {"base": "model"}, "data": {"datasets": [{"path": "d.jsonl"}]}}},
          "launch.gpus_per_node": 0}


def _trial(run: Path, n: int):
    return with_trial(load(run), n)


def _lora(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_each_trial_gets_a_fresh_seeded_adapter_on_one_base(tiny_model_dir, tmp_path):
    import torch
    from loft.runtime.sweep.shared_model import SharedModel
    from loft.runtime.train.model import StageError, load_tokenizer
    from loft.runtime.train.trainer import standalone_model

    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=4, n_eval=0,
                      trials=[{"adapter.r": 2}, {"adapter.r": 4}, {"adapter.r": 2, "training.seed": 9}])
    tok = load_tokenizer(load(run))
    shared = SharedModel(world=1)
    first = _lora(shared.provide(_trial(run, 0), tok))
    assert first == {} or all(v.shape[0] == 2 for k, v in first.items() if "lora_A" in k)
    shared.after_trial()
    second = _lora(shared.provide(_trial(run, 1), tok))
    assert {v.shape[0] for k, v in second.items() if "lora_A" in k} == {4}
    shared.after_trial()
    again = _lora(shared.provide(_trial(run, 0), tok))  # the same seed and config: the same initial adapter
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
    alone = _lora(standalone_model(_trial(run, 0), tok))  # and the same as `loft train --trial 0` draws
    assert all(torch.equal(alone[k], first[k]) for k in first)
    shared.after_trial()
    other = _lora(shared.provide(_trial(run, 2), tok))
    assert not all(torch.equal(other[k], first[k]) for k in first)
    # a trial that writes into the base is caught after it
    with torch.no_grad():
        next(p for n, p in shared.peft.named_parameters() if "lora_" not in n).add_(1.0)
    with pytest.raises(StageError, match="weights changed after the trial"):
        shared.after_trial()
    assert shared.loads == 1


def test_full_fine_tune_trials_start_from_the_kept_weights(tiny_model_dir, tmp_path):
    import torch
    from loft.runtime.sweep.shared_model import SharedModel, weights_digest
    from loft.runtime.train.model import load_tokenizer

    run = make_bundle(tmp_path, tiny_model_dir, {**SMALL, "adapter.type": "none"}, n_train=4, n_eval=0,
                      trials=[{"training.learning_rate": 1e-3}, {"training.learning_rate": 2e-3}])
    tok = load_tokenizer(load(run))
    shared = SharedModel(world=1)
    model = shared.provide(_trial(run, 0), tok)
    loaded = weights_digest(model)
    with torch.no_grad():  # what training does to a full fine-tune
        for p in model.parameters():
            p.add_(0.5)
    shared.after_trial()
    model = shared.provide(_trial(run, 1), tok)
    assert weights_digest(model) == loaded and shared.loads == 1


def test_pruner_stops_a_bad_trial_with_the_reason():
    import optuna
    from loft.runtime.sweep.study import PruneCallback, make_pruner
    from transformers import TrainerControl, TrainerState

    sweep = {"pruner": "median", "pruner_startup_trials": 1}
    study = optuna.create_study(pruner=make_pruner(sweep), direction="minimize")
    good = study.ask()
    for step, v in ((2, 1.0), (4, 0.8)):
        good.report(v, step)
    study.tell(good, 0.8)
    bad = study.ask()
    cb = PruneCallback(bad, "eval_loss", "median", main=True)
    control, state = TrainerControl(), TrainerState()
    state.global_step = 2
    cb.on_evaluate(None, state, control, metrics={"eval_loss": 0.9})  # better than 1.0: goes on
    assert cb.pruned is None and not control.should_training_stop
    state.global_step = 4
    cb.on_evaluate(None, state, control, metrics={"eval_loss": 2.5})
    assert control.should_training_stop and cb.pruned["step"] == 4
    assert "median 0.8000 of 1 earlier trial" in cb.pruned["reason"] and "2.5000" in cb.pruned["reason"]
    # train_loss sweeps report a running mean of the logged losses at every logging step
    cb2 = PruneCallback(study.ask(), "train_loss", "median", main=True)
    for step, loss in ((5, 3.0), (6, 1.0)):
        state.global_step = step
        cb2.on_log(None, state, TrainerControl(), logs={"loss": loss})
    assert cb2.trial.study.get_trials()[-1].intermediate_values == {5: 3.0, 6: 2.0}


def test_bayes_suggestions_are_seeded_and_inside_the_space():
    import optuna
    from loft.runtime.sweep.study import suggest

    space = {"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True, "step": None},
             "adapter.r": {"type": "int", "low": 4, "high": 32, "log": False, "step": 4},
             "adapter.rslora": {"type": "categorical", "values": [True, False]}}

    def draws(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=2))
        out = []
        for i in range(4):
            t = study.ask()
            values = suggest(t, space)
            out.append(values)
            study.tell(t, float(i))
        return out

    a = draws(3)
    assert a == draws(3) and a != draws(4)
    for v in a:
        assert 1e-5 <= v["training.learning_rate"] <= 1e-3 and v["adapter.r"] % 4 == 0
        assert v["adapter.rslora"] in (True, False)


def test_sweep_runs_every_trial_on_one_load_and_writes_results(tiny_model_dir, tmp_path):
    from loft.runtime.sweep.runner import run as sweep

    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=6, n_eval=2, plan_extra=SOURCE,
                      trials=[{"adapter.r": 2, "training.learning_rate": 1e-2}, {"adapter.r": 4}])
    bundle = load(run)
    bundle.plan["sweep"].update(metric="eval_loss", pruner="none")
    assert sweep(bundle) == 0
    folder = run / "out" / "sweep"
    records = read_jsonl(folder / "results.jsonl")
    assert [r["trial"] for r in records] == [0, 1] and {r["state"] for r in records} == {"complete"}
    assert all(r["base_loads"] == 1 and r["steps"] == 2 and r["value"] > 0 for r in records)
    for r in records:  # the metric is the final model's eval loss, as metrics.jsonl recorded it
        evals = [m for m in read_jsonl(run / r["out_dir"] / "metrics.jsonl") if "eval_loss" in m]
        assert evals[-1]["step"] == 2 and evals[-1]["eval_loss"] == r["value"]
    best = min(records, key=lambda r: r["value"])
    md = (folder / "results.md").read_text()
    assert md.splitlines()[4].startswith(f"| 1 | {best['trial']} |") and "eval_loss" in md
    import matplotlib.image

    assert matplotlib.image.imread(folder / "loss_curves.png").shape[:2] == (450, 800)
    assert f"trial {best['trial']}" in (folder / "best.yaml").read_text()
    assert sweep(load(run)) == 0  # relaunched: every trial is finished, nothing runs again
    assert len(read_jsonl(folder / "results.jsonl")) == 2


def test_a_trial_whose_data_keys_differ_prepares_its_own_set(tiny_model_dir, tmp_path, monkeypatch):
    from loft.runtime.sweep import runner

    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=4, n_eval=0,
                      trials=[{"adapter.r": 2}, {"sequence.max_length": 64}])
    prepared: list[int | None] = []
    monkeypatch.setattr("loft.runtime.prepare.run", lambda b: prepared.append(b.trial))
    monkeypatch.setattr("loft.runtime.train.trainer.train", lambda *a, **k: 0)
    r = runner.Runner(load(run))
    r.setup()
    for _ in range(2):
        r._run_trial(r._next())
    assert prepared == [1]


def test_a_trial_runs_its_own_schedule_over_the_prepared_rows(tiny_model_dir, tmp_path):
    """prepared/schedule.json holds the base plan's schedule; a trial with steps_per_trial (its own
    training.max_steps) must train that many steps, standalone (`--trial N`) and inside the sweep."""
    from loft.runtime.train.trainer import _steps

    run = make_bundle(tmp_path, tiny_model_dir, {**SMALL, "training.max_steps": None, "training.epochs": 1},
                      n_train=6, n_eval=0, trials=[{"training.max_steps": 1}, {"training.warmup_steps": 0}])
    base = _steps(load(run), 1)
    assert base["total_steps"] == base["rows"] > 1  # one epoch at global batch 1
    first, second = (_steps(_trial(run, n), 1) for n in (0, 1))
    assert first["total_steps"] == 1 and first["rows"] == base["rows"]
    assert second["total_steps"] == base["rows"] and second["warmup_steps"] == 0


@pytest.mark.slow
def test_a_sweep_trial_trains_like_its_standalone_run(tiny_model_dir, tmp_path):
    from loft.runtime.sweep.runner import run as sweep
    from loft.runtime.train.trainer import train

    run = make_bundle(tmp_path, tiny_model_dir, {**SMALL, "training.max_steps": 3}, n_train=6, n_eval=0,
                      plan_extra=SOURCE, trials=[{"adapter.r": 4, "training.learning_rate": 1e-2},
                                                 {"adapter.r": 2, "training.learning_rate": 3e-3}])
    assert sweep(load(run)) == 0
    in_sweep = [(r["step"], r["loss"]) for r in read_jsonl(run / "out" / "trial-1" / "metrics.jsonl") if "loss" in r]
    t1 = with_trial(load(run), 1)
    alone = replace(t1, plan=trial_plan(t1.plan, {**load(run).plan["sweep"]["trials"][1],
                                                  "config": {**t1.config, "output_dir": "out/alone"}}, "alone"))
    assert train(alone) == 0
    by_itself = [(r["step"], r["loss"]) for r in read_jsonl(run / "out" / "alone" / "metrics.jsonl") if "loss" in r]
    assert [s for s, _ in in_sweep] == [s for s, _ in by_itself] == [1, 2, 3]
    assert [x for _, x in in_sweep] == pytest.approx([x for _, x in by_itself], rel=1e-5)


@pytest.mark.slow
def test_save_and_quit_inside_a_sweep_then_resume(tiny_model_dir, tmp_path):
    import time

    run = make_bundle(tmp_path, tiny_model_dir, {**SMALL, "training.max_steps": 8, "training.save_steps": 2},
                      n_train=16, n_eval=0, plan_extra=SOURCE,
                      trials=[{"adapter.r": 2}, {"adapter.r": 4}, {"adapter.r": 8}])
    env = runtime_env()
    cmd = [sys.executable, "-m", "loft.runtime", "sweep", str(run)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    trial1 = run / "out" / "trial-1"
    deadline = time.monotonic() + 240
    while max((s for s, _ in losses_of(trial1)), default=0) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    (run / "STOP").touch()
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    folder = run / "out" / "sweep"
    assert [r["trial"] for r in read_jsonl(folder / "results.jsonl")] == [0]
    report = json.loads((trial1 / "train_report.json").read_text())
    assert report["status"] == "stopped" and report["newest_checkpoint"]
    first = (run / "out" / "trial-0" / "train_report.json").stat().st_mtime_ns
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming trial(s) left running" in again.stderr
    records = read_jsonl(folder / "results.jsonl")
    assert [r["trial"] for r in records] == [0, 1, 2] and all(r["state"] == "complete" for r in records)
    assert (run / "out" / "trial-0" / "train_report.json").stat().st_mtime_ns == first  # not retrained
    resumed = json.loads((trial1 / "train_report.json").read_text())
    assert resumed["resumed_from"] and resumed["global_step"] == 8
    assert [s for s, _ in losses_of(trial1)] == list(range(1, 9))  # one uninterrupted record of steps


def losses_of(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow
def test_median_pruner_stops_a_trial_that_does_not_learn(tiny_model_dir, tmp_path):
    from loft.runtime.sweep.runner import run as sweep

    run = make_bundle(tmp_path, tiny_model_dir, {**SMALL, "training.max_steps": 6, "training.eval_steps": 2},
                      n_train=12, n_eval=2, plan_extra=SOURCE,
                      trials=[{"training.learning_rate": 2e-2}, {"training.learning_rate": 1e-9}])
    bundle = load(run)
    bundle.plan["sweep"].update(metric="eval_loss", pruner="median", pruner_startup_trials=1)
    assert sweep(bundle) == 0
    records = {r["trial"]: r for r in read_jsonl(run / "out" / "sweep" / "results.jsonl")}
    assert records[0]["state"] == "complete" and records[1]["state"] == "pruned"
    assert records[1]["steps"] < 6 and "median" in records[1]["pruned"]["reason"]
    assert "pruned" in json.loads((run / "out" / "trial-1" / "train_report.json").read_text())["status"]
    assert "yes, step" in (run / "out" / "sweep" / "results.md").read_text()


def test_an_empty_eval_split_reads_as_no_eval_data(tiny_model_dir, tmp_path):
    """prepare writes prepared/eval even with no eval rows (datasets then saves no shard): train must not fail."""
    from datasets import Dataset
    from loft.runtime.train.trainer import load_prepared

    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=4, n_eval=0)
    Dataset.from_dict({"input_ids": [], "labels": []}).save_to_disk(str(run / "out" / "prepared" / "eval"))
    train, ev = load_prepared(load(run))
    assert len(train) > 0 and ev is None


@pytest.mark.slow
@pytest.mark.long
def test_sweep_under_torchrun_trains_each_trial_data_parallel(tiny_model_dir, tmp_path):
    """Two gloo processes: rank 0 drives the study and broadcasts each trial; every trial trains on both ranks
    (world size 2, global batch 2) and results.jsonl is written once, by rank 0."""
    extra = {**SOURCE, "launch.launcher": "torchrun", "derived.world_size": 2}
    run = make_bundle(tmp_path, tiny_model_dir, SMALL, n_train=6, n_eval=0, plan_extra=extra,
                      trials=[{"adapter.r": 2, "training.learning_rate": 1e-2}, {"adapter.r": 4}])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           "-m", "loft.runtime", "sweep", str(run)]
    r = subprocess.run(cmd, env=runtime_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    records = read_jsonl(run / "out" / "sweep" / "results.jsonl")
    assert [x["trial"] for x in records] == [0, 1] and all(x["world_size"] == 2 for x in records)
    for x in records:
        report = json.loads((run / x["out_dir"] / "train_report.json").read_text())
        assert (report["world_size"], report["global_batch_size"], report["global_step"]) == (2, 2, 2)
