"""`launch.sh check` (`python -m loft.runtime.check RUN_DIR`): is this machine ready for this plan?

Run first by `launch.sh` and alone on demand. It lists every problem it finds, then exits 1, instead of
letting a run die at the first one hours in: the driver's CUDA versus the lock the bundle would install,
the GPU count and each GPU's free memory versus the plan's estimated peak, free disk for the checkpoints
(size × `save_total_limit`, plus the final, merged and exported weights), and that the plan's packages
import and work on the GPU (a CUDA matmul in the plan's precision, bitsandbytes quantizing with its CUDA
library, flash-attn running, NCCL present for several GPUs). It reads plan.lock as plain JSON and imports
nothing heavy at module level, so it runs on a bare Python before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .box import Box, choose, probe, read_index, version

GIB = 1024**3


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"  {f}" for f in self.facts]
        if self.problems:
            lines.append(f"loft check: {len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("loft check: ok")
        return "\n".join(["loft check:", *lines]) + "\n"


def checkpoint_bytes(plan: dict[str, Any]) -> int | None:
    """One Trainer checkpoint: the trained weights plus the optimizer state (Adam: two fp32 moments per
    trainable parameter; 8-bit optimizers one byte each; ZeRO adds fp32 master weights). None if unknown."""
    cfg = plan["config"]
    params = (plan.get("model") or {}).get("params")
    vram = ((plan.get("estimate") or {}).get("vram") or {})
    trainable = vram.get("trainable_params")
    if not isinstance(params, int):
        return None
    full = cfg["adapter"]["type"] == "none"
    if not isinstance(trainable, int):
        trainable = params if full else None
    if trainable is None:
        return None
    weight_bytes = 4 if cfg["training"]["precision"] == "fp32" or cfg["model"]["dtype"] == "fp32" else 2
    weights = params * weight_bytes if full else trainable * 4
    opt = str(cfg["training"]["optimizer"])
    per_param = 2 if "8bit" in opt else 0 if opt == "sgd" else 4 if opt == "adafactor" else 8
    master = trainable * 4 if int(cfg["deepspeed"]["stage"] or 0) > 0 and full else 0
    return int(weights + trainable * per_param + master)


def disk_need(plan: dict[str, Any]) -> tuple[int, str] | None:
    """Bytes the run writes under output_dir, and how that was counted."""
    ckpt = checkpoint_bytes(plan)
    if ckpt is None:
        return None
    cfg = plan["config"]
    keep = int(cfg["training"].get("save_total_limit") or 1)
    params = int(plan["model"]["params"])
    full = cfg["adapter"]["type"] == "none"
    final = params * 2 if full else ckpt // 3
    extra = 0
    export = cfg.get("export") or {}
    if not full and export.get("merge"):
        extra += params * 2
    extra += params * 2 * len(export.get("formats") or [])
    total = int((ckpt * keep + final + extra) * 1.1)
    return total, (f"{keep} checkpoints × {ckpt / GIB:.1f} GiB + final {final / GIB:.1f} GiB"
                   + (f" + merged/exported {extra / GIB:.1f} GiB" if extra else "") + " + 10%")


def _free_disk(path: Path) -> int:
    node = path
    while not node.exists() and node != node.parent:
        node = node.parent
    return shutil.disk_usage(node).free


def check(root: Path, stage: str = "all", box: Box | None = None,
          disk_free: Callable[[Path], int] = _free_disk,
          importer: Callable[[str], Any] = importlib.import_module) -> Report:
    plan = json.loads((root / "plan.lock").read_text(encoding="utf-8"))
    cfg = plan["config"]
    launch = plan.get("launch") or {}
    gpus_needed = int(launch.get("gpus_per_node") or 0)
    world = int(launch.get("nodes") or 1) * max(gpus_needed, 1)
    r = Report()
    index = read_index(root)
    box = box if box is not None else (probe() if gpus_needed else Box(problem="CPU plan"))
    lock_cuda = None
    if gpus_needed:
        r.facts.append(f"driver {box.driver or '—'}, CUDA {box.cuda or '—'}, {len(box.gpus)} GPU(s) visible"
                       + (f": {box.gpus[0].name}" if box.gpus else ""))
        if box.problem:
            r.problems.append(box.problem)
        lock, name, problems = choose(index, box)
        r.problems += problems
        r.facts += [f"note: {n}" for n in box.notes]
        if lock:
            lock_cuda = index["builds"][name]["cuda"]
            r.facts.append(f"lock for this driver: {lock} (torch for CUDA {lock_cuda}, {name})")
        _gpus(plan, box, gpus_needed, r)
    else:
        r.facts.append("CPU plan (target.gpu: cpu): no GPU checks")
    _disk(plan, root, disk_free, r)
    _packages(index, cfg, gpus_needed, world, lock_cuda, stage, importer, r)
    return r


def _gpus(plan: dict[str, Any], box: Box, needed: int, r: Report) -> None:
    if box.problem:
        return
    if len(box.gpus) < needed:
        r.problems.append(f"the plan runs {needed} GPU process(es) per node, this machine shows {len(box.gpus)} "
                          "(nvidia-smi; CUDA_VISIBLE_DEVICES honoured)")
    peak = ((plan.get("estimate") or {}).get("vram") or {}).get("total_gib")
    if not isinstance(peak, int | float):
        r.facts.append("the plan has no VRAM estimate to compare free memory with")
        return
    for g in box.gpus[:needed]:
        free = g.free_mib / 1024
        if free < peak:
            r.problems.append(f"GPU {g.index} ({g.name}) has {free:.1f} GiB free of {g.total_mib / 1024:.1f}; the "
                              f"plan's estimated peak is {peak:.1f} GiB per GPU (other processes? see nvidia-smi)")
    r.facts.append(f"estimated peak {peak:.1f} GiB per GPU")


def _disk(plan: dict[str, Any], root: Path, disk_free: Callable[[Path], int], r: Report) -> None:
    need = disk_need(plan)
    out = root / str(plan["config"].get("output_dir") or "out")
    free = disk_free(out)
    if need is None:
        r.facts.append(f"disk: {free / GIB:.1f} GiB free (checkpoint size unknown: no parameter count)")
        return
    total, how = need
    r.facts.append(f"disk: {free / GIB:.1f} GiB free at {out.name}/, the run writes about {total / GIB:.1f} GiB "
                   f"({how})")
    if free < total:
        r.problems.append(f"not enough disk for the checkpoints: {free / GIB:.1f} GiB free where {out.name}/ "
                          f"lives, about {total / GIB:.1f} GiB needed ({how}); free space or lower "
                          "training.save_total_limit")


def _packages(index: dict[str, Any], cfg: dict[str, Any], gpus: int, world: int, lock_cuda: str | None,
              stage: str, importer: Callable[[str], Any], r: Report) -> None:
    missing = []
    mods: dict[str, Any] = {}
    for name in index.get("imports") or []:
        try:
            mods[name] = importer(name)
        except Exception as e:  # any import failure (missing, broken binary) is the same problem
            missing.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    if missing:
        r.problems.append("packages that do not import: " + "; ".join(missing)
                          + ": install the bundle's lock with `bash launch.sh install`")
    torch = mods.get("torch")
    if torch is None or not gpus:
        return
    built = getattr(getattr(torch, "version", None), "cuda", None)
    if not built:
        r.problems.append(f"torch {getattr(torch, '__version__', '?')} has no CUDA (a CPU build): install the "
                          "bundle's lock with `bash launch.sh install`")
        return
    if lock_cuda and version(built)[:2] != version(lock_cuda)[:2]:
        r.problems.append(f"torch here is built for CUDA {built}, the lock for this driver is CUDA {lock_cuda}: "
                          "reinstall with `bash launch.sh install`")
    if not torch.cuda.is_available():
        r.problems.append("torch cannot use a CUDA GPU (torch.cuda.is_available() is False): driver too old for "
                          f"CUDA {built}, or no GPU visible")
        return
    _functional(torch, mods, cfg, gpus, world, r)


def _functional(torch: Any, mods: dict[str, Any], cfg: dict[str, Any], gpus: int, world: int, r: Report) -> None:
    """Each package does real work on cuda:0; a failure names the package and the error."""
    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as e:
            r.problems.append(f"{what} failed on the GPU: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")

    if torch.cuda.device_count() < gpus:
        r.problems.append(f"torch sees {torch.cuda.device_count()} GPU(s), the plan needs {gpus}")
    precision = cfg["training"]["precision"]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        r.problems.append(f"{torch.cuda.get_device_name(0)} has no bf16: set training.precision: fp16")
    attempt(f"a {precision} matmul", lambda: (torch.ones(64, 64, device="cuda", dtype=dtype) @
                                               torch.ones(64, 64, device="cuda", dtype=dtype)).sum().item())
    if "bitsandbytes" in mods:
        def bnb() -> None:
            from bitsandbytes.functional import quantize_4bit

            quantize_4bit(torch.randn(64, 64, device="cuda", dtype=torch.float16), quant_type="nf4")
        attempt("bitsandbytes (4-bit quantize with its CUDA library)", bnb)
    if "flash_attn" in mods:
        def fa() -> None:
            q = torch.randn(1, 16, 2, 64, device="cuda", dtype=torch.float16)
            mods["flash_attn"].flash_attn_func(q, q, q, causal=True)
        attempt("flash-attn (flash_attn_func)", fa)
    if world > 1:
        dist = torch.distributed
        if not dist.is_available() or not dist.is_nccl_available():
            r.problems.append(f"the plan runs {world} processes but torch has no NCCL")
        else:
            r.facts.append(f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))} for {world} processes")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loft.runtime.check", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--stage", default="all", help="the stage launch.sh is about to run")
    args = ap.parse_args(argv)
    root = Path(args.run_dir).resolve()
    try:
        report = check(root, args.stage)
    except (OSError, ValueError, KeyError) as e:
        print(f"loft check: cannot read the bundle at {root}: {e}", file=sys.stderr)
        return 1
    sys.stderr.write(report.text())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
