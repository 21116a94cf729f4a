"""The prepare stage: plan → tokenized, masked, fitted, blended, packed `prepared/{train,eval}`.

    per dataset: load raw → normalise + render + tokenize + mask (Dataset.map, batched, num_proc)
                 → cache entry 1 (key: file bytes, the dataset's own config, tokenizer, template)
    all:         resolve max_length (auto: from every dataset's tokenized lengths)
    per dataset: fit to max_length (strategy) → cache entry 2 (key: entry 1 + length settings)
    all:         subset → eval split → blend (weights, temperature, epochs) → pack → write + report
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loft.runtime.plan import Bundle
from loft.runtime.prepare import blend, cache, lengths, pack, report
from loft.runtime.prepare.errors import BadSample, PrepareError
from loft.runtime.prepare.formats import DatasetSpec, Example, normalize
from loft.runtime.prepare.load import LINE, file_sha256, load_raw, row_dicts
from loft.runtime.prepare.split import fit
from loft.runtime.prepare.template import Encoder, eot_token_ids

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

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        rows = row_dicts(batch)
        examples: list[Example] = []
        slots: list[int] = []
        results: list[Any] = [None] * len(rows)
        for i, row in enumerate(rows):
            try:
                examples.append(normalize(row, self.encoder.spec))
                slots.append(i)
            except BadSample as err:
                results[i] = err
        for i, enc in zip(slots, self.encoder.encode(examples), strict=True):
            results[i] = enc
        out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "complete": [], "length": [],
                                     "index": [], "line": [], "bad": [], "bad_detail": []}
        for i, r in enumerate(results):
            bad = isinstance(r, BadSample)
            out["input_ids"].append([] if bad else r.input_ids)
            out["labels"].append([] if bad else r.labels)
            out["complete"].append(False if bad else r.complete)
            out["length"].append(0 if bad else len(r.input_ids))
            out["index"].append(indices[i])
            out["line"].append(batch[LINE][i])
            out["bad"].append(r.reason if bad else "")
            out["bad_detail"].append(r.detail if bad else "")
        return out


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
    return max(1, min(cpus, rows // 4000, 16))  # small sets: worker start-up costs more than it saves


def _column(ds: Any, name: str) -> list[Any]:
    return ds.data.column(name).to_pylist()


def run(bundle: Bundle, log: Any = print) -> dict[str, Any]:
    """Prepare the bundle's data; returns the report (also written to prepare_report.json/.md)."""
    import datasets

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
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
                          "tokenizer": tok_hash, "template": template_sha, "mask": mask_mode,
                          "end_of_turn": tmpl.get("end_of_turn"), "train_on_incomplete": train_on_incomplete})
        path1 = cache.entry(cache_dir, name, key1)
        hit = cache.load(path1)
        t = time.perf_counter()
        if hit is None:
            raw = load_raw(src.plan["path"], src.local, src.entry.get("split") or "train", src.plan.get("revision"))
            nproc = resolve_num_proc(data_cfg.get("num_proc", "auto"), len(raw))
            encoder = Encoder(tokenizer, template_text, mask_mode, tmpl.get("end_of_turn"), src.spec, train_on_incomplete)
            ds = raw.map(TokenizeBatch(encoder), batched=True, batch_size=256, with_indices=True,
                         remove_columns=raw.column_names, num_proc=nproc if nproc > 1 else None,
                         features=_TOKENIZED_FEATURES())
            meta = {"rows_raw": len(raw), "mask": encoder.mask_mode, "num_proc": nproc}
            ds = cache.save(path1, ds, meta)
            src.info["cache"] = "miss"
            src.info["tokenized_rows"] = len(raw)
        else:
            ds, meta = hit
            src.info["cache"] = "hit"
            src.info["tokenized_rows"] = 0
        timings[f"tokenize:{name}"] = round(time.perf_counter() - t, 3)
        src.info["rows_raw"] = meta["rows_raw"]
        src.info["mask"] = meta["mask"]
        src.info["cache_key"] = key1
        bad = np.array(_column(ds, "bad"), dtype=object)
        bad_idx = np.nonzero(bad != "")[0]
        counts: dict[str, int] = {}
        for reason in bad[bad_idx]:
            counts[reason] = counts.get(reason, 0) + 1
        src.info["bad"] = dict(sorted(counts.items()))
        if len(bad_idx) and policy == "fail":
            lines, details = _column(ds, "line"), _column(ds, "bad_detail")
            where = str(src.local or src.plan["path"])
            shown = "; ".join(f"{where}:{lines[i]}: {bad[i]} ({details[i]})" for i in bad_idx[:5])
            raise PrepareError(f"dataset {name!r}: {len(bad_idx)} bad samples and data.bad_samples is 'fail': {shown}")
        good = ds.select(np.nonzero(bad == "")[0]) if len(bad_idx) else ds
        src.info["valid"] = len(good)
        tokenized[name] = good

    all_lengths = np.concatenate([np.asarray(_column(d, "length"), dtype=np.int64) for d in tokenized.values()])
    cap = bundle.plan.get("model", {}).get("max_position_embeddings")
    try:
        max_length, why = lengths.resolve(all_lengths, seq.get("max_length", 2048), seq.get("auto_length", "p95"), cap)
    except ValueError as e:
        raise PrepareError(str(e)) from None

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
            f = ds.map(fn, batched=True, batch_size=1000, remove_columns=ds.column_names, features=_FITTED_FEATURES())
            f = cache.save(path2, f, {"rows": len(f)})
        else:
            f = hit[0]
        timings[f"fit:{name}"] = round(time.perf_counter() - t, 3)
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
        _write_split(prepared / split, rows)

    plot_lengths = all_lengths
    lengths.plot(plot_lengths, max_length, out / "lengths.png")
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


def _assemble(fitted: dict[str, Any], chosen: dict[str, np.ndarray], max_length: int, packing: bool,
              rng: np.random.Generator) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Rows for one split: every piece of every chosen source index (repeats included), packed or not."""
    ids: list[list[int]] = []
    labels: list[list[int]] = []
    sids: list[str] = []
    for name, f in fitted.items():
        sel = chosen.get(name)
        if sel is None or len(sel) == 0:
            continue
        index = np.asarray(_column(f, "index"), dtype=np.int64)
        lo, hi = np.searchsorted(index, sel, "left"), np.searchsorted(index, sel, "right")
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)]) if len(sel) else np.zeros(0, int)
        if len(rows) == 0:
            continue
        col_ids, col_labels, col_sid = _column(f, "input_ids"), _column(f, "labels"), _column(f, "sample_id")
        for r in rows.tolist():
            ids.append(col_ids[r])
            labels.append(col_labels[r])
            sids.append(col_sid[r])
    lens = [len(x) for x in ids]
    bins = pack.pack(lens, max_length) if packing else [[i] for i in range(len(ids))]
    order = rng.permutation(len(bins)) if bins else np.zeros(0, int)
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "position_ids": [], "sample_ids": [], "length": []}
    for b in order.tolist():
        members = bins[b]
        out["input_ids"].append([t for i in members for t in ids[i]])
        out["labels"].append([t for i in members for t in labels[i]])
        out["position_ids"].append([p for i in members for p in range(lens[i])])
        out["sample_ids"].append([sids[i] for i in members])
        out["length"].append(sum(lens[i] for i in members))
    trained = sum(sum(1 for v in lab if v != -100) for lab in labels)
    stats = {"rows": len(bins), "samples": len(ids), "tokens": int(sum(lens)), "trained_tokens": int(trained),
             "packing_efficiency": round(pack.efficiency(lens, bins, max_length), 4) if packing else None,
             "padding_free_fraction": round(sum(lens) / (len(bins) * max_length), 4) if bins else None}
    return out, stats


def _add_ambiguity(splits: dict[str, tuple[dict[str, list[Any]], dict[str, Any]]], vocab: int) -> dict[str, Any]:
    """Per-token ambiguity for adaptive label smoothing: the normalised entropy of the next-token
    distribution after the previous token, from bigram counts over the train split.

    ambiguity[t] = H(next | input_ids[t-1]) / ln(vocab) ∈ [0, 1], aligned with labels[t] (the token
    predicted at position t-1); 0 at each sample's first position and where labels[t] = -100."""
    rows = splits["train"][0]
    a_parts, b_parts = [], []
    for ids, pos in zip(rows["input_ids"], rows["position_ids"], strict=True):
        arr, p = np.asarray(ids, dtype=np.int64), np.asarray(pos)
        keep = p[1:] != 0
        a_parts.append(arr[:-1][keep])
        b_parts.append(arr[1:][keep])
    a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    entropy = np.zeros(max(vocab, int(a.max(initial=0)) + 1, int(b.max(initial=0)) + 1))
    if len(a):
        pairs, counts = np.unique(a * len(entropy) + b, return_counts=True)
        first = pairs // len(entropy)
        totals = np.bincount(first, weights=counts, minlength=len(entropy))
        prob = counts / totals[first]
        np.add.at(entropy, first, -prob * np.log(prob))
    norm = np.log(max(vocab, 2))
    for split in splits.values():
        r = split[0]
        r["ambiguity"] = []
        for ids, pos, lab in zip(r["input_ids"], r["position_ids"], r["labels"], strict=True):
            arr, p, lb = np.asarray(ids, dtype=np.int64), np.asarray(pos), np.asarray(lab)
            amb = np.zeros(len(arr))
            amb[1:] = entropy[arr[:-1]] / norm
            amb[(p == 0) | (lb == -100)] = 0.0
            r["ambiguity"].append(np.round(amb, 5).astype(np.float32).tolist())
    return {"method": "bigram next-token entropy / ln(vocab)", "aligned_with": "labels", "bigrams": len(a),
            "mean_on_trained_tokens": round(float(np.mean([x for r in splits["train"][0]["ambiguity"] for x in r if x > 0]
                                                          or [0.0])), 5)}


def _write_split(path: Path, rows: dict[str, list[Any]]) -> None:
    import datasets

    ds = datasets.Dataset.from_dict(rows)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
