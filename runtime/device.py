"""The device is part of the contract: before training, the machine is compared with the plan.

The plan says how many GPUs of which kind each node has (`launch.gpus_per_node`, `config.target.gpu`);
a machine without a GPU, with fewer GPUs, or with another GPU model stops the run with the reason and the
override (`--allow-device-mismatch`, or LOFT_ALLOW_DEVICE_MISMATCH=1), so a plan for an H100 never trains
silently on a CPU. A CPU plan (`target.gpu: cpu`) runs on the CPU even where a GPU is visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

ALLOW_ENV = "LOFT_ALLOW_DEVICE_MISMATCH"


@dataclass(frozen=True)
class Machine:
    """What the runtime sees: visible CUDA devices and the first one's name ('' without a GPU)."""

    gpus: int
    name: str


def detect() -> Machine:
    import torch

    if not torch.cuda.is_available():
        return Machine(0, "")
    return Machine(torch.cuda.device_count(), str(torch.cuda.get_device_name(0)))


def allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes")


def mismatch(plan: dict[str, Any], machine: Machine) -> str | None:
    """Why this machine is not the one the plan was compiled for, or None."""
    want = int(plan["launch"]["gpus_per_node"])
    gpu = str(plan["config"]["target"]["gpu"])
    if want == 0:
        return None
    if machine.gpus == 0:
        return f"the plan trains on {want} × {gpu} per node, but no CUDA GPU is visible on this machine"
    if machine.gpus < want:
        return (f"the plan trains on {want} GPUs per node (launch.gpus_per_node), but only {machine.gpus} "
                "are visible")
    if not _same_model(gpu, machine.name):
        return (f"the plan was compiled for {gpu} (target.gpu: its VRAM/time estimate and batch shape), "
                f"but this machine has {machine.name}")
    return None


def _same_model(planned: str, seen: str) -> bool:
    """'H100' matches 'NVIDIA H100 80GB HBM3'; catalog names are the model part of the CUDA device name."""
    seen_words = seen.lower().replace("-", " ")
    return all(word in seen_words for word in planned.lower().replace("-", " ").split())


def check(plan: dict[str, Any], machine: Machine | None = None, allow: bool = False) -> bool:
    """Raise unless the machine matches the plan (or the override is given); returns whether to use the GPU."""
    from .train.model import StageError

    machine = machine if machine is not None else detect()
    why = mismatch(plan, machine)
    if why is not None and not (allow or allowed()):
        raise StageError(f"{why}. Run the bundle on the machine it was built for, rebuild it for this one "
                         f"(target.gpu / target.num_gpus), or pass --allow-device-mismatch (or set {ALLOW_ENV}=1) "
                         "to train here anyway")
    if why is not None:
        print(f"[loft] warning: {why}; continuing ({ALLOW_ENV})", flush=True)
    return int(plan["launch"]["gpus_per_node"]) > 0 and machine.gpus > 0
