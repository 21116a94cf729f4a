"""Turn a token-level 'trained span' mask into labels, with the end-of-turn policy applied.

Both mask sources (the template's `{% generation %}` spans, or message-prefix rendering) give runs of
trained tokens. This module makes every run end exactly on its turn's end-of-turn token:

* A run that spills past the end-of-turn token is cut there. This guards against the transformers
  behaviour where a generation span ending on whitespace maps to a token range running to the end of
  the sequence (older `char_to_token`-based masks returned None for the whitespace char and fell back
  to the last token); the trained span must stop on the end-of-turn token.
* A run that stops right before its end-of-turn token (templates that close `{% endgeneration %}`
  before `<|eot_id|>`) gets that token attached; one further away (a newline between) is left untrained,
  as are the tokens between.

`train_on_eos`: turn = each trained turn's end-of-turn token; last = only the last trained turn's;
all = every end-of-turn token in the sample (user turns' too); none = never.
"""

from __future__ import annotations

from collections.abc import Sequence

IGNORE = -100


def runs_of(mask: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) ranges where mask is truthy."""
    runs: list[tuple[int, int]] = []
    start = -1
    for i, m in enumerate(mask):
        if m and start < 0:
            start = i
        elif not m and start >= 0:
            runs.append((start, i))
            start = -1
    if start >= 0:
        runs.append((start, len(mask)))
    return runs


def turns_from_runs(ids: Sequence[int], runs: list[tuple[int, int]], eot_ids: frozenset[int]
                    ) -> list[tuple[int, int, int | None]]:
    """Each run → (content_start, content_end, eot_index or None), with the run clipped at its end-of-turn token."""
    turns: list[tuple[int, int, int | None]] = []
    n_ids = len(ids)
    for n, (start, end) in enumerate(runs):
        nxt = runs[n + 1][0] if n + 1 < len(runs) else n_ids
        eot = _next_eot(ids, start, eot_ids)
        if eot is not None and eot < end:  # spill guard: the run ends on its end-of-turn token
            turns.append((start, eot, eot))
        elif eot is not None and eot == end and eot < nxt:  # end-of-turn rendered right after the tag
            turns.append((start, end, eot))
        else:
            turns.append((start, end, None))
    return turns


def _next_eot(ids: Sequence[int], start: int, eot_ids: frozenset[int]) -> int | None:
    """Index of the first end-of-turn token at or after `start` (list.index: a C scan, not a Python loop)."""
    if not isinstance(ids, list):
        return next((i for i in range(start, len(ids)) if ids[i] in eot_ids), None)
    found = None
    for tid in eot_ids:
        try:
            i = ids.index(tid, start)
        except ValueError:
            continue
        if found is None or i < found:
            found = i
    return found


def labels_for(ids: Sequence[int], turns: list[tuple[int, int, int | None]], eot_ids: frozenset[int],
               train_on_eos: str, complete: bool = True, train_on_incomplete: bool = False) -> list[int]:
    """Labels (-100 = no loss) for `ids`. An incomplete sample (`complete=False`: its text was cut, so the
    template's closing end-of-turn token was never in the source) gets no loss on its last turn's
    end-of-turn token, and none on that turn at all unless `train_on_incomplete`."""
    labels = [IGNORE] * len(ids)
    for n, (start, end, eot) in enumerate(turns):
        last = n == len(turns) - 1
        if last and not complete and not train_on_incomplete:
            continue
        labels[start:end] = ids[start:end]
        eos_wanted = train_on_eos == "turn" or (train_on_eos == "last" and last)
        if eot is not None and eos_wanted and not (last and not complete):
            labels[eot] = ids[eot]
    if train_on_eos == "all":
        last_eot = turns[-1][2] if turns else None
        for i, t in enumerate(ids):
            if t in eot_ids and not (not complete and i == last_eot):
                labels[i] = t
    return labels
