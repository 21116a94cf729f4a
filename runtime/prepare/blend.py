"""Blend datasets: how many samples each contributes, and which ones (deterministic for the seed).

A dataset's share is p_i ∝ weight_i · n_i^(1/T): T = 1 keeps natural proportions, a larger T flattens
them towards uniform (small sets are upsampled). The blend keeps the natural total N = Σ n_i, so with
every weight 1 and T = 1 each dataset contributes exactly its rows; `epochs` then multiplies a
dataset's count (repeat a small set). A count above n repeats full shuffled passes, then a random
remainder without replacement.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on the seed and the names (stable across runs and processes)."""
    parts = [int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) for n in names]
    return np.random.default_rng([int(seed), *parts])


def shares(sizes: dict[str, int], weights: dict[str, float], temperature: float) -> dict[str, float]:
    if temperature <= 0:
        raise ValueError("data.temperature must be > 0")
    score = {k: float(weights.get(k, 1.0)) * (n ** (1.0 / temperature) if n > 0 else 0.0) for k, n in sizes.items()}
    total = sum(score.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in score.items()}


def counts(sizes: dict[str, int], weights: dict[str, float], epochs: dict[str, float],
           temperature: float) -> dict[str, int]:
    p = shares(sizes, weights, temperature)
    total = sum(sizes.values())
    return {k: round(total * p[k] * float(epochs.get(k, 1))) for k in sizes}


def draw(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices out of range(n): full permutations, then a remainder without replacement."""
    if n == 0 or count <= 0:
        return np.zeros(0, dtype=np.int64)
    full, rest = divmod(count, n)
    parts = [rng.permutation(n) for _ in range(full)]
    if rest:
        parts.append(np.sort(rng.choice(n, size=rest, replace=False)))
    return np.concatenate(parts).astype(np.int64)


def take(n: int, amount: Any, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices for `subset` / `eval_split`: an int count or a float fraction of n (None/0 = none)."""
    if amount is None or amount == 0:
        return np.zeros(0, dtype=np.int64)
    k = round(n * float(amount)) if isinstance(amount, float) and amount < 1 else int(amount)
    k = max(0, min(n, k))
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def first(n: int, amount: Any) -> int:
    """How many of the first rows `subset` keeps with subset_mode: first (a `train[:N]` / `train[:P%]`
    slice: `datasets` rounds a percentage to the nearest row)."""
    if isinstance(amount, float) and amount < 1:
        return max(0, min(n, round(n * amount)))
    return max(0, min(n, int(amount)))
