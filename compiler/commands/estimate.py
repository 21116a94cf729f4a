"""`loftc estimate cfg.yaml`: will it fit, on what, how long, what it costs — before renting anything.

Goes through the same stages as `loftc build` up to resolve (`pipeline.plan(..., estimate=False)`), then
runs the estimator with the command line's overrides. Prints the component table, or with --json one
object (the plan's `estimate` member: `vram.total_gib`, `vram.components`, `time`, `cost`, `warnings`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError, did_you_mean


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate", help="peak VRAM per GPU, training time and cost of a config, before a run",
        description="Estimate peak device memory per GPU (by component and phase), whether it fits each GPU of "
                    "the catalog, the largest micro batch that fits, training time and cost per provider. "
                    "Needs no GPU, no weights and no download (hub models come from the built-in catalog).")
    p.add_argument("config", type=Path, help="the loft or Axolotl YAML config")
    p.add_argument("--gpu", default=None, help="GPU to size for (a name from `loftc gpus`; default target.gpu)")
    p.add_argument("--num-gpus", type=int, default=None, help="GPUs per node (default target.num_gpus)")
    p.add_argument("--provider", default=None, help="only this provider's prices (a key from `loftc gpus --providers`)")
    p.add_argument("--micro-batch", type=int, default=None, help="micro batch size per GPU (default from the config)")
    p.add_argument("--dialect", choices=("loft", "axolotl"), default=None, help="override dialect detection")
    p.add_argument("--json", action="store_true", help="print the estimate as one JSON object")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config key, as for `loftc build --set` (repeatable)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..estimate import catalog, estimate_plan
    from ..estimate.report import to_text
    from ..pipeline import plan

    gpu = provider = None
    if args.gpu is not None:
        gpu = catalog.gpu_name(args.gpu)
        if gpu is None:
            names = [*catalog.gpus()]
            raise UsageError(f"unknown GPU {args.gpu!r} (known: {', '.join(names)}) "
                             f"{did_you_mean(args.gpu, names)}".rstrip())
    if args.provider is not None:
        provider = catalog.provider_name(args.provider)
        if provider is None:
            names = [*catalog.providers()]
            raise UsageError(f"unknown provider {args.provider!r} (known: {', '.join(names)}) "
                             f"{did_you_mean(args.provider, names)}".rstrip())
    for flag, value in (("--num-gpus", args.num_gpus), ("--micro-batch", args.micro_batch)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, not {value}")
    from .. import overrides

    resolved = plan(args.config, dialect=args.dialect, estimate=False,
                    overrides=overrides.parse(args.overrides) or None)
    est = estimate_plan(resolved.plan, gpu=gpu, num_gpus=args.num_gpus, provider=provider,
                        micro_batch=args.micro_batch)
    if args.json:
        print(json.dumps({**est, "ok": True}, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        model = resolved.plan.get("model") or {}
        name = model.get("id") or model.get("path") or "model"
        params = model.get("params")
        print(f"{args.config}: {name}" + (f" ({params / 1e9:.2f}B parameters)" if params else ""))
        print(to_text(est), end="")
    return 0
