"""Fit one tokenized sample into `max_length`: drop, truncate (keep the start), truncate_left (keep the
last turns), split into turn-aware chunks, or chunk (plain `max_length` cuts, Axolotl's completion type).

Turn boundaries are the positions right after an end-of-turn token, so splits never cut a turn that
fits. A piece that ends mid-turn has no end-of-turn token: its trailing partial turn gets no loss
unless `train_on_incomplete_assistant`. Pieces cut from a sample get `complete = False`; of split
chunks, only the last keeps the sample's own flag. Pieces with no trained token left are dropped and
counted by the caller.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from loft.runtime.prepare.mask import IGNORE

STRATEGIES = ("truncate", "truncate_left", "drop", "split", "chunk")


@dataclass
class Piece:
    input_ids: list[int]
    labels: list[int]
    complete: bool
    chunk: int | None = None  # None: the sample itself (cut or not); n: the n-th chunk of a split


def turn_bounds(ids: list[int], eot_ids: frozenset[int]) -> list[int]:
    """Start offsets of the turns: 0 and every position right after an end-of-turn token."""
    return [0] + [i + 1 for i, t in enumerate(ids[:-1]) if t in eot_ids]


def _mask_tail(ids: list[int], labels: list[int], eot_ids: frozenset[int]) -> list[int]:
    """No loss on the tokens after the last end-of-turn token (a turn the cut left without its end)."""
    last = max((i for i, t in enumerate(ids) if t in eot_ids), default=-1)
    return labels[: last + 1] + [IGNORE] * (len(labels) - last - 1)


def fit(ids: list[int], labels: list[int], complete: bool, max_length: int, strategy: str,
        eot_ids: frozenset[int], bos_id: int | None, train_on_incomplete: bool = False) -> list[Piece]:
    if len(ids) <= max_length:
        return [Piece(ids, labels, complete)]
    if strategy == "drop":
        return []
    lead = [bos_id] if bos_id is not None and ids and ids[0] == bos_id else []
    if strategy == "truncate":
        kept, klabels = ids[:max_length], labels[:max_length]
        if not train_on_incomplete:
            klabels = _mask_tail(kept, klabels, eot_ids)
        return _keep([Piece(kept, klabels, False)])
    if strategy == "truncate_left":
        room = max_length - len(lead)
        start = next((b for b in turn_bounds(ids, eot_ids) if b >= len(lead) and len(ids) - b <= room), None)
        if start is None:  # the last turn alone is too long: keep its last tokens
            start = len(ids) - room
        return _keep([Piece(lead + ids[start:], [IGNORE] * len(lead) + labels[start:], False)])
    if strategy == "split":
        return _keep(_split(ids, labels, complete, max_length, eot_ids, lead, train_on_incomplete))
    if strategy == "chunk":  # Axolotl's completion: plain max_length cuts, each chunk trained as it is
        return _keep([Piece(ids[i:i + max_length], labels[i:i + max_length], complete, chunk=n)
                      for n, i in enumerate(range(0, len(ids), max_length))])
    raise ValueError(f"unknown sequence.strategy {strategy!r} (expected one of {STRATEGIES})")


def _keep(pieces: list[Piece]) -> list[Piece]:
    return [p for p in pieces if any(v != IGNORE for v in p.labels)]


def _split(ids: list[int], labels: list[int], complete: bool, max_length: int, eot_ids: frozenset[int],
           lead: list[int], train_on_incomplete: bool) -> list[Piece]:
    bounds = [*turn_bounds(ids, eot_ids), len(ids)]
    ranges: list[tuple[int, int]] = []  # [start, end) of each chunk's body in `ids`
    start = 0
    for a, b in itertools.pairwise(bounds):
        if b <= start:
            continue
        limit = max_length - (len(lead) if start > 0 else 0)
        if b - start <= limit:
            continue  # this turn still fits in the current chunk
        if a > start:  # close the chunk before this turn
            ranges.append((start, a))
            start = a
        while b - start > max_length - len(lead):  # one turn longer than a chunk: hard split
            step = max_length - (len(lead) if start > 0 else 0)
            ranges.append((start, start + step))
            start += step
    if start < len(ids):
        ranges.append((start, len(ids)))
    pieces = []
    for n, (s, e) in enumerate(ranges):
        last = n == len(ranges) - 1
        pre = lead if s > 0 else []
        pids, plabels = pre + ids[s:e], [IGNORE] * len(pre) + labels[s:e]
        if not last and not train_on_incomplete:
            plabels = _mask_tail(pids, plabels, eot_ids)
        pieces.append(Piece(pids, plabels, complete if last else False, chunk=n))
    return pieces
