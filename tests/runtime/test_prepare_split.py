"""Fitting samples to max_length: drop, truncate, truncate_left, turn-aware split; pieces without a
trained token vanish; incomplete tails get no loss."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from loft.runtime.prepare.mask import IGNORE
from loft.runtime.prepare.split import fit, turn_bounds

E = frozenset({9})
BOS = 1
# bos | user turn (3 tokens + eot) | assistant (4 + eot) | user (2 + eot) | assistant (3 + eot)
IDS = [BOS, 2, 2, 2, 9, 5, 5, 5, 5, 9, 3, 3, 9, 6, 6, 6, 9]
LABELS = [IGNORE] * 5 + [5, 5, 5, 5, 9] + [IGNORE] * 3 + [6, 6, 6, 9]


def test_fits_untouched_and_drop():
    assert fit(IDS, LABELS, True, 64, "drop", E, BOS)[0].input_ids == IDS
    assert fit(IDS, LABELS, True, 10, "drop", E, BOS) == []


def test_truncate_keeps_the_start_and_masks_the_cut_turn():
    # cut inside the first assistant turn: that turn has no end → no loss → nothing left to train → gone
    assert fit(IDS, LABELS, True, 8, "truncate", E, BOS) == []
    [kept] = fit(IDS, LABELS, True, 11, "truncate", E, BOS)
    assert kept.input_ids == IDS[:11] and kept.complete is False
    assert kept.labels == [*LABELS[:10], IGNORE]
    [over] = fit(IDS, LABELS, True, 8, "truncate", E, BOS, train_on_incomplete=True)
    assert over.labels == LABELS[:8]


def test_truncate_left_keeps_the_last_whole_turns_after_bos():
    [p] = fit(IDS, LABELS, True, 9, "truncate_left", E, BOS)
    assert p.input_ids == [BOS, 3, 3, 9, 6, 6, 6, 9]  # bos + last two turns (8 ≤ 9; three turns would be 13)
    assert p.labels == [IGNORE] * 4 + [6, 6, 6, 9]
    assert p.complete is False


def test_split_into_turn_aware_chunks():
    pieces = fit(IDS, LABELS, True, 10, "split", E, BOS)
    assert [p.input_ids for p in pieces] == [IDS[:10], [BOS, *IDS[10:]]]
    assert [p.chunk for p in pieces] == [0, 1]
    assert [p.complete for p in pieces] == [False, True]
    assert pieces[1].labels == [IGNORE] * 4 + [6, 6, 6, 9]


def test_split_hard_cuts_a_turn_longer_than_a_chunk():
    ids = [BOS, *[5] * 12, 9]
    labels = [IGNORE, *[5] * 12, 9]
    pieces = fit(ids, labels, True, 6, "split", E, BOS, train_on_incomplete=True)
    assert all(len(p.input_ids) <= 6 for p in pieces)
    body = [t for p in pieces for t in (p.input_ids[1:] if p.chunk else p.input_ids)]
    assert body == ids  # nothing lost, bos re-added to later chunks
    assert pieces[-1].labels[-1] == 9 and pieces[-1].complete


def test_turn_bounds():
    assert turn_bounds(IDS, E) == [0, 5, 10, 13]


@settings(max_examples=60, deadline=None)
@given(turns=st.lists(st.tuples(st.integers(1, 12), st.booleans()), min_size=1, max_size=8),
       max_length=st.integers(4, 24))
def test_split_never_exceeds_max_length_and_keeps_every_trained_token(turns, max_length):
    ids, labels = [BOS], [IGNORE]
    for n, trained in turns:
        ids += [5] * n + [9]
        labels += ([5] * n + [9]) if trained else [IGNORE] * (n + 1)
    pieces = fit(ids, labels, True, max_length, "split", E, BOS, train_on_incomplete=True)
    assert all(len(p.input_ids) <= max_length for p in pieces)
    trained = sum(v != IGNORE for v in labels)
    assert sum(v != IGNORE for p in pieces for v in p.labels) == trained
