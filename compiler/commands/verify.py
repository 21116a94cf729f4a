"""`loftc verify run/`: is the bundle intact, built by this loftc, and still what its sources compile to?"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "verify", help="check a bundle against its MANIFEST, the installed runtime and its sources",
        description="Exit 1 and name the file for any changed, missing or extra file, a runtime copy that "
                    "differs from this loftc's, or a plan that no longer matches its config/data.")
    p.add_argument("run_dir", type=Path, help="the bundle directory (run/)")
    p.add_argument("--config", type=Path, default=None,
                   help="the config it was built from (default: a file of plan.lock's source.file name inside the bundle)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..verify import verify

    diags = verify(args.run_dir, args.config)
    errors = [d for d in diags if d.severity == "error"]
    if args.format == "json":
        print(json.dumps({"ok": not errors, "errors": [d.as_json() for d in errors],
                          "warnings": [d.as_json() for d in diags if d.severity != "error"]}, indent=2, sort_keys=True))
    else:
        for d in diags:
            print(d.render(), file=sys.stderr)
        if errors:
            print(f"{args.run_dir}: {len(errors)} problem(s) found", file=sys.stderr)
        else:
            print(f"{args.run_dir}: ok")
    return 1 if errors else 0
