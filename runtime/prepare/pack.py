"""Bin-pack samples into rows of at most `max_length` tokens (best-fit decreasing).

Each packed row keeps per-sample position ids (0..len-1 for every sample, concatenated), which is how
transformers 5.x finds the sample boundaries: `masking_utils.find_packed_sequence_indices` (sdpa/eager,
used when no attention_mask is passed) and `_is_packed_sequence` / `prepare_fa_kwargs_from_position_ids`
(flash-attention varlen, batch of one row) both read a restart of position ids as a new sequence.
"""

from __future__ import annotations

from bisect import bisect_left, insort


def pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of total ≤ capacity; longest first, each into the fullest
    bin it fits (ties → earliest index, so the result is deterministic)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin), sorted
    for i in order:
        need = lengths[i]
        if need > capacity:
            raise ValueError(f"sample of {need} tokens exceeds the row capacity {capacity}")
        k = bisect_left(free, (need, -1))
        if k < len(free):
            room, b = free.pop(k)
            bins[b].append(i)
            if room - need > 0:
                insort(free, (room - need, b))
        else:
            bins.append([i])
            if capacity - need > 0:
                insort(free, (capacity - need, len(bins) - 1))
    return bins


def efficiency(lengths: list[int], bins: list[list[int]], capacity: int) -> float:
    """Share of the rows' capacity holding real tokens (1.0 = no padding)."""
    return sum(lengths) / (len(bins) * capacity) if bins else 0.0
