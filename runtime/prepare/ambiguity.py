"""Per-token ambiguity for adaptive label smoothing (training.aux_losses.adaptive_label_smoothing)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _flat(table: Any, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    col = pc.list_flatten(table.column(name))
    return col.to_numpy() if col.num_chunks else np.zeros(0, dtype=np.int64)


def add_ambiguity(splits: dict[str, tuple[Any, dict[str, Any]]], vocab: int) -> dict[str, Any]:
    """Per-token ambiguity for adaptive label smoothing: the normalised entropy of the next-token
    distribution after the previous token, from bigram counts over the train split.

    ambiguity[t] = H(next | input_ids[t-1]) / ln(vocab) ∈ [0, 1], aligned with labels[t] (the token
    predicted at position t-1); 0 at each sample's first position and where labels[t] = -100."""
    import pyarrow as pa

    train = splits["train"][0]
    ids, pos = _flat(train, "input_ids").astype(np.int64), _flat(train, "position_ids")
    follows = pos[1:] != 0  # pairs inside one sample (rows end where the next starts at position 0)
    a, b = ids[:-1][follows], ids[1:][follows]
    size = max(vocab, int(ids.max(initial=0)) + 1)
    entropy = np.zeros(size)
    if len(a):
        pairs, counts = np.unique(a * size + b, return_counts=True)
        first = pairs // size
        totals = np.bincount(first, weights=counts, minlength=size)
        prob = counts / totals[first]
        np.add.at(entropy, first, -prob * np.log(prob))
    norm = np.log(max(vocab, 2))
    trained_scores: list[float] = []
    for split, (table, stats) in list(splits.items()):
        fid, fpos, flab = _flat(table, "input_ids").astype(np.int64), _flat(table, "position_ids"), _flat(table, "labels")
        amb = np.zeros(len(fid), dtype=np.float32)
        if len(fid) > 1:
            amb[1:] = entropy[np.minimum(fid[:-1], size - 1)] / norm
        amb[(fpos == 0) | (flab == -100)] = 0.0
        amb = np.clip(np.round(amb, 5), 0.0, 1.0).astype(np.float32)
        if split == "train":
            trained_scores = amb[flab != -100].tolist()
        offsets = table.column("input_ids").combine_chunks().offsets
        splits[split] = (table.append_column("ambiguity", pa.ListArray.from_arrays(offsets, pa.array(amb))), stats)
    return {"method": "bigram next-token entropy / ln(vocab)", "aligned_with": "labels", "bigrams": len(a),
            "mean_on_trained_tokens": round(float(np.mean(trained_scores)) if trained_scores else 0.0, 5)}
