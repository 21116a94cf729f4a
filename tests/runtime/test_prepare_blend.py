"""Blending: temperature shares, weights, epochs, deterministic draws, subset / eval amounts."""

from __future__ import annotations

import numpy as np
import pytest
from loft.runtime import blend_counts
from loft.runtime.prepare import blend


def test_natural_proportions_at_t1_and_flattening_at_higher_t():
    sizes = {"big": 900, "small": 100}
    ones = {"big": 1.0, "small": 1.0}
    assert blend_counts.counts(sizes, ones, ones, 1.0) == {"big": 900, "small": 100}
    hot = blend_counts.counts(sizes, ones, ones, 2.0)  # p ∝ sqrt(n): 30 : 10
    assert hot == {"big": 750, "small": 250}
    assert blend_counts.counts(sizes, {**ones, "small": 3.0}, ones, 1.0) == {"big": 750, "small": 250}
    assert blend_counts.counts(sizes, ones, {**ones, "small": 2}, 1.0) == {"big": 900, "small": 200}
    with pytest.raises(KeyError):  # every dataset's weight is a plan value: no default weight
        blend_counts.counts(sizes, {"big": 1.0}, ones, 1.0)


def test_draw_repeats_full_passes_then_a_remainder():
    idx = blend.draw(10, 25, blend.rng_for(1, "d"))
    counts = np.bincount(idx, minlength=10)
    assert len(idx) == 25 and counts.min() >= 2 and counts.max() <= 3
    assert np.array_equal(idx, blend.draw(10, 25, blend.rng_for(1, "d")))
    assert not np.array_equal(idx, blend.draw(10, 25, blend.rng_for(2, "d")))


def test_take_count_and_fraction():
    rng = blend.rng_for(0, "x")
    assert len(blend.take(100, 0.1, rng)) == 10
    assert len(blend.take(100, 7, rng)) == 7
    assert len(blend.take(100, None, rng)) == 0
    assert len(blend.take(5, 50, rng)) == 5
