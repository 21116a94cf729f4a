"""`loft STAGE RUN_DIR` / `python -m loft.runtime`: fast help, clear errors for broken bundles, --trial."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from loft.runtime.__main__ import main
from loft.runtime.plan import PlanError, load, with_trial

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle, runtime_env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loft.runtime", *args], env=runtime_env(), capture_output=True,
                          text=True, timeout=120)


def test_help_is_instant_and_lists_stages():
    t = time.monotonic()
    proc = _cli("--help")
    assert proc.returncode == 0
    assert time.monotonic() - t < 5  # no torch/transformers import for --help (about 0.1 s unloaded)
    for stage in ("prepare", "train", "eval", "merge", "export", "debug-tokens"):
        assert stage in proc.stdout
    # and --help really imports nothing heavy
    code = ("import sys; from loft.runtime.__main__ import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=runtime_env())
    assert out.stdout.strip().endswith("[]")


def test_no_stage_is_usage(capsys):
    assert main([]) == 2


def test_missing_and_broken_bundles_are_one_clear_line(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "no plan.lock" in err and "Traceback" not in err
    (tmp_path / "plan.lock").write_text("{not json")
    assert main(["eval", str(tmp_path)]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    (tmp_path / "plan.lock").write_text(json.dumps({"format": 9}))
    assert main(["merge", str(tmp_path)]) == 1
    assert "format 9" in capsys.readouterr().err


@pytest.mark.slow
def test_stage_errors_exit_1_without_traceback(tiny_model_dir, tmp_path):
    run = make_bundle(tmp_path, tiny_model_dir, n_eval=0)
    import shutil

    shutil.rmtree(run / "out" / "prepared")
    proc = _cli("train", str(run))
    assert proc.returncode == 1 and "run the prepare stage first" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("merge", str(run))
    assert proc.returncode == 1 and "run the train stage first" in proc.stderr
    proc = _cli("export", str(run))
    assert proc.returncode == 1 and "nothing to export" in proc.stderr


def test_trial_runs_its_resolved_plan_in_its_own_output_dir(tiny_model_dir, tmp_path):
    run = make_bundle(tmp_path, tiny_model_dir, trials=[{"training.learning_rate": 1e-4, "adapter.r": 2},
                                                        {"training.learning_rate": 3e-4, "adapter.r": 8}])
    base = load(run)
    t1 = with_trial(base, 1)
    assert t1.config == base.plan["sweep"]["trials"][1]["config"]  # the compiler's record, as it is
    assert t1.config["training"]["learning_rate"] == 3e-4 and t1.config["adapter"]["r"] == 8
    assert t1.derived == base.plan["sweep"]["trials"][1]["derived"]
    assert base.config["training"]["learning_rate"] == 5e-3  # the loaded plan is not mutated
    assert t1.out == run / "out" / "trial-1" and t1.base_out == run / "out"
    assert t1.prepared == run / "out" / "prepared"  # shared unless the trial prepared its own
    with pytest.raises(PlanError, match=r"trials: 0\.\.1"):
        with_trial(base, 5)
    assert main(["train", str(run), "--trial", "7"]) == 1


def test_trial_without_a_sweep_is_a_plan_error(tiny_model_dir, tmp_path):
    run = make_bundle(tmp_path, tiny_model_dir, n_train=4, n_eval=0)
    with pytest.raises(PlanError, match="no sweep"):
        with_trial(load(run), 0)


@pytest.mark.slow
def test_trial_trains_into_its_own_directory(tiny_model_dir, tmp_path):
    run = make_bundle(tmp_path, tiny_model_dir, {"training.max_steps": 2}, trials=[{"adapter.r": 2}])
    proc = _cli("train", str(run), "--trial", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = json.loads((run / "out" / "trial-0" / "final" / "adapter_config.json").read_text())
    assert cfg["r"] == 2
    assert (run / "out" / "trial-0" / "metrics.jsonl").is_file() and not (run / "out" / "final").exists()


def test_later_stages_skip_after_a_stopped_train(tiny_model_dir, tmp_path, capsys):
    """launch.sh runs every stage; after save-and-quit (exit 0) eval/merge/export say why they skip."""
    run = make_bundle(tmp_path, tiny_model_dir, n_train=4, n_eval=0)
    (run / "out" / "train_report.json").write_text(json.dumps({"status": "stopped", "global_step": 7}))
    for stage in ("eval", "merge", "export"):
        assert main([stage, str(run)]) == 0
        err = capsys.readouterr().err
        assert f"{stage} skipped: training was stopped at step 7" in err and "launch.sh" in err
    (run / "out" / "train_report.json").write_text(json.dumps({"status": "completed", "global_step": 7}))
    assert main(["merge", str(run)]) == 1  # completed but no final/: the usual error
    assert "run the train stage first" in capsys.readouterr().err
