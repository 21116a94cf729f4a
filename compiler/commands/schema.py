"""`loftc schema [--plan]`: print the JSON Schema of the config (for editors) or of plan.lock."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the config JSON Schema (for editors)",
                       description="Print the JSON Schema of loft configs; `--plan` prints plan.lock's schema.")
    p.add_argument("--plan", action="store_true", help="the schema of plan.lock instead")


def run(args: argparse.Namespace) -> int:
    from ..validate import SCHEMA_DIR

    name = "plan" if args.plan else "config"
    sys.stdout.write((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return 0
