"""Rows of the prepared splits: samples fitted to max_length (cache entry 2), then every chosen piece
assembled into packed or padded rows, with per-sample position_ids and sample ids."""

from __future__ import annotations

from typing import Any

import numpy as np
from loft.runtime.prepare import cache, pack
from loft.runtime.prepare.split import fit


class FitBatch:
    """`Dataset.map` function: tokenized samples → pieces that fit max_length (rows may split or vanish)."""

    def __init__(self, name: str, max_length: int, strategy: str, eot_ids: frozenset[int], bos_id: int | None,
                 train_on_incomplete: bool) -> None:
        self.name, self.max_length, self.strategy = name, max_length, strategy
        self.eot_ids, self.bos_id, self.train_on_incomplete = eot_ids, bos_id, train_on_incomplete

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "complete": [], "length": [],
                                     "index": [], "sample_id": [], "cut": []}
        for ids, labels, complete, index in zip(batch["input_ids"], batch["labels"], batch["complete"],
                                                batch["index"], strict=True):
            cut = len(ids) > self.max_length
            for piece in fit(ids, labels, complete, self.max_length, self.strategy, self.eot_ids, self.bos_id,
                             self.train_on_incomplete):
                sid = f"{self.name}:{index}" + (f":chunk{piece.chunk}" if piece.chunk is not None and cut else "")
                out["input_ids"].append(piece.input_ids)
                out["labels"].append(piece.labels)
                out["complete"].append(piece.complete)
                out["length"].append(len(piece.input_ids))
                out["index"].append(index)
                out["sample_id"].append(sid)
                out["cut"].append(cut)
        return out


def fit_dataset(ds: Any, fn: FitBatch, fingerprint: str) -> Any:
    """Samples that fit pass through as arrow (no Python round trip); only the longer ones go through `fn`.
    The result is sorted by source index, chunks of one sample in order."""
    import datasets
    import pyarrow as pa

    cols = ["input_ids", "labels", "complete", "length", "index", "sample_id", "cut"]
    table = arrow_table(ds)
    over = table.column("length").to_numpy() > fn.max_length
    ok = table.filter(pa.array(~over))
    ok = ok.append_column("sample_id", pa.array([f"{fn.name}:{i}" for i in ok.column("index").to_pylist()], pa.string()))
    ok = ok.append_column("cut", pa.array(np.zeros(ok.num_rows, dtype=bool))).select(cols)
    parts = [ok.cast(FITTED_FEATURES().arrow_schema)]
    if over.any():
        long = ds.select(np.nonzero(over)[0], new_fingerprint=cache.key({"over": fingerprint}))
        done = long.map(fn, batched=True, batch_size=1000, remove_columns=long.column_names,
                        features=FITTED_FEATURES())
        parts.append(arrow_table(done).select(cols))
    merged = pa.concat_tables(parts).sort_by("index")  # stable: a sample's chunks keep their order
    return datasets.Dataset(merged, fingerprint=fingerprint)  # given: hashing an in-memory table costs seconds


def FITTED_FEATURES() -> Any:
    from datasets import Features, List, Value

    return Features({"input_ids": List(Value("int32")), "labels": List(Value("int32")), "complete": Value("bool"),
                     "length": Value("int32"), "index": Value("int64"), "sample_id": Value("string"),
                     "cut": Value("bool")})


def arrow_table(ds: Any) -> Any:
    """A dataset's rows (its selection applied) as one pyarrow Table."""
    return ds.with_format("arrow")[:]


def assemble(fitted: dict[str, Any], chosen: dict[str, np.ndarray], max_length: int, packing: bool,
              rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """Rows for one split: every piece of every chosen source index (repeats included), packed or not.
    Built with arrow takes and numpy offsets, never a Python loop over tokens."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = []
    for name, f in fitted.items():
        sel = chosen.get(name)
        if sel is None or len(sel) == 0 or len(f) == 0:
            continue
        t = arrow_table(f)
        index = t.column("index").to_numpy()
        lo, hi = np.searchsorted(index, sel, "left"), np.searchsorted(index, sel, "right")
        counts = hi - lo
        rows = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        if len(rows):
            parts.append(t.select(["input_ids", "labels", "sample_id", "length"]).take(pa.array(rows)))
    if parts:
        pieces = pa.concat_tables(parts)
    else:
        pieces = pa.table({"input_ids": pa.array([], pa.list_(pa.int32())), "labels": pa.array([], pa.list_(pa.int32())),
                           "sample_id": pa.array([], pa.string()), "length": pa.array([], pa.int32())})
    lens = pieces.column("length").to_numpy().astype(np.int64)
    bins = pack.pack(lens.tolist(), max_length) if packing else [[i] for i in range(len(lens))]
    order = rng.permutation(len(bins)) if bins else np.zeros(0, dtype=np.int64)
    members = np.fromiter((i for b in order.tolist() for i in bins[b]), dtype=np.int64, count=len(lens))
    bin_sizes = np.fromiter((len(bins[b]) for b in order.tolist()), dtype=np.int64, count=len(bins))
    taken = pieces.take(pa.array(members))
    piece_lens = lens[members]
    row_lens = np.add.reduceat(piece_lens, np.cumsum(bin_sizes) - bin_sizes) if len(bins) else piece_lens[:0]
    row_off = pa.array(np.concatenate([[0], np.cumsum(row_lens)]).astype(np.int32))
    total = int(piece_lens.sum())
    positions = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(piece_lens) - piece_lens, piece_lens)
    flat_labels = pc.list_flatten(taken.column("labels")).combine_chunks() if total else pa.array([], pa.int32())
    flat_ids = pc.list_flatten(taken.column("input_ids")).combine_chunks() if total else pa.array([], pa.int32())
    sid_off = pa.array(np.concatenate([[0], np.cumsum(bin_sizes)]).astype(np.int32))
    sids = taken.column("sample_id").combine_chunks() if len(members) else pa.array([], pa.string())
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(row_off, flat_ids),
        "labels": pa.ListArray.from_arrays(row_off, flat_labels),
        "position_ids": pa.ListArray.from_arrays(row_off, pa.array(positions.astype(np.int32))),
        "sample_ids": pa.ListArray.from_arrays(sid_off, sids),
        "length": pa.array(row_lens.astype(np.int64)),
    })
    trained = int((flat_labels.to_numpy(zero_copy_only=False) != -100).sum()) if total else 0
    stats = {"rows": len(bins), "samples": len(lens), "tokens": total, "trained_tokens": trained,
             "packing_efficiency": round(pack.efficiency(lens.tolist(), bins, max_length), 4) if packing else None,
             "padding_free_fraction": round(total / (len(bins) * max_length), 4) if bins else None}
    return table, stats
