"""Check (or refresh) loft's Axolotl key table against Axolotl's own pydantic schema.

    AXOLOTL_DO_NOT_TRACK=1 $AXOLOTL_VENV/bin/python benchmarks/axolotl_schema_facts.py > /tmp/facts.json
    .venv/bin/python benchmarks/axolotl_keys_sync.py /tmp/facts.json [--write]

Compares compiler/dialects/axolotl/keys.json with the facts dumped from an installed Axolotl: keys of
Axolotl's schema that loft has not classified (exit 1: each needs a kind and a reason, by hand), keys
whose schema facts (types, choices, default) changed, and keys loft lists that the schema no longer has
(kept: older names Axolotl still accepts through its validators). `--write` stores the new facts and
the Axolotl version; classifications are never written by this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ROOT / "compiler" / "dialects" / "axolotl" / "keys.json"
SECTIONS = {"top": ("top", "plugins"), "dataset": ("dataset",), "fsdp_config": ("fsdp_config",)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("facts")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    facts = json.loads(Path(args.facts).read_text("utf-8"))
    table = json.loads(KEYS.read_text("utf-8"))
    missing: list[str] = []
    changed: list[str] = []
    for section, sources in SECTIONS.items():
        schema: dict[str, dict[str, object]] = {}
        for s in sources:
            schema.update(facts.get(s, {}))
        for key, fact in sorted(schema.items()):
            fact = {k: v for k, v in fact.items() if k != "plugin"}
            entry = table[section].get(key)
            if entry is None:
                missing.append(f"{section}.{key}")
                continue
            if entry.get("schema") != fact:
                changed.append(f"{section}.{key}")
                entry["schema"] = fact
        gone = sorted(k for k, e in table[section].items() if "schema" in e and k not in schema
                      and not e.get("plugin"))
        for key in gone:
            print(f"no longer in Axolotl {facts['version']}'s schema: {section}.{key}")
    for name in changed:
        print(f"schema facts changed: {name}")
    for name in missing:
        print(f"NOT CLASSIFIED (add kind + why to keys.json): {name}")
    if args.write:
        table["axolotl_version"] = facts["version"]
        KEYS.write_text(json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
    print(f"Axolotl {facts['version']}: {len(missing)} unclassified, {len(changed)} changed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
