"""`loftc build CONFIG -o RUN_DIR`: compile a config into a run bundle."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ConfigError, Diagnostic


def add_parser(sub: Any) -> None:
    p = sub.add_parser("build", help="compile a config into a run bundle",
                       description="Compile CONFIG into a locked, self-contained run bundle (plan.lock, launch.sh, ...).")
    p.add_argument("config", help="a loft or Axolotl YAML config")
    p.add_argument("-o", "--out", default="run", help="bundle directory (default: run)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty directory that is not a loft bundle")
    p.add_argument("--dialect", choices=("loft", "axolotl"), default=None, help="skip dialect detection")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config key (YAML value; repeatable), e.g. --set training.learning_rate=1e-4 "
                        "--set data.datasets[0].weight=2; recorded in plan.lock as source.overrides")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")


def warning_printer(strict: bool, seen: list[Diagnostic] | None = None) -> Any:
    """The pipeline's warning hook: print warnings (and keep them in `seen`), or raise them as errors
    under --strict."""

    def hook(warnings: list[Diagnostic]) -> None:
        if seen is not None:
            seen.extend(warnings)
        if strict and warnings:
            from dataclasses import replace

            raise ConfigError([replace(w, severity="error", hint=(w.hint + "; " if w.hint else "") + "--strict")
                               for w in warnings])
        for w in warnings:
            print(w.render(), file=sys.stderr)

    return hook


def run(args: argparse.Namespace) -> int:
    from .. import overrides, pipeline

    warnings: list[Diagnostic] = []
    plan = pipeline.build(args.config, args.out, force=args.force, dialect=args.dialect,
                          on_warnings=warning_printer(args.strict, warnings),
                          overrides=overrides.parse(args.overrides) or None)
    if args.json:
        vram = (plan.get("estimate") or {}).get("vram") or {}
        print(json.dumps({"ok": True, "out": str(args.out), "name": plan["name"], "derived": plan["derived"],
                          "overrides": plan["source"].get("overrides", {}),
                          "estimate": {"total_gib": vram.get("total_gib"),
                                       "hours": ((plan.get("estimate") or {}).get("time") or {}).get("hours")},
                          "warnings": [w.as_json() for w in warnings]}, sort_keys=True, ensure_ascii=False))
        return 0
    if not args.quiet:
        d = plan["derived"]
        steps = d.get("total_steps")
        m = plan["model"]
        model = m.get("id") or ("local model (copied into the bundle)" if m.get("path") == "model" else m.get("path"))
        out = str(args.out).rstrip("/")
        print(f"wrote {out}/  ({plan['name']}: {model}; world size {d['world_size']}, "
              f"global batch {d['global_batch_size'] or 'auto'}, "
              f"steps {steps if steps is not None else 'fixed by prepare'})")
        print(f"review: {out}/plan.md   run: bash {out}/launch.sh")
    return 0
