"""`loftc sweep export --wandb CONFIG|RUN_DIR`: the plan's sweep as an equivalent W&B sweep YAML.

The same method, metric, search space and budget, in W&B's sweep format (`wandb sweep sweep.yaml` shows it
in W&B's sweep UI; loft itself runs the trials with `bash launch.sh sweep` and logs them as one W&B group).
W&B has no median pruner: a pruned loft sweep exports `early_terminate: hyperband`, its closest match.
W&B parameter names are `[A-Za-z_][A-Za-z0-9_.-]*`: a list index `data.datasets[0].weight` is written
`data.datasets.0.weight`.
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError

METRICS = {"eval_loss": "eval/loss", "train_loss": "train/loss"}  # as transformers' WandbCallback logs them


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sweep", help="sweep tools: export the sweep as a W&B sweep config",
                              description="Export a config's (or a bundle's) sweep in another tool's format.")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    e = sub.add_parser("export", help="write the sweep as a W&B sweep YAML",
                       description="Write the sweep (method, metric, space, budget) as a W&B sweep YAML.")
    e.add_argument("source", type=Path, help="a loft/Axolotl config, or a bundle directory (holds plan.lock)")
    e.add_argument("--wandb", action="store_true", required=True, help="W&B sweep format (the only one so far)")
    e.add_argument("-o", "--output", type=Path, default=None, help="write here instead of stdout")
    e.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    sweep, name = _sweep_of(args.source)
    if not sweep:
        raise UsageError(f"{args.source}: no sweep in this config (add a `sweep:` section)")
    text = wandb_yaml(sweep, name)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


def _sweep_of(source: Path) -> tuple[dict[str, Any] | None, str]:
    if source.is_dir():
        lock = source / "plan.lock"
        if not lock.is_file():
            raise UsageError(f"{source}: no plan.lock here (give a config file or a bundle directory)")
        plan = json.loads(lock.read_text(encoding="utf-8"))
    else:
        from ..pipeline import plan as make_plan

        plan = make_plan(source, estimate=False).plan
    return plan.get("sweep"), str(plan.get("name") or "")


def wandb_config(sweep: dict[str, Any], name: str) -> dict[str, Any]:
    from loft.runtime.sweep.space import grid_values

    params: dict[str, Any] = {}
    for path, e in sweep["space"].items():
        key = re.sub(r"\[(\d+)\]", r".\1", path)
        if e["type"] == "categorical" or (sweep["method"] == "grid" and e.get("step") is not None):
            params[key] = {"values": grid_values(e)}
        elif e["type"] == "int":
            params[key] = {"distribution": "q_uniform" if (e.get("step") or 1) != 1 else "int_uniform",
                           "min": e["low"], "max": e["high"], **({"q": e["step"]} if (e.get("step") or 1) != 1 else {})}
        elif e["log"]:
            params[key] = {"distribution": "log_uniform_values", "min": e["low"], "max": e["high"]}
        elif e.get("step") is not None:
            params[key] = {"distribution": "q_uniform", "min": e["low"], "max": e["high"], "q": e["step"]}
        else:
            params[key] = {"distribution": "uniform", "min": e["low"], "max": e["high"]}
    out: dict[str, Any] = {"name": f"{name}-sweep" if name else "sweep", "method": sweep["method"],
                           "metric": {"name": METRICS[sweep["metric"]], "goal": sweep["direction"]},
                           "parameters": params}
    trials = sweep["budget"]["trials"] if sweep["method"] != "grid" else len(sweep["trials"])
    if trials:
        out["run_cap"] = trials
    if sweep["pruner"] != "none":
        out["early_terminate"] = {"type": "hyperband", "min_iter": 1}
    return out


def wandb_yaml(sweep: dict[str, Any], name: str) -> str:
    from ruamel.yaml import YAML

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    buf = io.StringIO()
    y.dump(wandb_config(sweep, name), buf)
    head = ("# W&B sweep equivalent to this loft sweep (loftc sweep export --wandb). loft runs the trials itself\n"
            "# with `bash launch.sh sweep`; this file describes the same search for W&B's sweep tools.\n")
    return head + buf.getvalue()
