"""`launch.sh check` on a CPU box with fakes: a fake nvidia-smi on PATH (driver, CUDA version, GPUs, free
memory), a fake torch/bitsandbytes for the GPU-only paths. Every problem is listed, and the exit is 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from loft.compiler.bundle import write_bundle
from loft.compiler.render import render_bundle
from loft.runtime import box as boxmod
from loft.runtime.check import check, checkpoint_bytes, disk_need

from tests.compiler.plan_fixture import sample_plan

FAKE_SMI = """#!/usr/bin/env bash
# stands in for nvidia-smi: FAKE_GPUS GPUs with FAKE_FREE MiB free, driver FAKE_DRIVER, CUDA FAKE_CUDA
if [[ "${1:-}" == --query-gpu=* ]]; then
  for ((i = 0; i < ${FAKE_GPUS:-1}; i++)); do
    echo "$i, NVIDIA H100 80GB HBM3, 81559, ${FAKE_FREE:-80000}, ${FAKE_DRIVER:-580.65.06}"
  done
else
  echo "| NVIDIA-SMI ${FAKE_DRIVER:-580.65.06}   Driver Version: ${FAKE_DRIVER:-580.65.06}   CUDA Version: ${FAKE_CUDA:-13.0} |"
fi
"""
GIB = 1024**3


def _bundle(tmp: Path, gpus: int = 2, **cfg: Any) -> Path:
    plan = sample_plan(launch={"target": "multi_gpu", "launcher": "torchrun", "nodes": 1, "gpus_per_node": gpus,
                               "deepspeed_config": None, "accelerate_config": None})
    plan["estimate"]["vram"]["total_gib"] = 21.1
    plan["estimate"]["vram"]["trainable_params"] = 10_000
    for key, value in cfg.items():
        plan["config"][key].update(value)
    run = tmp / "run"
    write_bundle(run, render_bundle(plan, {}), force=False)
    return run


def _smi(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    return bin_dir


def _probe(tmp: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> boxmod.Box:
    monkeypatch.setenv("PATH", f"{_smi(tmp)}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return boxmod.probe()


def test_probe_reads_driver_cuda_and_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = _probe(tmp_path, monkeypatch, FAKE_GPUS="4", FAKE_FREE="1024", FAKE_DRIVER="570.86.10", FAKE_CUDA="12.8")
    assert box.driver == "570.86.10" and box.cuda == "12.8" and len(box.gpus) == 4 and box.problem is None
    assert box.gpus[0].free_mib == 1024 and box.gpus[0].name == "NVIDIA H100 80GB HBM3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert [g.index for g in boxmod.probe().gpus] == [1, 3]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert "no nvidia-smi" in str(boxmod.probe().problem)


def _index(**builds: str | None) -> dict[str, Any]:
    return {"target_cuda": "auto", "default": "cu130",
            "builds": {n: {"cuda": f"{n[2:4]}.{n[4:]}", "file": f, "index": None} for n, f in builds.items()}}


def test_lock_is_the_newest_build_the_driver_runs() -> None:
    index = _index(cu126="requirements/train-cu126.lock", cu128="requirements/train-cu128.lock",
                   cu130="requirements.lock")
    for cuda, want in (("13.0", "cu130"), ("13.2", "cu130"), ("12.9", "cu128"), ("12.8", "cu128"), ("12.6", "cu126")):
        lock, name, problems = boxmod.choose(index, boxmod.Box(driver="x", cuda=cuda))
        assert (name, problems) == (want, []), cuda
        assert lock == index["builds"][want]["file"]
    lock, name, problems = boxmod.choose(index, boxmod.Box(driver="535.1", cuda="12.2"))
    assert lock is None and "supports CUDA up to 12.2" in problems[0] and "12.6" in problems[0]
    # only cu130 locked here: an older driver is told what to do, naming the builds that would fit
    lock, _, problems = boxmod.choose(_index(cu126=None, cu128=None, cu130="requirements.lock"),
                                      boxmod.Box(driver="570.86", cuda="12.8"))
    assert lock is None and len(problems) == 1 and "update the driver" in problems[0]
    assert "cu126, cu128" in problems[0] and "make lock" in problems[0]


def test_every_problem_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _bundle(tmp_path, gpus=2, training={"save_total_limit": 3})
    box = _probe(tmp_path, monkeypatch, FAKE_GPUS="1", FAKE_FREE="10240", FAKE_DRIVER="570.86.10", FAKE_CUDA="12.8")
    missing = {"peft", "datasets"}

    def importer(name: str) -> Any:
        if name in missing:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return SimpleNamespace(__version__="x", version=SimpleNamespace(cuda=None)) if name == "torch" else object()

    report = check(run, box=box, disk_free=lambda p: 1024, importer=importer)
    text = report.text()
    problems = report.problems
    assert any("supports CUDA up to 12.8" in p for p in problems)
    assert any("runs 2 GPU process(es) per node, this machine shows 1" in p for p in problems)
    assert any("GPU 0 (NVIDIA H100 80GB HBM3) has 10.0 GiB free" in p and "21.1 GiB" in p for p in problems)
    assert any("not enough disk" in p and "save_total_limit" in p for p in problems)
    assert any("do not import: datasets" in p and "peft" in p for p in problems)
    assert any("a CPU build" in p for p in problems)
    assert f"{len(problems)} problem(s)" in text and len(problems) == 6


def test_gpu_functional_checks_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bitsandbytes that imports but cannot quantize on the GPU (its CPU library loaded) is a problem; so
    is torch built for another CUDA than the lock, and a multi-GPU plan without NCCL."""
    run = _bundle(tmp_path, gpus=2, adapter={"type": "qlora"})
    box = _probe(tmp_path, monkeypatch, FAKE_GPUS="2")
    calls: list[str] = []

    class Cuda:
        def is_available(self) -> bool:
            return True

        def device_count(self) -> int:
            return 2

        def is_bf16_supported(self) -> bool:
            return True

    class Tensor:
        def __matmul__(self, other: Any) -> Tensor:
            calls.append("matmul")
            return self

        def sum(self) -> Tensor:
            return self

        def item(self) -> float:
            return 1.0

    fake_torch = SimpleNamespace(__version__="2.13.0", version=SimpleNamespace(cuda="12.8"), cuda=Cuda(),
                                 bfloat16="bf16", float16="fp16", float32="fp32", ones=lambda *a, **k: Tensor(),
                                 randn=lambda *a, **k: Tensor(),
                                 distributed=SimpleNamespace(is_available=lambda: True, is_nccl_available=lambda: False))

    def quantize_4bit(*a: Any, **k: Any) -> None:
        raise RuntimeError("libbitsandbytes_cpu.so: no CUDA kernels")

    monkeypatch.setitem(sys.modules, "bitsandbytes", SimpleNamespace())
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", SimpleNamespace(quantize_4bit=quantize_4bit))
    mods = {"torch": fake_torch}
    report = check(run, box=box, disk_free=lambda p: 10**15, importer=lambda n: mods.get(n, sys.modules.get(n, object())))
    problems = report.problems
    assert calls == ["matmul"]
    assert any("built for CUDA 12.8, the lock for this driver is CUDA 13.0" in p for p in problems)
    assert any(p.startswith("bitsandbytes (4-bit quantize") and "no CUDA kernels" in p for p in problems)
    assert any("torch has no NCCL" in p for p in problems)
    assert len(problems) == 3, problems


def test_checkpoint_size_counts_weights_and_optimizer() -> None:
    plan = sample_plan()
    plan["model"]["params"] = 8_000_000_000
    plan["estimate"]["vram"]["trainable_params"] = 40_000_000
    assert checkpoint_bytes(plan) == 40_000_000 * (4 + 8)  # fp32 adapter + two Adam moments
    plan["config"]["adapter"]["type"] = "none"
    plan["estimate"]["vram"]["trainable_params"] = 8_000_000_000
    plan["config"]["deepspeed"]["stage"] = 3
    assert checkpoint_bytes(plan) == 8_000_000_000 * (2 + 8 + 4)  # bf16 weights, Adam, fp32 master
    need = disk_need(plan)
    assert need is not None and "3 checkpoints" in need[1]
    plan["model"]["params"] = None
    assert checkpoint_bytes(plan) is None and disk_need(plan) is None


def test_launch_sh_check_with_a_fake_driver_exits_1_listing_problems(tmp_path: Path) -> None:
    """End to end: `bash launch.sh check` with the real interpreter, torch (the CPU build here) and the
    fake nvidia-smi of an old driver."""
    run = _bundle(tmp_path, gpus=1)
    index = json.loads((run / "requirements" / "locks.json").read_text())
    index["imports"] = ["torch"]  # keep the test fast: importing torch alone is enough here
    (run / "requirements" / "locks.json").write_text(json.dumps(index))
    env = {**os.environ, "PATH": f"{_smi(tmp_path)}:{os.environ['PATH']}", "PYTHON": sys.executable,
           "FAKE_DRIVER": "550.54.15", "FAKE_CUDA": "12.4"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run(["bash", str(run / "launch.sh"), "check"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "driver 550.54.15, CUDA 12.4, 1 GPU(s) visible" in r.stderr
    assert "supports CUDA up to 12.4" in r.stderr and "a CPU build" in r.stderr
    assert "problem(s):" in r.stderr
    r = subprocess.run([sys.executable, "-m", "loft.runtime.box", "lock", str(run)], capture_output=True, text=True,
                       env={**env, "FAKE_CUDA": "13.0", "PYTHONPATH": str(run)}, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "requirements.lock", r.stderr
