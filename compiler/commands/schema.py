"""`loftc schema [--plan | --table]`: print the JSON Schema of the config (for editors) or of plan.lock,
or the config keys as the markdown table that docs/config.md carries."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the config JSON Schema (for editors)",
                       description="Print the JSON Schema of loft configs; `--plan` prints plan.lock's schema, "
                                   "`--table` the markdown key table of docs/config.md.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--plan", action="store_true", help="the schema of plan.lock instead")
    g.add_argument("--table", action="store_true", help="every config key as a markdown table")


def run(args: argparse.Namespace) -> int:
    from ..validate import SCHEMA_DIR, load_schema

    if args.table:
        table = markdown_table(load_schema())
        if getattr(args, "json", False):  # the schemas themselves are JSON already; the table is wrapped
            import json

            print(json.dumps({"ok": True, "table": table}))
        else:
            sys.stdout.write(table)
        return 0
    name = "plan" if args.plan else "config"
    sys.stdout.write((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return 0


def markdown_table(schema: dict[str, Any]) -> str:
    """| key | type | default | what | for every key, depth first; `a.b[].c` = key c of each item of list a.b."""
    rows = ["| key | type | default | what |", "|---|---|---|---|"]

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            default = f"`{json.dumps(sub['default'], ensure_ascii=False)}`" if "default" in sub else "—"
            desc = sub["description"].replace("|", "\\|")
            rows.append(f"| `{path}` | {_type(sub)} | {default} | {desc} |")
            items = sub.get("items")
            if isinstance(items, dict) and "properties" in items:
                walk(items, path + "[]")
            walk(sub, path)

    walk(schema, "")
    return "\n".join(rows) + "\n"


def _type(node: dict[str, Any]) -> str:
    if "anyOf" in node:
        return " or ".join(f"`{json.dumps(b['const'])}`" if "const" in b else _type(b) for b in node["anyOf"])
    if "enum" in node:
        return " \\| ".join(f"`{c}`" if isinstance(c, str) else f"`{json.dumps(c)}`" for c in node["enum"])
    types = node.get("type") or []
    out = "/".join([types] if isinstance(types, str) else types)
    bounds = [f"{sym} {node[k]}" for k, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                                                 ("exclusiveMaximum", "<")) if k in node]
    return out + (f" ({', '.join(bounds)})" if bounds else "")
