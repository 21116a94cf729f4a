"""`loftc gpus`: the GPU catalog the estimator sizes against (memory, peak bf16, utilisation, prices)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gpus", help="list the GPU catalog (memory, bf16 TFLOP/s, utilisation, cheapest list price)",
        description="List targets/catalog/gpus.json with the cheapest on-demand list price per GPU from "
                    "targets/catalog/providers.json (each price has its date and source in --json).")
    p.add_argument("--providers", action="store_true", help="list the providers and their prices instead")
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")
    p.set_defaults(func=run)
    return p


def _cheapest(gpu: str, providers: dict[str, Any]) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for key, prov in sorted(providers.items()):
        for price in prov["prices"]:
            if price["gpu"] == gpu and (best is None or price["on_demand"] < best[0]):
                best = (price["on_demand"], key)
    return best


def run(args: argparse.Namespace) -> int:
    from ..estimate import catalog
    from ..estimate.report import _table

    gpus, providers = catalog.gpus(), catalog.providers()
    if args.json:
        print(json.dumps({"ok": True, "providers": providers, **({} if args.providers else {"gpus": gpus})},
                         indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    if args.providers:
        rows = [[key, row["gpu"], f"${row['on_demand']:.2f}",
                 "—" if row["spot"] is None else f"${row['spot']:.2f}", p["as_of"], p["source"]]
                for key, p in sorted(providers.items()) for row in p["prices"]]
        print("\n".join(_table(["provider", "gpu", "on-demand $/GPU-h", "spot $/GPU-h", "as of", "source"], rows,
                               md=False)))
        return 0
    rows = []
    for name, spec in sorted(gpus.items(), key=lambda kv: (-kv[1]["memory_gib"], kv[0])):
        best = _cheapest(name, providers)
        rows.append([name, f"{spec['memory_gib']:g}", f"{spec['bf16_tflops']:g}", f"{spec['mfu']:.2f}",
                     "—" if best is None else f"${best[0]:.2f} ({best[1]})", ", ".join(spec.get("aliases", [])[:3])])
    print("\n".join(_table(["gpu", "memory GiB", "bf16 TFLOP/s", "mfu", "from $/GPU-h", "aliases"], rows, md=False)))
    print("\nList prices as of each provider's `as_of` date (loftc gpus --providers); check the source before renting.")
    return 0
