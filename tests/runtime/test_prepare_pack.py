"""Packing: every sample once, rows within capacity, best-fit efficiency."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from loft.runtime.prepare.pack import efficiency, pack


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), max_size=200), capacity=st.integers(64, 200))
def test_pack_places_each_sample_once_within_capacity(lengths, capacity):
    bins = pack(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= capacity for b in bins)
    # first-fit-decreasing bound: at most 11/9·OPT + 1 rows; OPT ≥ total/capacity
    assert len(bins) <= 11 / 9 * (sum(lengths) / capacity) + 2


def test_pack_is_deterministic_and_dense():
    lengths = [60, 40, 30, 70, 10, 90, 20, 80]
    assert pack(lengths, 100) == pack(lengths, 100)
    bins = pack(lengths, 100)
    assert len(bins) == 4 and efficiency(lengths, bins, 100) == 1.0
