"""The prepare stage: plan → tokenized, masked, fitted, blended, packed `prepared/{train,eval}`.

    per dataset: load raw → normalise + render + tokenize + mask (tokenize.py; Dataset.map workers
                 when num_proc > 1) → cache entry 1 (key: file bytes, the dataset's own config, tokenizer,
                 template)
    all:         resolve max_length (auto: from every dataset's tokenized lengths)
    per dataset: fit to max_length (strategy; rows.py) → cache entry 2 (key: entry 1 + length settings)
    all:         subset → eval split → blend (weights, temperature, epochs) → pack → write + report

`_stages` runs these steps in order; each step is a function below, named for what it does.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from loft.runtime import blend_counts, schedule
from loft.runtime.plan import Bundle
from loft.runtime.prepare import blend, cache, lengths, report
from loft.runtime.prepare.ambiguity import add_ambiguity
from loft.runtime.prepare.blocklist import Blocklist
from loft.runtime.prepare.blocklist import load as load_blocklist
from loft.runtime.prepare.errors import PrepareError
from loft.runtime.prepare.formats import DatasetSpec
from loft.runtime.prepare.load import LINE, file_sha256, jsonl_columns, load_options, load_raw
from loft.runtime.prepare.rows import FitBatch, assemble, fit_dataset
from loft.runtime.prepare.template import Encoder, eot_token_ids, template_variables
from loft.runtime.prepare.tokenize import (
    TokenizeBatch,
    datasets_module,
    import_datasets,
    tokenize_in_process,
    tokenize_in_workers,
)
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


@dataclass
class Settings:
    """What prepare reads from the plan (and derives from the tokenizer and template), read once."""

    data: dict[str, Any]
    sequence: dict[str, Any]
    training: dict[str, Any]
    seed: int
    template: dict[str, Any]
    out: Path
    cache_dir: Path
    tokenizer: Any
    template_text: str
    mask_mode: str
    eot_ids: frozenset[int]
    bos_id: int | None
    train_on_incomplete: bool
    strategy: str
    policy: str
    tokenizer_hash: str
    template_sha: str
    template_vars: dict[str, Any]
    blocklist: Blocklist = field(default_factory=Blocklist)


@dataclass
class Selection:
    """Which source samples each split takes: subset → eval split → blend, on source indices."""

    train: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    sizes: dict[str, int]
    weights: dict[str, float]
    epochs: dict[str, float]
    temperature: float
    counts: dict[str, int]
    drawn: dict[str, np.ndarray]


def load_tokenizer(bundle: Bundle) -> Any:
    from transformers import AutoTokenizer

    model, cfg = bundle.plan["model"], bundle.config["model"]
    ref = cfg["tokenizer"] or model["path"] or model["id"] or cfg["base"]
    if not ref:
        raise PrepareError("plan.lock names no model path/id to take the tokenizer from")
    local = bundle.path(ref)
    name = str(local) if local.exists() else ref
    try:
        tok = AutoTokenizer.from_pretrained(name, revision=None if local.exists() else model["revision"],
                                            trust_remote_code=bool(cfg["trust_remote_code"]))
    except OSError as e:
        raise PrepareError(f"cannot load the tokenizer {name!r}: {e}") from None
    if not getattr(tok, "is_fast", False):
        raise PrepareError(f"tokenizer {name!r} has no fast (Rust) version; prepare needs offsets for the loss mask")
    apply_vocabulary(tok, cfg)  # model.special_tokens / added_tokens: before templating, as train does
    return tok


def sources(bundle: Bundle) -> list[Source]:
    entries = {d["name"]: d for d in bundle.config["data"]["datasets"]}
    out = []
    for p in bundle.plan["data"]["datasets"]:
        entry = {**entries.get(p["name"], {}), **{k: v for k, v in p.items() if k in ("name",)}}
        is_local = p["source"] == "local"
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
    importer = threading.Thread(target=import_datasets, name="loft-import-datasets", daemon=True)
    importer.start()
    s = _settings(bundle)
    srcs = sources(bundle)
    warnings: list[str] = []
    timings: dict[str, float] = {}
    s.blocklist = load_blocklist(bundle, warnings)
    tokenized = {src.spec.name: _tokenize_source(src, s, importer, warnings, timings) for src in srcs}
    for src in srcs:  # an empty dataset would only fail later, inside datasets/pyarrow
        if len(tokenized[src.spec.name]) == 0:
            bad = src.info.get("bad") or {}
            why = ", ".join(f"{k}: {v}" for k, v in sorted(bad.items())) or "the source has no rows"
            raise PrepareError(f"dataset {src.spec.name!r}: no usable rows after filtering ({why})"
                               + (f" in {src.local}" if src.local is not None else ""))
    all_lengths = np.concatenate([np.asarray(_column(d, "length"), dtype=np.int64) for d in tokenized.values()])
    max_length, why = _max_length(bundle, s, all_lengths)
    plotter.send(all_lengths, max_length)
    fitted = {src.spec.name: _fit_source(src, tokenized[src.spec.name], s, max_length, timings) for src in srcs}
    sel = _select(srcs, tokenized, s)
    blocked = s.blocklist.report([src.spec.name for src in srcs])
    if blocked and blocked["unmatched"]:
        warnings.append(f"data.blocklist: {blocked['unmatched']} of {blocked['entries']} ids matched no valid sample"
                        + (f" (unknown datasets: {', '.join(blocked['unknown_datasets'])})"
                           if blocked["unknown_datasets"] else ""))
    splits = _assemble_splits(fitted, sel, max_length, s, timings)
    ambiguity_info = _ambiguity(s, splits)
    _write_splits(s, splits, srcs, max_length)
    plotter.wait()
    config_hash = _write_blend_metadata(s, srcs, sel)
    steps = _write_schedule(bundle, splits, sel)
    rep = _report(s, srcs, sel, splits, all_lengths, max_length, why, ambiguity_info, warnings, timings,
                  config_hash, time.perf_counter() - t0)
    rep["schedule"] = steps
    report.write(s.out, rep)
    log(report.terminal(rep, all_lengths))
    return rep


def _settings(bundle: Bundle) -> Settings:
    """The plan's data/sequence/training/template settings, the tokenizer and the template text."""
    cfg = bundle.config
    data_cfg, seq = cfg["data"], cfg["sequence"]
    training = cfg["training"]
    tmpl = bundle.plan["template"]
    out = bundle.out
    cache_dir = bundle.base_out / "cache"  # one per-dataset cache for the run and its sweep trials
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(bundle)
    template_text = (bundle.root / tmpl["file"]).read_text(encoding="utf-8")
    mask_mode = tmpl["mask"]
    if mask_mode == "generation" and "generation" not in template_text:
        raise PrepareError("plan template.mask is 'generation' but chat_template.jinja has no {% generation %} tag")
    return Settings(
        data=data_cfg, sequence=seq, training=training, seed=int(training["seed"]), template=tmpl,
        out=out, cache_dir=cache_dir, tokenizer=tokenizer, template_text=template_text, mask_mode=mask_mode,
        eot_ids=eot_token_ids(tokenizer, tmpl["end_of_turn"]), bos_id=tokenizer.bos_token_id,
        train_on_incomplete=bool(seq["train_on_incomplete_assistant"]),
        strategy=seq["strategy"], policy=data_cfg["bad_samples"],
        tokenizer_hash=cache.tokenizer_hash(tokenizer),
        template_sha=tmpl["sha256"],
        template_vars=template_variables(tmpl))


def _tokenize_source(src: Source, s: Settings, importer: threading.Thread, warnings: list[str],
                     timings: dict[str, float]) -> Any:
    """One dataset tokenized and masked (cache entry 1), its bad samples counted (or fatal), the valid rows."""
    name = src.spec.name
    if src.local is not None:
        if not src.local.exists():
            raise PrepareError(f"dataset {name!r}: {src.local} does not exist")
        src.sha256 = file_sha256(src.local)
        if src.plan.get("sha256") and src.local.is_file() and src.plan["sha256"] != src.sha256:
            drift = (f"dataset {name!r}: {src.local} changed since `loftc build`: sha256 {src.sha256} now, "
                     f"{src.plan['sha256']} in plan.lock")
            if os.environ.get("LOFT_ALLOW_DATA_DRIFT") != "1":  # the plan is the contract: no silent drift
                raise PrepareError(drift + "; rebuild the bundle (loftc build), or set LOFT_ALLOW_DATA_DRIFT=1 to "
                                   "prepare from the file as it is now (recorded in prepare_report.json)")
            warnings.append(drift + "; prepared from the file as it is now (LOFT_ALLOW_DATA_DRIFT=1)")
    tmpl = s.template
    key1 = cache.key({"v": CACHE_VERSION, "data": src.sha256 or [src.plan.get("path"), src.plan.get("revision")],
                      "split": src.entry.get("split", "train"), "dataset": src.spec.tokenization_config(),
                      "tokenizer": s.tokenizer_hash, "template": s.template_sha, "mask": s.mask_mode,
                      "vars": s.template_vars, "end_of_turn": tmpl.get("end_of_turn"),
                      "train_on_incomplete": s.train_on_incomplete})
    path1 = cache.entry(s.cache_dir, name, key1)
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
        nproc = resolve_num_proc(s.data["num_proc"], rows_raw)
        encoder = Encoder(s.tokenizer, s.template_text, s.mask_mode, tmpl.get("end_of_turn"), src.spec,
                          s.train_on_incomplete, template_vars=s.template_vars)
        if nproc > 1:
            importer.join()
            if isinstance(raw, dict):
                raw = datasets_module().Dataset.from_dict(raw)
            ds = tokenize_in_workers(raw, TokenizeBatch(encoder), nproc)
        else:
            ds = tokenize_in_process(raw, TokenizeBatch(encoder), key1, importer)
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
    return _valid_rows(src, ds, path1, s.policy)


def _valid_rows(src: Source, ds: Any, path1: Path, policy: str) -> Any:
    """Bad samples counted per reason; a malformed line is always fatal, other bad rows when policy is fail."""
    name, key1 = src.spec.name, src.info["cache_key"]
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
    return good


def _max_length(bundle: Bundle, s: Settings, all_lengths: np.ndarray) -> tuple[int, str]:
    """sequence.max_length, or the auto length from every dataset's tokenized lengths (capped by the model)."""
    cap = bundle.plan["model"]["max_position_embeddings"]
    try:
        return lengths.resolve(all_lengths, s.sequence["max_length"], s.sequence["auto_length"], cap)
    except ValueError as e:
        raise PrepareError(str(e)) from None


def _fit_source(src: Source, ds: Any, s: Settings, max_length: int, timings: dict[str, float]) -> Any:
    """One dataset's samples fitted to max_length (cache entry 2); cut/dropped/chunk counts recorded."""
    name = src.spec.name
    strategy = src.entry.get("strategy") or s.strategy  # a dataset's own over-length rule wins
    key2 = cache.key({"v": CACHE_VERSION, "tokenized": src.info["cache_key"], "max_length": max_length,
                      "strategy": strategy, "train_on_incomplete": s.train_on_incomplete, "bos": s.bos_id,
                      "eot": sorted(s.eot_ids)})
    path2 = cache.entry(s.cache_dir, name, key2)
    hit = cache.load(path2)
    t = time.perf_counter()
    if hit is None:
        fn = FitBatch(name, max_length, strategy, s.eot_ids, s.bos_id, s.train_on_incomplete)
        f = cache.save(path2, fit_dataset(ds, fn, key2), {"rows": None})
    else:
        f = hit[0]
    timings[f"fit:{name}"] = round(time.perf_counter() - t, 3)
    cache.prune(s.cache_dir, name, {src.info["cache_key"], key2})
    lens = np.asarray(_column(ds, "length"), dtype=np.int64)
    fit_index = np.asarray(_column(f, "index"), dtype=np.int64)
    src.info["cut"] = int((lens > max_length).sum())
    src.info["dropped"] = int(len(ds) - len(np.unique(fit_index)))
    src.info["chunks"] = int(len(f) - len(np.unique(fit_index))) if strategy in ("split", "chunk") else 0
    src.info["incomplete"] = int(len(f) - sum(_column(f, "complete")))
    src.info["tokens"] = int(lens.sum())
    return f


def _select(srcs: list[Source], tokenized: dict[str, Any], s: Settings) -> Selection:
    """Subset, eval split, blend: on source indices, so a sample's chunks stay together."""
    seed, data_cfg = s.seed, s.data
    train_sel: dict[str, np.ndarray] = {}
    eval_sel: dict[str, np.ndarray] = {}
    for src in srcs:
        name = src.spec.name
        indices = s.blocklist.drop(name, np.asarray(_column(tokenized[name], "index"), dtype=np.int64))
        if src.entry["subset"] is not None and src.entry["subset_mode"] == "first":
            indices = indices[indices < blend_counts.amount(int(src.info["rows_raw"]), src.entry["subset"])]
        elif src.entry["subset"] is not None:
            indices = indices[blend.take(len(indices), src.entry["subset"], blend.rng_for(seed, name, "subset"))]
        ev = src.entry["eval_split"]
        ev = data_cfg["eval_split"] if ev is None else ev
        pick = blend.take(len(indices), ev, blend.rng_for(seed, name, "eval"))
        mask = np.zeros(len(indices), dtype=bool)
        mask[pick] = True
        train_sel[name], eval_sel[name] = indices[~mask], indices[mask]
    sizes = {src.spec.name: len(train_sel[src.spec.name]) for src in srcs}
    weights = {src.spec.name: float(src.entry["weight"]) for src in srcs}
    epochs = {src.spec.name: float(src.entry["epochs"]) for src in srcs}
    temperature = float(data_cfg["temperature"])
    counts = blend_counts.counts(sizes, weights, epochs, temperature)
    drawn = {n: train_sel[n][blend.draw(len(train_sel[n]), c, blend.rng_for(seed, n, "blend"))]
             for n, c in counts.items()}
    return Selection(train=train_sel, eval=eval_sel, sizes=sizes, weights=weights, epochs=epochs,
                     temperature=temperature, counts=counts, drawn=drawn)


Splits = dict[str, tuple[Any, dict[str, Any]]]


def _assemble_splits(fitted: dict[str, Any], sel: Selection, max_length: int, s: Settings,
                     timings: dict[str, float]) -> Splits:
    """The train (blended) and eval rows, packed or padded, each with its stats."""
    packing = bool(s.sequence["packing"])
    splits: Splits = {}
    for split, chosen in (("train", sel.drawn), ("eval", sel.eval)):
        t = time.perf_counter()
        rows, stats = assemble(fitted, chosen, max_length, packing, blend.rng_for(s.seed, split, "rows"))
        timings[f"pack:{split}"] = round(time.perf_counter() - t, 3)
        splits[split] = (rows, stats)
    return splits


def _ambiguity(s: Settings, splits: Splits) -> dict[str, Any] | None:
    """The per-token ambiguity column, only for adaptive label smoothing."""
    if s.training["aux_losses"]["adaptive_label_smoothing"]["enabled"]:
        return add_ambiguity(splits, len(s.tokenizer))
    return None


def _write_splits(s: Settings, splits: Splits, srcs: list[Source], max_length: int) -> None:
    prepared = s.out / "prepared"
    for split, (rows, _) in splits.items():
        _write_split(prepared / split, rows, cache.key({"split": split, "seed": s.seed, "max_length": max_length,
                                                        "data": s.data, "sequence": s.sequence,
                                                        "datasets": [src.info["cache_key"] for src in srcs]}))


def _write_schedule(bundle: Bundle, splits: Splits, sel: Selection) -> dict[str, Any]:
    """prepared/schedule.json: the plan's step formula (runtime/schedule.py) over the prepared train rows,
    with the blend counts (runtime/blend_counts.py) over the rows each dataset really has."""
    glob = bundle.derived["global_batch_size"]
    steps = schedule.resolve(bundle.config["training"], splits["train"][1]["rows"],
                             glob if isinstance(glob, int) else None)
    blend_rows = {name: {"available": sel.sizes[name], "drawn": sel.counts[name]} for name in sel.counts}
    return schedule.write(bundle.out / "prepared", steps, blend_rows)


def _write_blend_metadata(s: Settings, srcs: list[Source], sel: Selection) -> str:
    """blend_metadata.json; returns its config hash (data + sequence + seed)."""
    config_hash = cache.key({"data": s.data, "sequence": s.sequence, "seed": s.seed})
    total = max(1, sum(sel.counts.values()))
    blend_meta = {
        "config_hash": config_hash, "seed": s.seed, "temperature": sel.temperature,
        "datasets": {src.spec.name: {"sha256": src.sha256 or src.plan.get("sha256"),
                                     "cache_key": src.info["cache_key"],
                                     "weight": sel.weights[src.spec.name], "epochs": sel.epochs[src.spec.name],
                                     "available": sel.sizes[src.spec.name], "drawn": sel.counts[src.spec.name],
                                     "share": round(sel.counts[src.spec.name] / total, 6),
                                     "eval": len(sel.eval[src.spec.name])} for src in srcs},
    }
    (s.out / "blend_metadata.json").write_text(json.dumps(blend_meta, sort_keys=True, indent=2) + "\n")
    return config_hash


def _report(s: Settings, srcs: list[Source], sel: Selection, splits: Splits, all_lengths: np.ndarray,
            max_length: int, why: str, ambiguity_info: dict[str, Any] | None, warnings: list[str],
            timings: dict[str, float], config_hash: str, elapsed: float) -> dict[str, Any]:
    """prepare_report.json's content."""
    tokenized_tokens = sum(src.info["tokens"] for src in srcs if src.info["cache"] == "miss")
    return {
        "max_length": max_length,
        "max_length_source": "auto" if s.sequence["max_length"] == "auto" else "config",
        "max_length_reason": why,
        "strategy": s.strategy, "packing": bool(s.sequence["packing"]),
        "train_on_incomplete_assistant": s.train_on_incomplete,
        "bad_samples_policy": s.policy,
        "template": {"mask": s.mask_mode, "note": _mask_note(s.mask_mode, srcs),
                     "end_of_turn": s.template["end_of_turn"],
                     "date_string": s.template_vars["date_string"],
                     "end_of_turn_ids": sorted(s.eot_ids)},
        "datasets": {src.spec.name: {**{k: v for k, v in src.info.items() if k != "cache_key"},
                                     "train_samples": len(sel.train[src.spec.name]),
                                     "drawn": sel.counts[src.spec.name],
                                     "eval_samples": len(sel.eval[src.spec.name]), "sha256": src.sha256}
                     for src in srcs},
        "lengths": {**lengths.stats(all_lengths), "histogram": dict(zip(("edges", "counts"),
                                                                        lengths.histogram(all_lengths), strict=True))},
        "would_cut": lengths.would_cut(all_lengths, max_length),
        "train": splits["train"][1], "eval": splits["eval"][1],
        "ambiguity": ambiguity_info,
        "blocklist": s.blocklist.report([src.spec.name for src in srcs]),
        "warnings": warnings,
        "blend_config_hash": config_hash,
        "timings_s": {**timings, "total": round(elapsed, 3)},
        "throughput_tokens_per_s": round(tokenized_tokens / elapsed, 1) if tokenized_tokens else None,
    }


def _mask_note(mode: str, srcs: list[Source]) -> str:
    prefix = [s.spec.name for s in srcs if s.info.get("mask") == "prefix"]
    if mode == "prefix":
        return ("the template has no {% generation %} tags: the loss mask was computed by rendering message "
                "prefixes (one extra render per message)")
    if prefix:
        return (f"datasets {prefix} train roles other than assistant: their mask was computed by rendering "
                "message prefixes; the others use the template's {% generation %} spans")
    return "loss mask from the template's {% generation %} spans (return_assistant_tokens_mask), clipped at each end-of-turn token"


def _write_split(path: Path, table: Any, fingerprint: str) -> None:
    import datasets

    ds = datasets.Dataset(table, fingerprint=fingerprint)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
