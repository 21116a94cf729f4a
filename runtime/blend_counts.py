"""Blend counts: how many training samples each dataset contributes. One formula for both sides of the plan:
the compiler (resolve/batch.py: `derived.rows`, when every dataset's row count is known at build) and
prepare (on the rows it really has after bad samples and the blocklist; it records its counts in
prepared/schedule.json, which train reads and prepare_report.md shows).

Per dataset: `subset` keeps a count or a fraction of the rows, then `eval_split` (the dataset's own, else
data.eval_split) takes its rows out. The blend then gives dataset i the share p_i ∝ weight_i · n_i^(1/T):
T = 1 keeps natural proportions, a larger T flattens them towards uniform (small sets are upsampled). The
blend keeps the natural total N = Σ n_i, so with every weight 1 and T = 1 each dataset contributes exactly
its rows; `epochs` then multiplies a dataset's count (repeat a small set).

Pure: plain arithmetic on plan values, no numpy or training library, so the compiler may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def amount(n: int, value: Any) -> int:
    """Rows `subset` / `eval_split` select out of n: an int count, or a float fraction below 1 (rounded to the
    nearest row, as `datasets` rounds a `train[:P%]` slice); None or 0 selects none."""
    if value is None or value == 0:
        return 0
    k = round(n * float(value)) if isinstance(value, float) and value < 1 else int(value)
    return max(0, min(n, k))


def available(rows: int, subset: Any, eval_split: Any) -> int:
    """One dataset's training rows before the blend when every row is valid: the subset, minus the eval split."""
    n = rows if subset is None else amount(rows, subset)
    return n - amount(n, eval_split)


def shares(sizes: Mapping[str, int], weights: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Each dataset's share of the blend, p_i ∝ weight_i · n_i^(1/T) (0 for all when every score is 0)."""
    if temperature <= 0:
        raise ValueError("data.temperature must be > 0")
    score = {k: float(weights[k]) * (n ** (1.0 / temperature) if n > 0 else 0.0) for k, n in sizes.items()}
    total = sum(score.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in score.items()}


def counts(sizes: Mapping[str, int], weights: Mapping[str, float], epochs: Mapping[str, float],
           temperature: float) -> dict[str, int]:
    """Samples each dataset contributes: round(N · p_i · epochs_i), N the natural total Σ n_i."""
    p = shares(sizes, weights, temperature)
    total = sum(sizes.values())
    return {k: round(total * p[k] * float(epochs[k])) for k in sizes}


def plan_counts(data: Mapping[str, Any], rows: Mapping[str, int]) -> dict[str, int]:
    """The blend of the plan's `config.data` section over each dataset's row count (every row valid)."""
    sizes, weights, epochs = {}, {}, {}
    for ds in data["datasets"]:
        name = ds["name"]
        ev = ds["eval_split"] if ds["eval_split"] is not None else data["eval_split"]
        sizes[name] = available(rows[name], ds["subset"], ev)
        weights[name], epochs[name] = float(ds["weight"]), float(ds["epochs"])
    return counts(sizes, weights, epochs, float(data["temperature"]))
