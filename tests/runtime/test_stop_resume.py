"""Save-and-quit (SIGUSR1, STOP file, Ctrl-C once/twice) and exact resume, single- and multi-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from loft.runtime.train import checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import (
    child_pids,
    env_of,
    losses,
    make_bundle,
    read_jsonl,
    runtime_env,
    wait_for_step,
)

pytestmark = pytest.mark.slow
PY = sys.executable


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    assert files, f"no safetensors in {path}"
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def _assert_same_run(a: Path, b: Path, final: str = "final") -> None:
    la, lb = losses(a), losses(b)
    assert [s for s, _ in la] == [s for s, _ in lb] == list(range(1, len(la) + 1))
    for (s, x), (_, y) in zip(la, lb, strict=True):
        assert abs(x - y) <= 1e-6, f"step {s}: {x} vs {y}"
    wa, wb = _weights(a / "out" / final), _weights(b / "out" / final)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert float((wa[k].float() - wb[k].float()).abs().max()) <= 1e-6, k


def _straight_and_stopped(tmp_path: Path, model: Path, over: dict) -> tuple[Path, Path]:
    """Two bundles of `over`: one trained straight, one sent SIGUSR1 as step 4 begins (so it stops after 4)."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run
    from transformers import TrainerCallback

    straight = make_bundle(tmp_path / "a", model, over)
    stopped = make_bundle(tmp_path / "b", model, over)

    class SignalAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGUSR1)

    assert run(load(straight)) == 0
    assert run(load(stopped), callbacks=[SignalAt()]) == 0
    return straight, stopped


def test_sigusr1_then_resume_is_exact(tiny_model_dir, tmp_path):
    """N steps straight == stopped by SIGUSR1 at step k, then resumed (losses to 1e-6, same final weights)."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    straight, stopped = _straight_and_stopped(tmp_path, tiny_model_dir,
                                              {"training.max_steps": 8, "training.save_steps": 100})
    report = json.loads((stopped / "out" / "train_report.json").read_text())
    assert report["status"] == "stopped" and report["global_step"] == 4
    assert report["stop_reason"] == "SIGUSR1 received"
    assert not (stopped / "out" / "final").exists()
    ckpt = stopped / "out" / "checkpoints" / "checkpoint-4"
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                 "trainer_state.json", "loft-complete.json"):
        assert (ckpt / name).is_file(), name
    assert run(load(stopped)) == 0
    report = json.loads((stopped / "out" / "train_report.json").read_text())
    assert report["status"] == "completed" and report["resumed_from"].endswith("checkpoint-4")
    _assert_same_run(straight, stopped)
    # the batches file reads like one run too: same sample ids per step
    assert read_jsonl(straight / "out" / "batches.jsonl") == read_jsonl(stopped / "out" / "batches.jsonl")


def _start(run: Path, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "loft.runtime", "train", str(run), *extra], env=runtime_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_stop_file_and_ctrl_c_save_and_quit(tiny_model_dir, tmp_path):
    over = {"training.max_steps": 200, "training.save_steps": 1000}
    run = make_bundle(tmp_path / "f", tiny_model_dir, over)
    proc = _start(run)
    wait_for_step(run, 2, proc)
    (run / "STOP").touch()
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "Resume with: bash" in out and "launch.sh" in out
    report = json.loads((run / "out" / "train_report.json").read_text())
    assert report["status"] == "stopped" and "STOP found" in report["stop_reason"]
    step = report["global_step"]
    assert (run / "out" / "checkpoints" / f"checkpoint-{step}" / "loft-complete.json").is_file()

    # Ctrl-C once: same save-and-quit (the resumed run also clears the old STOP file first)
    proc = _start(run)
    wait_for_step(run, step + 2, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    report = json.loads((run / "out" / "train_report.json").read_text())
    assert report["status"] == "stopped" and report["stop_reason"] == "Ctrl-C received"
    assert report["global_step"] > step + 1
    assert (run / "out" / "checkpoints" / f"checkpoint-{report['global_step']}" / "loft-complete.json").is_file()


def test_second_ctrl_c_aborts_without_saving(tiny_model_dir, tmp_path):
    import threading

    run = make_bundle(tmp_path / "c", tiny_model_dir, {"training.max_steps": 500, "training.save_steps": 1000})
    proc = _start(run, LOFT_SIGINT_DEBOUNCE_S="0")  # see test_sigint_echo_is_debounced for the default
    lines: list[str] = []
    acknowledged = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C received" in line:
                acknowledged.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for_step(run, 2, proc)
    proc.send_signal(signal.SIGINT)
    # send the second only once the first was handled: two pending SIGINTs would merge into one
    assert acknowledged.wait(60), "".join(lines)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 130, out
    assert "aborting without saving" in out
    # The first Ctrl-C asked for a save at the end of the step; if that save was already under way it may
    # have been published. Whatever is published is complete, and the abort saves nothing of its own.
    published = list((run / "out").glob("checkpoints/checkpoint-*"))
    assert all(checkpoint.is_complete(p) for p in published), published
    assert len(published) <= 1
    assert not (run / "out" / "final").exists()


def test_sigint_echo_is_debounced(monkeypatch):
    """Under torchrun a worker gets the terminal's SIGINT and torchrun's forwarded copy: one Ctrl-C, not two."""
    from loft.runtime.train import stop as stop_mod

    clock = [100.0]
    monkeypatch.setattr(stop_mod.time, "monotonic", lambda: clock[0])
    req = stop_mod.StopRequest()
    req._on_int(signal.SIGINT, None)
    assert req.reason == "Ctrl-C received" and req.interrupts == 1
    clock[0] += 0.1
    req._on_int(signal.SIGINT, None)  # the echo: ignored
    assert req.interrupts == 1
    clock[0] += 1.0
    with pytest.raises(KeyboardInterrupt):
        req._on_int(signal.SIGINT, None)  # a real second Ctrl-C: abort


def _torchrun(run: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
         "-m", "loft.runtime", "train", str(run)],
        env=runtime_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _ds_bundle(root: Path, model: Path, stage: int, adapter: str, max_steps: int) -> Path:
    run = make_bundle(root, model, {"training.max_steps": max_steps, "training.save_steps": 1000,
                                    "adapter.type": adapter, "deepspeed.stage": stage},
                      plan_extra={"launch.deepspeed_config": "ds_config.json" if stage else None,
                                  "launch.launcher": "deepspeed" if stage else "torchrun",
                                  "derived.world_size": 2})
    zero = {"stage": stage, "overlap_comm": False, "contiguous_gradients": True, "reduce_bucket_size": "auto",
            "offload_optimizer": {"device": "none"}}
    if stage == 3:
        zero.update({"offload_param": {"device": "none"}, "stage3_gather_16bit_weights_on_model_save": True,
                     "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto"})
    if stage:
        (run / "ds_config.json").write_text(json.dumps({
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": False},
            "zero_optimization": zero, "steps_per_print": 1000000}))
    return run


@pytest.mark.long
@pytest.mark.parametrize(("stage", "adapter"), [(0, "lora"), (2, "lora"), (3, "none")],
                         ids=["ddp-gloo-lora", "zero2-lora", "zero3-full"])
def test_two_processes_agree_on_the_stop_step_and_resume_exactly(tiny_model_dir, tmp_path, stage, adapter):
    """Only rank 1 gets SIGUSR1; both ranks stop at the same step (no hang), save, and resume exactly."""
    straight = _ds_bundle(tmp_path / "s", tiny_model_dir, stage, adapter, 10)
    proc = _torchrun(straight)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]

    run = _ds_bundle(tmp_path / "r", tiny_model_dir, stage, adapter, 10)
    proc = _torchrun(run)
    try:
        wait_for_step(run, 2, proc, timeout=300)
        workers = {env_of(p).get("RANK"): p for p in child_pids(proc.pid)}
        assert set(workers) >= {"0", "1"}, workers
        os.kill(workers["1"], signal.SIGUSR1)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    report = json.loads((run / "out" / "train_report.json").read_text())
    assert report["status"] == "stopped" and report["world_size"] == 2
    step = report["global_step"]
    assert step < 10
    ckpt = run / "out" / "checkpoints" / f"checkpoint-{step}"
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    if stage:  # DeepSpeed really ran: its engine checkpoint (sharded optimizer state) is there
        assert list(ckpt.glob("global_step*/*optim_states.pt"))
    if stage == 3:  # ZeRO-3: the 16-bit-gather consolidated weights next to the shards
        assert (ckpt / "model.safetensors").is_file()
    proc = _torchrun(run)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    _assert_same_run(straight, run)


def test_logging_window_spanning_a_stop_logs_the_same_loss(tiny_model_dir, tmp_path):
    """logging_steps 3, stopped after step 4: the window 4-6 logs the straight run's mean loss, since the
    checkpoint carries the Trainer's unlogged running loss (it used to average steps 5-6 only)."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    over = {"training.max_steps": 9, "training.save_steps": 100, "training.logging_steps": 3}
    straight, stopped = _straight_and_stopped(tmp_path, tiny_model_dir, over)
    ckpt = stopped / "out" / "checkpoints" / "checkpoint-4"
    window = checkpoint.load_log_window(ckpt, 0)
    assert window is not None and window[1] == 3 and window[0] > 0  # step 4's loss, unlogged at the stop
    assert run(load(stopped)) == 0
    la, lb = losses(straight), losses(stopped)
    assert [s for s, _ in la] == [s for s, _ in lb] == [3, 6, 9]
    for (s, x), (_, y) in zip(la, lb, strict=True):
        assert abs(x - y) <= 1e-6, f"window ending at step {s}: {x} straight vs {y} stopped and resumed"
