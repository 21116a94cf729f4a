"""plan.sweep end to end through the pipeline: every trial resolved (config, derived, estimate) by the real
stages, unresolvable trials refused at build with line:col, trials that do not fit flagged, plan.md's matrix
and totals, best.yaml building to the trial's plan, the W&B export and the launch.sh sweep stage."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from loft.compiler import pipeline
from loft.compiler.commands.sweep import wandb_config
from loft.compiler.errors import ConfigError
from loft.runtime.sweep.results import best_yaml

from tests.compiler.project_factory import BASE_CONFIG, make_project, with_keys

TWO_SETS = BASE_CONFIG.replace("""    - path: data/chat.jsonl
""", """    - path: data/chat.jsonl
    - path: data/chat.jsonl
      name: again
""").replace("training:\n", "training:\n  global_batch_size: 8\n  gradient_accumulation_steps: auto\n"
             "  epochs: 1\n").replace("target:\n  gpu: cpu\n", "target:\n  gpu: cpu\nsequence:\n  packing: false\n")


def _plan(tmp_path: Path, config: str, rows: int = 40) -> dict:
    cfg = make_project(tmp_path, config, rows=rows)
    return pipeline.plan(cfg, out_dir=tmp_path / "run").plan


def test_each_trial_is_resolved_by_the_compiler(tmp_path: Path) -> None:
    """issue 11 item 4: dataset weights and micro batch sizes change each trial's derived numbers."""
    plan = _plan(tmp_path, TWO_SETS + """sweep:
  params:
    data.datasets[0].weight: [1.0, 3.0]
    training.micro_batch_size: [1, 2]
""")
    trials = plan["sweep"]["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2, 3]
    by = {(t["overrides"]["data.datasets[0].weight"], t["overrides"]["training.micro_batch_size"]): t
          for t in trials}
    assert by[(1.0, 2)]["derived"]["micro_batch_size"] == 2
    assert by[(1.0, 2)]["derived"]["gradient_accumulation_steps"] == 4  # global batch 8 kept
    assert by[(1.0, 1)]["derived"]["gradient_accumulation_steps"] == 8
    assert by[(3.0, 1)]["config"]["data"]["datasets"][0]["weight"] == 3.0
    assert by[(1.0, 1)]["derived"]["rows"] == plan["derived"]["rows"]
    assert by[(3.0, 1)]["derived"]["rows"] == by[(1.0, 1)]["derived"]["rows"]  # a blend keeps the total
    assert by[(3.0, 1)]["derived"]["total_steps"] is not None
    epochs = _plan(tmp_path / "epochs", TWO_SETS + "sweep:\n  params:\n    data.datasets[0].epochs: [1, 3]\n")["sweep"]
    assert [t["derived"]["rows"] for t in epochs["trials"]] == [80, 160]
    assert [t["derived"]["total_steps"] for t in epochs["trials"]] == [10, 20]
    for t in trials:
        assert t["config"]["output_dir"] == f"out/trial-{t['trial']}"
        assert t["estimate"]["vram"]["total_gib"] > 0 and t["fits"] is None  # CPU target: not flagged
    files = pipeline.compile(tmp_path / "cfg.yaml", tmp_path / "run")[1]
    lines = [json.loads(x) for x in files["sweep.jsonl"].decode().splitlines()]
    assert lines == trials


def test_an_override_that_cannot_resolve_is_a_build_error_at_its_line(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, TWO_SETS + """sweep:
  params:
    training.micro_batch_size: [1, 3]
""")
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg, out_dir=tmp_path / "run")
    d = e.value.diagnostics[0]
    assert "sweep trial 1 (training.micro_batch_size = 3)" in d.message and "global_batch_size 8" in d.message
    line = cfg.read_text().splitlines().index("    training.micro_batch_size: [1, 3]") + 1
    assert (d.line, d.col) == (line, 5) and d.file.endswith("cfg.yaml")


def test_trials_that_do_not_fit_are_flagged(tmp_path: Path) -> None:
    config = with_keys("""sweep:
  params:
    training.micro_batch_size: [1, 64]
""", BASE_CONFIG.replace("base: ./models/tiny", "base: meta-llama/Llama-3.1-8B-Instruct\n  revision: "
                         "0e9e39f249a16976918f6564b8830bc894c89659").replace("gpu: cpu", "gpu: H100").replace(
        "template: llama3.2\n", "template: llama3.2\nsequence:\n  max_length: 4096\n"))
    cfg = make_project(tmp_path, config)
    resolved = pipeline.plan(cfg, out_dir=tmp_path / "run")
    trials = resolved.plan["sweep"]["trials"]
    assert [t["fits"] for t in trials] == [True, False]
    flagged = [w for w in resolved.warnings if w.code == "sweep-trial-does-not-fit"]
    assert len(flagged) == 1 and "sweep trial 1" in flagged[0].message and flagged[0].line > 0
    md = pipeline.compile(cfg, tmp_path / "run")[1]["plan.md"].decode()
    assert "| 1 | `training.micro_batch_size` = 64 |" in md and "| **no** |" in md and "1 of 2 |" in md


def test_plan_md_totals_are_the_trials_estimates(tmp_path: Path) -> None:
    plan = _plan(tmp_path, with_keys("""sweep:
  steps_per_trial: 5
  params:
    training.learning_rate: [1.0e-4, 2.0e-4, 4.0e-4]
""", BASE_CONFIG.replace("gpu: cpu", "gpu: H100")))
    trials = plan["sweep"]["trials"]
    assert all(t["config"]["training"]["max_steps"] == 5 and t["derived"]["total_steps"] == 5 for t in trials)
    files = pipeline.compile(tmp_path / "cfg.yaml", tmp_path / "run")[1]
    md = files["plan.md"].decode()
    hours = sum(t["estimate"]["time"]["hours"] for t in trials)
    usd = sum(t["estimate"]["cost"]["total_usd"] for t in trials)
    assert f"| **total** | 3 trials | | {hours * 60:.1f} min | ${usd:,.2f} | 3 of 3 |" in md
    assert "5 steps per trial" in md and "train_loss (minimize)" in md


def test_bayes_plan_holds_space_seed_and_budget(tmp_path: Path) -> None:
    plan = _plan(tmp_path, with_keys("""sweep:
  method: bayes
  trials: 12
  seed: 5
  wall_time: 2h
  params:
    training.learning_rate: {min: 1.0e-5, max: 1.0e-3, log: true}
    adapter.r: [8, 16]
"""))
    s = plan["sweep"]
    assert (s["method"], s["seed"], s["budget"]["trials"], s["budget"]["wall_time_s"]) == ("bayes", 5, 12, 7200.0)
    assert s["trials"] == [] and s["base_trial"]["config"]["output_dir"] == "out/trial-N"
    assert s["space"]["training.learning_rate"]["log"] is True
    assert plan["versions"]["optuna"]
    cfg = make_project(tmp_path, with_keys("""sweep:
  method: bayes
  trials: 4
  params:
    sequence.max_length: [128, 256]
"""))
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg, out_dir=tmp_path / "run")
    assert e.value.diagnostics[0].code == "sweep-not-runtime-key" and e.value.diagnostics[0].line > 0


def test_best_yaml_builds_to_the_trials_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, TWO_SETS + """sweep:
  steps_per_trial: 3
  params:
    data.datasets[1].weight: [1.0, 2.0]
    adapter.dropout: [0.0, 0.1]
""")
    trial = plan["sweep"]["trials"][3]
    best = {"trial": 3, "params": trial["overrides"], "value": 1.5, "state": "complete"}
    (tmp_path / "best.yaml").write_text(best_yaml(plan, best, plan["sweep"]), encoding="utf-8")
    again = pipeline.plan(tmp_path / "best.yaml", out_dir=tmp_path / "run").plan
    assert again["sweep"] is None
    mine, theirs = dict(again["config"]), dict(trial["config"])
    for k in ("sweep", "output_dir"):
        mine.pop(k), theirs.pop(k)
    assert mine == theirs and again["derived"] == trial["derived"]


def test_wandb_export_is_the_same_search(tmp_path: Path) -> None:
    plan = _plan(tmp_path, with_keys("""sweep:
  method: random
  trials: 6
  params:
    training.learning_rate: {min: 1.0e-5, max: 1.0e-3, log: true}
    adapter.r: {min: 4, max: 32, step: 4}
    adapter.dropout: [0.0, 0.05]
"""))
    w = wandb_config(plan["sweep"], "t")
    assert w["method"] == "random" and w["run_cap"] == 6
    assert w["name"] == "t-sweep"  # the W&B group the trials' runs log into (runtime/sweep/wandb_runs.py)
    assert w["metric"] == {"name": "train/loss", "goal": "minimize"}
    assert w["parameters"]["training.learning_rate"] == {"distribution": "log_uniform_values", "min": 1e-5,
                                                         "max": 1e-3}
    assert w["parameters"]["adapter.r"] == {"distribution": "q_uniform", "min": 4, "max": 32, "q": 4}
    assert w["parameters"]["adapter.dropout"] == {"values": [0.0, 0.05]}
    assert w["early_terminate"]["type"] == "hyperband"
    out = tmp_path / "wandb.yaml"
    r = subprocess.run(["loftc", "sweep", "export", "--wandb", str(tmp_path / "cfg.yaml"), "-o", str(out)],
                       capture_output=True, text=True, env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:"
                                                            f"{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    from ruamel.yaml import YAML

    assert YAML(typ="safe").load(out.read_text()) == w


def test_launch_sh_sweep_prepares_then_runs_the_sweep_stage(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, with_keys("""sweep:
  params:
    adapter.r: [2, 4]
"""))
    pipeline.build(cfg, tmp_path / "run")
    log = tmp_path / "calls.log"
    fake = tmp_path / "py"
    fake.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == - ]]; then cat >/dev/null; exit 0; fi\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    r = subprocess.run(["bash", str(tmp_path / "run" / "launch.sh"), "sweep"], capture_output=True, text=True,
                       env={**os.environ, "PYTHON": str(fake)})
    assert r.returncode == 0, r.stderr
    real = str((tmp_path / "run").resolve())
    assert log.read_text().splitlines() == [f"-m loft.runtime.check {real} --stage sweep",
                                            f"-m loft.runtime prepare {real}", f"-m loft.runtime sweep {real}"]
    assert "running the base config" not in r.stderr
