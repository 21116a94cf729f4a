"""Cost: hours × price per GPU-hour × GPUs billed, for every provider and GPU in the catalog.

Instances that come only in fixed GPU counts (an 8-GPU p5.48xlarge) are billed for the smallest count
that holds the run's GPUs; prices are list prices with the date and page they were read from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import catalog


def billed_gpus(wanted: int, counts: list[int] | None) -> int:
    if not counts:
        return wanted
    fitting = [c for c in sorted(counts) if c >= wanted]
    if fitting:
        return fitting[0]
    biggest = max(counts)
    return -(-wanted // biggest) * biggest  # several instances of the biggest size


def cost_options(hours_for: Callable[[str], float | None], fits_for: Callable[[str], bool], world: int,
                 provider: str | None = None, gpu: str | None = None) -> list[dict[str, Any]]:
    """Every (provider, GPU, on-demand/spot) row, narrowed to `provider` / `gpu` when given."""
    rows: list[dict[str, Any]] = []
    for key, prov in sorted(catalog.providers().items()):
        if provider and key != provider:
            continue
        for price in prov["prices"]:
            if gpu and price["gpu"] != gpu:
                continue
            hours = hours_for(price["gpu"])
            billed = billed_gpus(world, price.get("gpu_counts"))
            for spot in (False, True):
                per_hour = price["spot"] if spot else price["on_demand"]
                if per_hour is None:
                    continue
                rows.append({
                    "provider": key,
                    "gpu": price["gpu"],
                    "num_gpus": billed,
                    "price_per_gpu_hour": per_hour,
                    "spot": spot,
                    "fits": fits_for(price["gpu"]),
                    "hours": hours,
                    "total_usd": None if hours is None else hours * per_hour * billed,
                    "as_of": prov["as_of"],
                    "source": prov["source"],
                    **({"note": price["note"]} if price.get("note") else {}),
                })
    rows.sort(key=lambda r: (not r["fits"], r["total_usd"] if r["total_usd"] is not None else float("inf"),
                             r["provider"], r["gpu"], r["spot"]))
    return rows


def cheapest(options: list[dict[str, Any]], spot: bool = False) -> dict[str, Any] | None:
    """Cheapest option that fits (on-demand unless `spot`), or None when none fits or hours are unknown."""
    ok = [o for o in options if o["fits"] and o["total_usd"] is not None and (spot or not o["spot"])]
    return min(ok, key=lambda o: (o["total_usd"], o["provider"], o["gpu"])) if ok else None
