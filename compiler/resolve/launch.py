"""The launcher and its shape: python for one process, torchrun for several or DeepSpeed, accelerate
for FSDP; nodes, GPUs per node, and which launcher config files the bundle carries."""

from __future__ import annotations

from typing import Any

from .context import Context


def resolve_launch(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    target = cfg["target"]
    cpu = str(target["gpu"]).lower() == "cpu"
    nodes = 1 if cpu else target["nodes"]
    gpus = 0 if cpu else target["num_gpus"]
    stage = cfg["deepspeed"]["stage"]
    if cfg["fsdp"]["enabled"]:
        launcher = "accelerate"
    elif stage > 0 or nodes * max(gpus, 1) > 1 or target["kind"] in ("multi_gpu", "multi_node"):
        launcher = "torchrun"
    else:
        launcher = "python"
    return {
        "target": target["kind"],
        "launcher": launcher,
        "nodes": nodes,
        "gpus_per_node": gpus,
        "deepspeed_config": "ds_config.json" if stage > 0 else None,
        "accelerate_config": "accelerate.yaml" if cfg["fsdp"]["enabled"] else None,
    }
