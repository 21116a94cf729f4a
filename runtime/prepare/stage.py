"""The prepare stage: plan → tokenized, masked, fitted, blended, packed `prepared/{train,eval}`.

    per dataset: load raw → normalise + render + tokenize + mask (in-process pipeline; Dataset.map workers
                 when num_proc > 1)
                 → cache entry 1 (key: file bytes, the dataset's own config, tokenizer, template)
    all:         resolve max_length (auto: from every dataset's tokenized lengths)
    per dataset: fit to max_length (strategy) → cache entry 2 (key: entry 1 + length settings)
    all:         subset → eval split → blend (weights, temperature, epochs) → pack → write + report
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from loft.runtime.plan import Bundle
from loft.runtime.prepare import blend, cache, lengths, pack, report
from loft.runtime.prepare.errors import BadSample, PrepareError
from loft.runtime.prepare.formats import DatasetSpec, Example, normalize
from loft.runtime.prepare.load import (
    LINE,
    MalformedLine,
    file_sha256,
    jsonl_columns,
    load_options,
    load_raw,
    row_dicts,
)
from loft.runtime.prepare.split import fit
from loft.runtime.prepare.template import DEFAULT_DATE, SUB_BATCH, Encoder, eot_token_ids
from loft.runtime.vocab import apply_vocabulary

CACHE_VERSION = 1  # bump when the cached columns or their meaning change
BLEND_KEYS = ("weight", "epochs", "subset", "eval_split")  # dataset keys that never change the tokens


@dataclass
class Source:
    """One dataset: plan facts + its config entry."""

    spec: DatasetSpec
    entry: dict[str, Any]
    plan: dict[str, Any]
    local: Path | None
    sha256: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class TokenizeBatch:
    """`Dataset.map` function: raw rows → input_ids, labels, complete, length, bad reason (one row out per row in)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> Any:
        lines = batch[LINE]
        results: list[Any] = [None] * len(lines)

        def chunks() -> Iterator[tuple[list[int], list[Example]]]:
            """Parsed and normalised lazily, one sub-batch at a time, so this Python work overlaps the
            encode of the previous sub-batch (Encoder.encode_stream)."""
            for lo in range(0, len(lines), SUB_BATCH):
                examples: list[Example] = []
                slots: list[int] = []
                for i, row in enumerate(row_dicts(_rows(batch, lo, lo + SUB_BATCH)), start=lo):
                    if isinstance(row, MalformedLine):
                        results[i] = BadSample("malformed_json", f"{row.col}: {row.msg}")
                        continue
                    try:
                        examples.append(normalize(row, self.encoder.spec))
                        slots.append(i)
                    except BadSample as err:
                        results[i] = err
                yield slots, examples

        for slots, encoded in self.encoder.encode_stream(chunks()):
            for i, enc in zip(slots, encoded, strict=True):
                results[i] = enc
        ids_col: list[list[int]] = []
        labels_col: list[list[int]] = []
        complete_col: list[bool] = []
        bad_col: list[str] = []
        detail_col: list[str] = []
        for r in results:
            if isinstance(r, BadSample):
                ids_col.append([])
                labels_col.append([])
                complete_col.append(False)
                bad_col.append(r.reason)
                detail_col.append(r.detail)
            else:
                ids_col.append(r.input_ids)
                labels_col.append(r.labels)
                complete_col.append(r.complete)
                bad_col.append("")
                detail_col.append("")
        return _tokenized_table(ids_col, labels_col, complete_col, list(indices), list(lines), bad_col, detail_col)


def _tokenized_table(ids: list[list[int]], labels: list[list[int]], complete: list[bool], index: list[int],
                     line: list[int], bad: list[str], detail: list[str]) -> Any:
    """The tokenize step's columns as one arrow table (`Dataset.map` accepts a table from the function)."""
    import pyarrow as pa

    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return pa.table({"input_ids": _int32_lists(ids, lengths), "labels": _int32_lists(labels, lengths),
                     "complete": pa.array(complete, pa.bool_()), "length": pa.array(lengths.astype(np.int32)),
                     "index": pa.array(index, pa.int64()), "line": pa.array(line, pa.int64()),
                     "bad": pa.array(bad, pa.string()), "bad_detail": pa.array(detail, pa.string())})


def _int32_lists(lists: list[list[int]], lengths: np.ndarray) -> Any:
    """Lists of ints → an arrow list<int32> array through one flat numpy buffer: about 15x faster than
    pyarrow's conversion of nested Python lists (26 vs 1.8 µs per 70-token row)."""
    import pyarrow as pa

    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(chain.from_iterable(lists), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _rows(batch: dict[str, list[Any]], lo: int, hi: int) -> dict[str, list[Any]]:
    return {k: v[lo:hi] for k, v in batch.items()}


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


def load_tokenizer(bundle: Bundle) -> Any:
    from transformers import AutoTokenizer

    model, cfg = bundle.plan.get("model", {}), bundle.config.get("model", {})
    ref = cfg.get("tokenizer") or model.get("path") or model.get("id") or cfg.get("base")
    if not ref:
        raise PrepareError("plan.lock names no model path/id to take the tokenizer from")
    local = bundle.path(ref)
    name = str(local) if local.exists() else ref
    try:
        tok = AutoTokenizer.from_pretrained(name, revision=None if local.exists() else model.get("revision"),
                                            trust_remote_code=bool(cfg.get("trust_remote_code", False)))
    except OSError as e:
        raise PrepareError(f"cannot load the tokenizer {name!r}: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise PrepareError(f"tokenizer {name!r} has no fast (Rust) version; prepare needs offsets for the loss mask")
    apply_vocabulary(tok, cfg)  # model.special_tokens / added_tokens: before templating, as train does
    return tok


def sources(bundle: Bundle) -> list[Source]:
    entries = {d["name"]: d for d in bundle.config.get("data", {}).get("datasets", [])}
    out = []
    for p in bundle.plan.get("data", {}).get("datasets", []):
        entry = {**entries.get(p["name"], {}), **{k: v for k, v in p.items() if k in ("name",)}}
        is_local = p.get("source", "local") == "local"
        local = bundle.path(p["path"]) if is_local else None
        try:
            spec = DatasetSpec.from_config({**entry, "name": p["name"]})
        except ValueError as e:
            raise PrepareError(str(e)) from None
        out.append(Source(spec=spec, entry=entry, plan=p, local=local))
    if not out:
        raise PrepareError("plan.lock lists no datasets (data.datasets is empty)")
    return out


def resolve_num_proc(setting: Any, rows: int) -> int:
    if isinstance(setting, int) and setting > 0:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # One process keeps about two cores busy (its Python thread + the Rust encode threads, template.py);
    # small sets: worker start-up costs more than it saves.
    return max(1, min(cpus // 2, rows // 4000, 16))


def _column(ds: Any, name: str) -> list[Any]:
    """One column as a Python list, with the dataset's selection (indices mapping) applied."""
    return ds.with_format("arrow")[name].to_pylist()


def run(bundle: Bundle, log: Any = print) -> dict[str, Any]:
    """Prepare the bundle's data; returns the report (also written to prepare_report.json/.md).

    Each Rust encode call runs single-threaded (TOKENIZERS_PARALLELISM=false for the duration): the
    encoder already runs two of them in helper threads beside the Python rendering, and scales out with
    `num_proc` worker processes; the tokenizer's own thread pool on small sub-batches only competed for the
    same cores (measured: 78 vs 123 µs per chat on the 2-core box)."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # Full GC passes walk every tracked object; the ~200k already there (transformers, torch, the caller's
    # data) are not prepare's garbage: frozen for the duration, a pass costs ms instead of ~0.15 s.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        return _run(bundle, log)
    finally:
        if freeze:
            gc.unfreeze()
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _run(bundle: Bundle, log: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    plotter = lengths.Plotter(bundle.out / "lengths.png")  # forked first: no other thread of ours runs yet
    try:
        return _stages(bundle, log, t0, plotter)
    finally:
        plotter.close()


def _stages(bundle: Bundle, log: Any, t0: float, plotter: lengths.Plotter) -> dict[str, Any]:
    # `datasets` (with pandas: ~0.5 s of imports) is first needed to write the first cache entry: import it
    # in a thread meanwhile; it runs while the tokenize pipeline waits on the Rust encode.
    importer = threading.Thread(target=_import_datasets, name="loft-import-datasets", daemon=True)
    importer.start()
    cfg = bundle.config
    data_cfg, seq = cfg.get("data", {}), cfg.get("sequence", {})
    training = cfg.get("training", {})
    seed = int(training.get("seed", 42))
    tmpl = bundle.plan.get("template", {})
    out = bundle.out
    cache_dir = out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = load_tokenizer(bundle)
    template_text = (bundle.root / tmpl.get("file", "chat_template.jinja")).read_text(encoding="utf-8")
    mask_mode = tmpl.get("mask") or ("generation" if "{% generation %}" in template_text else "prefix")
    if mask_mode == "generation" and "generation" not in template_text:
        raise PrepareError("plan template.mask is 'generation' but chat_template.jinja has no {% generation %} tag")
    eot_ids = eot_token_ids(tokenizer, tmpl.get("end_of_turn"))
    bos_id = tokenizer.bos_token_id
    train_on_incomplete = bool(seq.get("train_on_incomplete_assistant", False))
    strategy = seq.get("strategy", "truncate")
    policy = data_cfg.get("bad_samples", "skip")
    tok_hash = cache.tokenizer_hash(tokenizer)
    template_sha = tmpl.get("sha256") or cache.key({"t": template_text})
    template_vars = {"date_string": tmpl.get("date_string") or DEFAULT_DATE}

    srcs = sources(bundle)
    tokenized: dict[str, Any] = {}
    warnings: list[str] = []
    timings: dict[str, float] = {}
    for src in srcs:
        name = src.spec.name
        if src.local is not None:
            if not src.local.exists():
                raise PrepareError(f"dataset {name!r}: {src.local} does not exist")
            src.sha256 = file_sha256(src.local)
            if src.plan.get("sha256") and src.local.is_file() and src.plan["sha256"] != src.sha256:
                warnings.append(f"dataset {name!r}: {src.local.name} changed since `loftc build` "
                                "(sha256 differs from plan.lock); prepared from the file as it is now")
        key1 = cache.key({"v": CACHE_VERSION, "data": src.sha256 or [src.plan.get("path"), src.plan.get("revision")],
                          "split": src.entry.get("split", "train"), "dataset": src.spec.tokenization_config(),
                          "tokenizer": tok_hash, "template": template_sha, "mask": mask_mode, "vars": template_vars,
                          "end_of_turn": tmpl.get("end_of_turn"), "train_on_incomplete": train_on_incomplete})
        path1 = cache.entry(cache_dir, name, key1)
        hit = cache.load(path1)
        t = time.perf_counter()
        if hit is None:
            options = load_options(src.entry)
            if src.local is not None and src.local.is_file() and src.local.suffix.lower() in (".jsonl", ".ndjson") \
                    and options.get("data_files") is None:
                raw = jsonl_columns(src.local)  # no `datasets` needed unless worker processes are
                rows_raw = len(raw[LINE])
            else:
                importer.join()
                raw = load_raw(src.plan["path"], src.local, src.entry.get("split") or "train",
                               src.plan.get("revision"), **options)
                rows_raw = len(raw)
            nproc = resolve_num_proc(data_cfg.get("num_proc", "auto"), rows_raw)
            encoder = Encoder(tokenizer, template_text, mask_mode, tmpl.get("end_of_turn"), src.spec, train_on_incomplete,
                              template_vars=template_vars)
            if nproc > 1:
                importer.join()
                if isinstance(raw, dict):
                    raw = datasets_module().Dataset.from_dict(raw)
                ds = raw.map(TokenizeBatch(encoder), batched=True, batch_size=512, with_indices=True,
                             remove_columns=raw.column_names, num_proc=nproc, features=_TOKENIZED_FEATURES())
            else:
                ds = _tokenize_in_process(raw, TokenizeBatch(encoder), key1, importer)
            meta = {"rows_raw": rows_raw, "mask": encoder.mask_mode, "num_proc": nproc}
            ds = cache.save(path1, ds, meta)
            src.info["cache"] = "miss"
            src.info["tokenized_rows"] = rows_raw
        else:
            ds, meta = hit
            src.info["cache"] = "hit"
            src.info["tokenized_rows"] = 0
        timings[f"tokenize:{name}"] = round(time.perf_counter() - t, 3)
        src.info["rows_raw"] = meta["rows_raw"]
        src.info["mask"] = meta["mask"]
        src.info["num_proc"] = meta.get("num_proc", 1)  # of the run that tokenized it
        src.info["cache_key"] = key1
        bad = np.array(_column(ds, "bad"), dtype=object)
        bad_idx = np.nonzero(bad != "")[0]
        counts: dict[str, int] = {}
        for reason in bad[bad_idx]:
            counts[reason] = counts.get(reason, 0) + 1
        src.info["bad"] = dict(sorted(counts.items()))
        malformed = np.nonzero(bad == "malformed_json")[0]
        if len(malformed):  # never skipped: the file itself is broken
            i = int(malformed[0])
            col, _, msg = _column(ds, "bad_detail")[i].partition(": ")
            shutil.rmtree(path1, ignore_errors=True)  # so a fixed file is not served this entry's error
            raise PrepareError(f"{src.local}:{_column(ds, 'line')[i]}:{col}: malformed JSON line ({msg})"
                               + (f"; {len(malformed) - 1} more malformed lines" if len(malformed) > 1 else ""))
        if len(bad_idx) and policy == "fail":
            lines, details = _column(ds, "line"), _column(ds, "bad_detail")
            where = str(src.local or src.plan["path"])
            shown = "; ".join(f"{where}:{lines[i]}: {bad[i]} ({details[i]})" for i in bad_idx[:5])
            raise PrepareError(f"dataset {name!r}: {len(bad_idx)} bad samples and data.bad_samples is 'fail': {shown}")
        good = ds.select(np.nonzero(bad == "")[0], new_fingerprint=cache.key({"valid": key1})) if len(bad_idx) else ds
        src.info["valid"] = len(good)
        tokenized[name] = good

    all_lengths = np.concatenate([np.asarray(_column(d, "length"), dtype=np.int64) for d in tokenized.values()])
    cap = bundle.plan.get("model", {}).get("max_position_embeddings")
    try:
        max_length, why = lengths.resolve(all_lengths, seq.get("max_length", 2048), seq.get("auto_length", "p95"), cap)
    except ValueError as e:
        raise PrepareError(str(e)) from None

    plotter.send(all_lengths, max_length)
    fitted: dict[str, Any] = {}
    for src in srcs:
        name = src.spec.name
        ds = tokenized[name]
        key2 = cache.key({"v": CACHE_VERSION, "tokenized": src.info["cache_key"], "max_length": max_length,
                          "strategy": strategy, "train_on_incomplete": train_on_incomplete, "bos": bos_id,
                          "eot": sorted(eot_ids)})
        path2 = cache.entry(cache_dir, name, key2)
        hit = cache.load(path2)
        t = time.perf_counter()
        if hit is None:
            fn = FitBatch(name, max_length, strategy, eot_ids, bos_id, train_on_incomplete)
            f = cache.save(path2, _fit_dataset(ds, fn, key2), {"rows": None})
        else:
            f = hit[0]
        timings[f"fit:{name}"] = round(time.perf_counter() - t, 3)
        cache.prune(cache_dir, name, {src.info["cache_key"], key2})
        lens = np.asarray(_column(ds, "length"), dtype=np.int64)
        fit_index = np.asarray(_column(f, "index"), dtype=np.int64)
        src.info["cut"] = int((lens > max_length).sum())
        src.info["dropped"] = int(len(ds) - len(np.unique(fit_index)))
        src.info["chunks"] = int(len(f) - len(np.unique(fit_index))) if strategy == "split" else 0
        src.info["incomplete"] = int(len(f) - sum(_column(f, "complete")))
        src.info["tokens"] = int(lens.sum())
        fitted[name] = f

    # -- subset, eval split, blend: on source indices, so a sample's chunks stay together ------------
    train_sel: dict[str, np.ndarray] = {}
    eval_sel: dict[str, np.ndarray] = {}
    for src in srcs:
        name = src.spec.name
        indices = np.asarray(_column(tokenized[name], "index"), dtype=np.int64)
        if src.entry.get("subset") is not None:
            indices = indices[blend.take(len(indices), src.entry["subset"], blend.rng_for(seed, name, "subset"))]
        ev = src.entry.get("eval_split")
        ev = data_cfg.get("eval_split", 0.0) if ev is None else ev
        pick = blend.take(len(indices), ev, blend.rng_for(seed, name, "eval"))
        mask = np.zeros(len(indices), dtype=bool)
        mask[pick] = True
        train_sel[name], eval_sel[name] = indices[~mask], indices[mask]
    sizes = {s.spec.name: len(train_sel[s.spec.name]) for s in srcs}
    weights = {s.spec.name: float(s.entry.get("weight", 1.0) or 0.0) for s in srcs}
    epochs = {s.spec.name: float(s.entry.get("epochs", 1) or 0) for s in srcs}
    temperature = float(data_cfg.get("temperature", 1.0))
    blend_counts = blend.counts(sizes, weights, epochs, temperature)
    drawn = {n: train_sel[n][blend.draw(len(train_sel[n]), c, blend.rng_for(seed, n, "blend"))]
             for n, c in blend_counts.items()}

    packing = bool(seq.get("packing", True))
    splits = {}
    for split, chosen in (("train", drawn), ("eval", eval_sel)):
        t = time.perf_counter()
        rows, stats = _assemble(fitted, chosen, max_length, packing, blend.rng_for(seed, split, "rows"))
        timings[f"pack:{split}"] = round(time.perf_counter() - t, 3)
        splits[split] = (rows, stats)

    aux = training.get("aux_losses", {}) or {}
    ambiguity_info = None
    if (aux.get("adaptive_label_smoothing") or {}).get("enabled"):
        ambiguity_info = _add_ambiguity(splits, len(tokenizer))

    prepared = out / "prepared"
    for split, (rows, _) in splits.items():
        _write_split(prepared / split, rows, cache.key({"split": split, "seed": seed, "max_length": max_length,
                                                        "data": data_cfg, "sequence": seq,
                                                        "datasets": [s.info["cache_key"] for s in srcs]}))

    plotter.wait()
    config_hash = cache.key({"data": data_cfg, "sequence": seq, "seed": seed})
    blend_meta = {
        "config_hash": config_hash, "seed": seed, "temperature": temperature,
        "datasets": {s.spec.name: {"sha256": s.sha256 or s.plan.get("sha256"), "cache_key": s.info["cache_key"],
                                   "weight": weights[s.spec.name], "epochs": epochs[s.spec.name],
                                   "available": sizes[s.spec.name], "drawn": blend_counts[s.spec.name],
                                   "share": round(blend_counts[s.spec.name] / max(1, sum(blend_counts.values())), 6),
                                   "eval": len(eval_sel[s.spec.name])} for s in srcs},
    }
    (out / "blend_metadata.json").write_text(json.dumps(blend_meta, sort_keys=True, indent=2) + "\n")

    elapsed = time.perf_counter() - t0
    tokenized_tokens = sum(s.info["tokens"] for s in srcs if s.info["cache"] == "miss")
    rep = {
        "max_length": max_length,
        "max_length_source": "auto" if seq.get("max_length") == "auto" else "config",
        "max_length_reason": why,
        "strategy": strategy, "packing": packing, "train_on_incomplete_assistant": train_on_incomplete,
        "bad_samples_policy": policy,
        "template": {"mask": mask_mode, "note": _mask_note(mask_mode, srcs), "end_of_turn": tmpl.get("end_of_turn"),
                     "date_string": template_vars["date_string"],
                     "end_of_turn_ids": sorted(eot_ids)},
        "datasets": {s.spec.name: {**{k: v for k, v in s.info.items() if k != "cache_key"},
                                   "train_samples": len(train_sel[s.spec.name]),
                                   "drawn": blend_counts[s.spec.name],
                                   "eval_samples": len(eval_sel[s.spec.name]), "sha256": s.sha256}
                     for s in srcs},
        "lengths": {**lengths.stats(all_lengths), "histogram": dict(zip(("edges", "counts"),
                                                                        lengths.histogram(all_lengths), strict=True))},
        "would_cut": lengths.would_cut(all_lengths, max_length),
        "train": splits["train"][1], "eval": splits["eval"][1],
        "ambiguity": ambiguity_info,
        "warnings": warnings,
        "blend_config_hash": config_hash,
        "timings_s": {**timings, "total": round(elapsed, 3)},
        "throughput_tokens_per_s": round(tokenized_tokens / elapsed, 1) if tokenized_tokens else None,
    }
    report.write(out, rep)
    log(report.terminal(rep, all_lengths))
    return rep


def _tokenize_in_process(raw: Any, fn: TokenizeBatch, fingerprint: str, importer: threading.Thread,
                         batch_size: int = 4096) -> Any:
    """`raw.map(fn)` without `Dataset.map`'s per-call costs (fingerprinting the function, which pickles the
    tokenizer; an arrow writer per batch): batches in, one arrow table out, written once by the cache.
    `raw` is a Dataset or plain columns (`jsonl_columns`)."""
    import pyarrow as pa

    n = len(raw[LINE]) if isinstance(raw, dict) else len(raw)
    parts = []
    for lo in range(0, n, batch_size):
        batch = {k: v[lo:lo + batch_size] for k, v in raw.items()} if isinstance(raw, dict) else raw[lo:lo + batch_size]
        parts.append(fn(batch, list(range(lo, lo + len(batch[LINE])))))
    importer.join()
    datasets = datasets_module()
    features = _TOKENIZED_FEATURES()
    table = pa.concat_tables(parts).cast(features.arrow_schema) if parts else features.arrow_schema.empty_table()
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=fingerprint)


def _import_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()


def datasets_module() -> Any:
    import datasets

    return datasets


def _fit_dataset(ds: Any, fn: FitBatch, fingerprint: str) -> Any:
    """Samples that fit pass through as arrow (no Python round trip); only the longer ones go through `fn`.
    The result is sorted by source index, chunks of one sample in order."""
    import datasets
    import pyarrow as pa

    cols = ["input_ids", "labels", "complete", "length", "index", "sample_id", "cut"]
    table = _table(ds)
    over = table.column("length").to_numpy() > fn.max_length
    ok = table.filter(pa.array(~over))
    ok = ok.append_column("sample_id", pa.array([f"{fn.name}:{i}" for i in ok.column("index").to_pylist()], pa.string()))
    ok = ok.append_column("cut", pa.array(np.zeros(ok.num_rows, dtype=bool))).select(cols)
    parts = [ok.cast(_FITTED_FEATURES().arrow_schema)]
    if over.any():
        long = ds.select(np.nonzero(over)[0], new_fingerprint=cache.key({"over": fingerprint}))
        done = long.map(fn, batched=True, batch_size=1000, remove_columns=long.column_names,
                        features=_FITTED_FEATURES())
        parts.append(_table(done).select(cols))
    merged = pa.concat_tables(parts).sort_by("index")  # stable: a sample's chunks keep their order
    return datasets.Dataset(merged, fingerprint=fingerprint)  # given: hashing an in-memory table costs seconds


def _TOKENIZED_FEATURES() -> Any:
    from datasets import Features, List, Value

    return Features({"input_ids": List(Value("int32")), "labels": List(Value("int32")), "complete": Value("bool"),
                     "length": Value("int32"), "index": Value("int64"), "line": Value("int64"),
                     "bad": Value("string"), "bad_detail": Value("string")})


def _FITTED_FEATURES() -> Any:
    from datasets import Features, List, Value

    return Features({"input_ids": List(Value("int32")), "labels": List(Value("int32")), "complete": Value("bool"),
                     "length": Value("int32"), "index": Value("int64"), "sample_id": Value("string"),
                     "cut": Value("bool")})


def _mask_note(mode: str, srcs: list[Source]) -> str:
    prefix = [s.spec.name for s in srcs if s.info.get("mask") == "prefix"]
    if mode == "prefix":
        return ("the template has no {% generation %} tags: the loss mask was computed by rendering message "
                "prefixes (one extra render per message)")
    if prefix:
        return (f"datasets {prefix} train roles other than assistant: their mask was computed by rendering "
                "message prefixes; the others use the template's {% generation %} spans")
    return "loss mask from the template's {% generation %} spans (return_assistant_tokens_mask), clipped at each end-of-turn token"


def _table(ds: Any) -> Any:
    """A dataset's rows (its selection applied) as one pyarrow Table."""
    return ds.with_format("arrow")[:]


def _assemble(fitted: dict[str, Any], chosen: dict[str, np.ndarray], max_length: int, packing: bool,
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
        t = _table(f)
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


def _flat(table: Any, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    col = pc.list_flatten(table.column(name))
    return col.to_numpy() if col.num_chunks else np.zeros(0, dtype=np.int64)


def _add_ambiguity(splits: dict[str, tuple[Any, dict[str, Any]]], vocab: int) -> dict[str, Any]:
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


def _write_split(path: Path, table: Any, fingerprint: str) -> None:
    import datasets

    ds = datasets.Dataset(table, fingerprint=fingerprint)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
