"""`loftc diff a/ b/`: a semantic diff of two compiled plans (bundle directories or plan.lock files)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "diff", help="what changed between two compiled plans",
        description="Key paths, old → new, grouped by plan section, with the estimate change. Accepts bundle "
                    "directories or plan.lock files.")
    p.add_argument("a", type=Path, help="the old bundle (or its plan.lock)")
    p.add_argument("b", type=Path, help="the new bundle (or its plan.lock)")
    p.add_argument("--format", choices=("text", "md"), default="text", help="md: for a PR comment")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when the plans differ (like git diff)")
    p.set_defaults(func=run)
    return p


def load_plan(path: Path) -> dict[str, Any]:
    lock = path / "plan.lock" if path.is_dir() else path
    if not lock.is_file():
        raise ConfigError.one(f"no plan.lock at {lock}", file=str(path), expected="a bundle directory or a plan.lock",
                              code="no-plan")
    try:
        plan = json.loads(lock.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError.one(f"{lock} is not valid JSON ({e})", file=str(lock), code="bad-plan") from None
    if not isinstance(plan, dict):
        raise ConfigError.one(f"{lock} is not a loft plan", file=str(lock), code="bad-plan")
    return plan


def run(args: argparse.Namespace) -> int:
    from ..diff import diff_plans, format_md, format_text, headlines

    try:
        a, b = load_plan(args.a), load_plan(args.b)
    except ConfigError as e:
        if not args.exit_code:
            raise
        print(e.render(), file=sys.stderr)
        return 2  # like git diff --exit-code: 1 means "differ", trouble is 2
    changes = diff_plans(a, b)
    if getattr(args, "json", False):
        print(json.dumps({"ok": True, "a": str(args.a), "b": str(args.b), "differ": bool(changes),
                          "changes": [{"group": c.group, "key": c.key, "kind": c.kind,
                                       "old": None if c.kind == "added" else c.old,
                                       "new": None if c.kind == "removed" else c.new} for c in changes],
                          "headlines": [vars(h) for h in headlines(a, b)]}, sort_keys=True, default=repr))
        return 1 if args.exit_code and changes else 0
    fmt = format_md if args.format == "md" else format_text
    sys.stdout.write(fmt(changes, headlines(a, b), str(args.a), str(args.b)))
    return 1 if args.exit_code and changes else 0
