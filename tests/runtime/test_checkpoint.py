"""Atomic checkpoints: only complete ones are resumed from; a kill mid-save leaves the previous one usable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from loft.runtime.train import checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import losses, make_bundle


def _complete(root: Path, step: int) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (d / checkpoint.MARKER).write_text("{}")
    return d


def test_newest_complete_skips_half_written(tmp_path):
    ck = tmp_path / "checkpoints"
    _complete(ck, 2)
    _complete(ck, 10)
    half = ck / "checkpoint-12"  # renamed without the marker cannot happen, but a foreign writer could
    half.mkdir()
    (half / "trainer_state.json").write_text("{}")
    (ck / checkpoint.STAGING / "checkpoint-14").mkdir(parents=True)  # killed mid-save
    (ck / "checkpoint-notanumber").mkdir()
    assert checkpoint.newest_complete(ck) == ck / "checkpoint-10"
    assert [p.name for p in checkpoint.complete_checkpoints(ck)] == ["checkpoint-2", "checkpoint-10"]
    assert checkpoint.newest_complete(tmp_path / "missing") is None


def test_publish_is_a_rename_and_rotate_keeps_the_newest(tmp_path):
    ck = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        staged = checkpoint.staging_dir(ck) / f"checkpoint-{step}"
        staged.mkdir(parents=True)
        (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        (staged / "weights").write_text(str(step))
        final = checkpoint.publish(ck, step)
        assert checkpoint.is_complete(final) and not staged.exists()
    # the same step again replaces the old one
    staged = checkpoint.staging_dir(ck) / "checkpoint-3"
    staged.mkdir(parents=True)
    (staged / "trainer_state.json").write_text("{}")
    (staged / "weights").write_text("again")
    checkpoint.publish(ck, 3)
    assert (ck / "checkpoint-3" / "weights").read_text() == "again"
    (ck / "checkpoint-9").mkdir()  # incomplete leftover
    removed = checkpoint.rotate(ck, keep=2)
    assert {p.name for p in removed} == {"checkpoint-1", "checkpoint-9"}
    assert [p.name for p in checkpoint.complete_checkpoints(ck)] == ["checkpoint-2", "checkpoint-3"]
    assert not checkpoint.staging_dir(ck).exists()


@pytest.mark.slow
def test_resume_after_kill_during_save_uses_previous_complete(tiny_model_dir, tmp_path):
    """A run killed while writing checkpoint-6 resumes from checkpoint-3 and still ends like a clean run."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    over = {"training.max_steps": 6, "training.save_steps": 3}
    clean = make_bundle(tmp_path / "clean", tiny_model_dir, over)
    assert run(load(clean)) == 0
    crashed = make_bundle(tmp_path / "crash", tiny_model_dir, over)
    assert run(load(crashed)) == 0
    ck = crashed / "out" / "checkpoints"
    # simulate SIGKILL during the save of step 6: its files are only partly in the staging directory
    # (or, with a foreign writer, in place without the completion marker); final/ was never written
    import shutil

    shutil.rmtree(crashed / "out" / "final")
    staged = checkpoint.staging_dir(ck) / "checkpoint-6"
    staged.parent.mkdir(parents=True, exist_ok=True)
    (ck / "checkpoint-6").rename(staged)
    (staged / "optimizer.pt").write_bytes(b"\x00truncated")
    (staged / checkpoint.MARKER).unlink()
    half = ck / "checkpoint-6"
    half.mkdir()
    (half / "trainer_state.json").write_text("{\"global_step\": 6")  # cut off mid-write
    assert checkpoint.newest_complete(ck) == ck / "checkpoint-3"

    assert run(load(crashed)) == 0
    report = json.loads((crashed / "out" / "train_report.json").read_text())
    assert report["resumed_from"].endswith("checkpoint-3") and report["status"] == "completed"
    assert not checkpoint.staging_dir(ck).exists()
    assert checkpoint.is_complete(ck / "checkpoint-6")
    got, want = losses(crashed), losses(clean)
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(got, want, strict=True))


@pytest.mark.slow
def test_rerun_after_completion_and_plan_changes(tiny_model_dir, tmp_path, capsys):
    """A completed run is not retrained by a second launch; checkpoints of a different plan are refused."""
    from loft.runtime.__main__ import main

    run_dir = make_bundle(tmp_path, tiny_model_dir, {"training.max_steps": 2, "training.save_steps": 1})
    assert main(["train", str(run_dir)]) == 0
    marker = json.loads((run_dir / "out" / "checkpoints" / "checkpoint-2" / checkpoint.MARKER).read_text())
    assert marker["step"] == 2 and len(marker["plan"]) == 64
    before = (run_dir / "out" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", str(run_dir)]) == 0
    assert "already trained with this plan" in capsys.readouterr().err
    assert (run_dir / "out" / "metrics.jsonl").read_text() == before
    # eval/export settings are not training settings: still the same plan
    plan = json.loads((run_dir / "plan.lock").read_text())
    plan["config"]["eval"]["max_new_tokens"] = 3
    (run_dir / "plan.lock").write_text(json.dumps(plan))
    assert main(["train", str(run_dir)]) == 0
    # a changed learning rate is: its checkpoints cannot be resumed silently
    plan["config"]["training"]["learning_rate"] = 1e-5
    (run_dir / "plan.lock").write_text(json.dumps(plan))
    capsys.readouterr()
    assert main(["train", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "written by a different plan" in err and "Traceback" not in err


@pytest.mark.slow
def test_real_sigkill_while_saving_every_step(tiny_model_dir, tmp_path):
    """SIGKILL a run that saves every step (so kills often land mid-save); each relaunch resumes from the newest
    complete checkpoint and the finished run equals an uninterrupted one."""
    import signal
    import subprocess
    import time

    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run
    from train_bundle import runtime_env, wait_for_step

    over = {"training.max_steps": 14, "training.save_steps": 1, "training.save_total_limit": 2}
    clean = make_bundle(tmp_path / "clean", tiny_model_dir, over)
    assert run(load(clean)) == 0
    killed = make_bundle(tmp_path / "killed", tiny_model_dir, over)
    ck = killed / "out" / "checkpoints"
    cmd = [sys.executable, "-m", "loft.runtime", "train", str(killed)]
    for target in (3, 7):
        proc = subprocess.Popen(cmd, env=runtime_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_step(killed, target, proc)
        time.sleep(0.02 * target)  # vary where in the step/save the kill lands
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        newest = checkpoint.newest_complete(ck)
        assert newest is not None and checkpoint.is_complete(newest)
    proc = subprocess.run(cmd, env=runtime_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got, want = losses(killed), losses(clean)
    assert [s for s, _ in got] == list(range(1, 15))
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(got, want, strict=True))
    assert len(checkpoint.complete_checkpoints(ck)) == 2 and not checkpoint.staging_dir(ck).exists()
