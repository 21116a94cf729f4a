"""Blend datasets: which samples each contributes (deterministic for the seed). How many is
runtime/blend_counts.py, the formula the compiler shares. A count above n repeats full shuffled passes,
then a random remainder without replacement.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from loft.runtime import blend_counts


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on the seed and the names (stable across runs and processes)."""
    parts = [int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) for n in names]
    return np.random.default_rng([int(seed), *parts])


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
    k = blend_counts.amount(n, amount)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)

