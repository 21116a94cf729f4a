"""Kernels (plugins), tracking (wandb, run name, hub upload) and outputs."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from ...names import safe_name
from .context import Translation, off


def kernels(t: Translation) -> None:
    plugins = t.d.get("plugins") or []
    if not isinstance(plugins, list):
        t.err(["plugins"], "must be a list of plugin class paths", code="type")
        return
    liger_keys = [k for k in t.d if k.startswith("liger_")]
    has_liger = has_cce = False
    for i, p in enumerate(plugins):
        p = str(p)
        tail = p.rsplit(".", 1)[-1]
        if tail == "LigerPlugin":
            has_liger = True
        elif tail == "CutCrossEntropyPlugin":
            has_cce = True
        elif tail == "KernelsPlugin":
            t.warn(["plugins", i], "the kernels plugin swaps in faster MoE kernels (same math); loft "
                   "uses transformers' own implementation")
        elif tail in ("ExpertParallelPlugin",):
            t.err(["plugins", i], "expert parallelism is not supported")
        elif tail in ("DiffusionPlugin",):
            t.err(["plugins", i], "diffusion-LM training is not supported")
        elif tail in ("LMEvalPlugin", "SwanLabPlugin"):
            t.warn(["plugins", i], f"{tail} reports results only; loft has its own eval stage")
        else:
            t.err(["plugins", i], f"plugin {p} is not supported: loft cannot tell whether it changes "
                  "training", hint="remove it, or keep using Axolotl for this config")
    on = [k for k in liger_keys if t.d.get(k) is True]
    if has_liger:
        if on:
            t.put("training.kernels.liger", True, "plugins", *on)
            off = [k for k in liger_keys if t.d.get(k) is False]
            if off:
                t.warn([off[0]], f"loft enables Liger's full kernel set for the architecture; {', '.join(off)}"
                       " cannot be turned off one by one (the kernels compute the same function)",
                       code="axolotl-differs")
        else:
            idx = next(i for i, p in enumerate(plugins) if str(p).endswith("LigerPlugin"))
            t.warn(["plugins", idx], "the Liger plugin is listed but no liger_* option is on: it has no "
                   "effect")
    elif on:
        t.warn([on[0]], f"{', '.join(on)}: Axolotl ignores Liger options unless the LigerPlugin is listed "
               "in plugins; loft ignores them too", code="axolotl-ignored")
    cce = t.d.get("cut_cross_entropy")
    if has_cce and cce is not False:
        t.put("training.kernels.cut_cross_entropy", True, "plugins",
              *(["cut_cross_entropy"] if cce else []))
    elif cce is True:
        t.warn(["cut_cross_entropy"], "Axolotl ignores cut_cross_entropy unless the CutCrossEntropyPlugin "
               "is listed in plugins; loft ignores it too", code="axolotl-ignored")


def tracking(t: Translation) -> None:
    project = t.d.get("wandb_project")
    mode = t.d.get("wandb_mode")
    if t.d.get("use_wandb") is False or mode == "disabled":
        return
    if project:
        wb: dict[str, Any] = {"project": str(project), "api_key_env": "WANDB_API_KEY"}
        if t.d.get("wandb_entity"):
            wb["entity"] = str(t.d["wandb_entity"])
        if mode in ("online", "offline"):
            wb["mode"] = mode
        elif mode is not None:
            t.err(["wandb_mode"], f"expected online, offline or disabled, got {mode!r}", code="type")
        t.put("tracking.wandb", wb, *[k for k in ("wandb_project", "wandb_entity", "wandb_mode")
                                     if t.d.get(k)])
    for k in ("wandb_watch", "wandb_log_model"):
        if not off(t.d.get(k)) and t.d.get(k) != "false":
            t.warn([k], "not supported by loft's wandb integration (no effect on the trained model)")
    run = t.d.get("wandb_name") or t.d.get("wandb_run_id")
    if run:
        t.put("name", safe_name(str(run), "run", sep="-"),
              "wandb_name" if t.d.get("wandb_name") else "wandb_run_id")
    else:
        t.put("name", safe_name(Path(t.doc.path).stem, "run", sep="-"))
    hub = t.d.get("hub_model_id")
    if hub:
        if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", str(hub)):
            t.put("export.push_to_hub", str(hub), "hub_model_id")
        else:
            t.warn(["hub_model_id"], f"{hub!r} is not a hub repo id (org/name); nothing will be pushed")


def outputs(t: Translation) -> None:
    od = t.d.get("output_dir")
    if isinstance(od, str) and od.strip():
        p = PurePosixPath(od.strip())
        parts = [x for x in p.parts if x not in (".", "")]
        if p.is_absolute() or ".." in parts or not parts:
            t.warn(["output_dir"], f"{od!r} is outside the run bundle; loft writes to <bundle>/out",
                   code="axolotl-differs")
        else:
            t.put("output_dir", "/".join(parts), "output_dir")
    rfc = t.d.get("resume_from_checkpoint")
    if rfc:
        t.err(["resume_from_checkpoint"], "resuming from an outside checkpoint is not supported",
              hint="loft resumes from the bundle's own complete checkpoints when a run restarts")
