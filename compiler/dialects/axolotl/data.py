"""The datasets section: each Axolotl dataset entry becomes a loft dataset (format, fields, split, masking)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from ...errors import did_you_mean
from ...names import safe_name
from . import keys as K
from .context import Translation, num, off
from .template import template as choose_template

DATASET_FORMATS = ("chat_template", "alpaca", "completion", "input_output", "sharegpt", "pretrain")
# Dataset keys that only mean something for some types (others: Axolotl ignores them; a warning).
_CHAT_KEYS = ("field_messages", "message_property_mappings", "message_field_role", "message_field_content",
              "roles_to_train", "train_on_eos", "roles", "chat_template", "chat_template_jinja", "field_thinking",
              "template_thinking_key")
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "chat_template": _CHAT_KEYS,
    "alpaca": (),  # Axolotl's alpaca types read instruction / input / output; field_* are user_defined's
    "completion": ("field",),
    "pretrain": ("text_column",),
    "sharegpt": _CHAT_KEYS,
}
# Axolotl's Alpaca types: `type` (before any `:style`) -> the prompt style it uses without one.
ALPACA_TYPES = {"alpaca": "instruct", "alpaca_chat": "chat", "alpaca_instruct": "instruct"}
ALPACA_STYLES = ("instruct", "chat", "chatml", "phi")
_TYPE_SPECIFIC = frozenset(k for keys in _TYPE_KEYS.values() for k in keys)
_SPLIT = re.compile(r"^\s*(?P<split>[A-Za-z0-9_.-]+)\s*(\[\s*(?P<start>[^:\]]*)\s*:\s*(?P<end>[^\]]*)\s*\])?\s*$")


def datasets(t: Translation) -> None:
    raw = t.d.get("datasets")
    pre = t.d.get("pretraining_dataset")
    entries: list[tuple[str, int, Any]] = []
    if isinstance(raw, list):
        entries += [("datasets", i, ds) for i, ds in enumerate(raw)]
    elif raw is not None:
        t.err(["datasets"], "must be a list of datasets", code="type")
    if isinstance(pre, list):
        entries += [("pretraining_dataset", i, ds) for i, ds in enumerate(pre)]
    elif pre is not None:
        t.err(["pretraining_dataset"], "must be a list of datasets", code="type")
    if not entries:
        if raw is None and pre is None:
            t.err([], "no `datasets` (or `pretraining_dataset`) to train on", code="missing-key")
        return
    out: list[dict[str, Any]] = []
    names: set[str] = set()
    templates: dict[str, tuple[str, int]] = {}
    formats: set[str] = set()
    for top, i, ds in entries:
        loc: list[object] = [top, i]
        if not isinstance(ds, dict):
            t.err(loc, "each dataset must be a mapping with at least `path` and `type`", code="type")
            continue
        item = dataset(t, loc, ds, pretraining=(top == "pretraining_dataset"))
        if item is None:
            continue
        tmpl = ds.get("chat_template")
        if isinstance(tmpl, str) and tmpl:
            templates.setdefault(tmpl, (top, i))
        if item["format"] in ("messages", "sharegpt"):
            formats.add(item["format"])  # the formats the chat template renders
        base = item.pop("_stem")
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        out.append({"name": name, **item})
    if out and len(out) == len(entries):
        t.put("data.datasets", out, *sorted({top for top, _, _ in entries}))
    choose_template(t, templates, formats)
    vss = t.d.get("val_set_size")
    if vss is not None:
        v = num(vss)
        if v is None or v < 0:
            t.err(["val_set_size"], f"expected a fraction (0 to 1) or a row count, got {vss!r}", code="type")
        else:
            t.put("data.eval_split", int(v) if v >= 1 else v, "val_set_size")
    nproc = t.d.get("dataset_processes", t.d.get("dataset_num_proc"))
    if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 0:
        t.put("data.num_proc", nproc, "dataset_processes")


def dataset(t: Translation, loc: list[object], ds: dict[str, Any], pretraining: bool) -> dict[str, Any] | None:
    """One Axolotl dataset entry -> one loft dataset (without its unique name yet)."""
    bad = False
    for k, v in ds.items():
        kind = K.kind_of(k, "dataset")
        problem = K.type_problem(k, v, "dataset") if kind and v is not None else ""
        if kind is None:
            t.err([*loc, k], "is not an Axolotl dataset key", code="unknown-key",
                  hint=did_you_mean(k, K.all_keys("dataset")))
            bad = True
        elif problem:
            t.err([*loc, k], problem, code="type")
            bad = True
        elif off(v) or K.is_default(k, v, "dataset"):
            continue
        elif kind == "unsupported":
            t.err([*loc, k], f"is not supported: {K.why(k, 'dataset')}")
            bad = True
        elif kind == "no-effect":
            t.warn([*loc, k], "has no effect in loft (the file format is taken from the extension)"
                   if k == "ds_type" else "has no effect in loft")
    path = ds.get("path")
    if not isinstance(path, str) or not path.strip() or path.startswith("<"):
        t.err([*loc, "path"] if "path" in ds else loc, f"dataset path {path!r} is missing or a placeholder",
              code="missing-key", expected="a hub dataset id or a local file")
        return None
    typ = ds.get("type", "pretrain" if pretraining else None)
    if isinstance(typ, dict):
        t.err([*loc, "type"], "user-defined prompt formats are not supported", hint="use alpaca, "
              "completion, input_output or chat_template")
        return None
    if typ is None:
        t.err([*loc, "type"] if "type" in ds else loc, "every dataset needs a `type`", code="missing-key",
              expected=" | ".join(DATASET_FORMATS))
        return None
    typ = str(typ)
    item: dict[str, Any] = {"path": path.strip()}
    stem = PurePosixPath(path.strip().rstrip("/")).name
    for ext in (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    item["_stem"] = safe_name(stem, "data", sep="-")
    base, _, style = typ.partition(":")
    base = base.split(".")[0] if base.startswith("sharegpt") else base
    if base == "chat_template" and typ not in ("chat_template", "chat_template.default"):
        t.err([*loc, "type"], f"dataset type {typ!r} is not supported", expected="chat_template")
        return None
    if typ == "chat_template.default" and not t.d.get("rl"):
        typ = base = "chat_template"
    if base == "chat_template":
        item["format"] = "messages"
        messages(t, loc, ds, item)
    elif base == "sharegpt":
        item["format"] = "sharegpt"
        messages(t, loc, ds, item)
        t.warn([*loc, "type"], "Axolotl removed `sharegpt` types (use chat_template); loft still reads "
               "ShareGPT rows (conversations / from / value)", code="axolotl-differs")
    elif base in ALPACA_TYPES and (style or ALPACA_TYPES[base]) in ALPACA_STYLES and "." not in typ:
        # Axolotl renders these with its Alpaca prompt (never the chat template): the prompt untrained
        # unless train_on_inputs, the response + eos trained, the tokenizer's own bos
        item.update(format="alpaca", prompt_style=style or ALPACA_TYPES[base], special_tokens="tokenizer")
    elif base == "completion" and not style:
        # Axolotl: the whole text trained (bos and eos from the tokenizer), cut into sequence_len chunks
        item.update(format="completion", special_tokens="tokenizer", strategy="chunk")
        if isinstance(ds.get("field"), str) and ds["field"] != "text":
            item["fields"] = {"text": ds["field"]}
    elif base == "pretrain":
        item["format"] = "completion"
        col = ds.get("text_column")
        if isinstance(col, str) and col != "text":
            item["fields"] = {"text": col}
    elif base == "input_output" and not style:
        item.update(format="input_output", special_tokens="none")  # Axolotl adds no bos/eos to segments
    else:
        t.err([*loc, "type"], f"dataset type {typ!r} is not supported",
              expected="chat_template | alpaca[:chat|:chatml|:phi] | alpaca_chat | completion | input_output",
              hint=did_you_mean(typ, DATASET_FORMATS))
        return None
    relevant = _TYPE_KEYS.get(base, ())
    for k, v in ds.items():
        if k in _TYPE_SPECIFIC and k not in relevant and not off(v):
            t.warn([*loc, k], f"has no effect with type: {typ} (Axolotl ignores it too)",
                   code="axolotl-ignored")
    jinja = ds.get("chat_template_jinja")
    if jinja and jinja != t.d.get("chat_template_jinja"):
        t.err([*loc, "chat_template_jinja"], "a per-dataset Jinja template is not supported: loft renders "
              "every dataset with one template", hint="set chat_template_jinja at the top level")
        bad = True
    if ds.get("split") is not None:
        split(t, loc, str(ds["split"]), item)
    if ds.get("revision"):
        item["revision"] = str(ds["revision"])
    load_options(t, loc, ds, item, pretraining)
    if ds.get("trust_remote_code") is True:
        t.err([*loc, "trust_remote_code"], "dataset loading scripts are not supported (remote code)")
        bad = True
    if t.d.get("train_on_inputs") is True and item["format"] in ("messages", "sharegpt", "alpaca", "input_output"):
        # Axolotl: should_train = train_on_inputs or role in roles_to_train (headers are never trained)
        item["roles_to_train"] = ["system", "user", "assistant", "tool"]
        t.sources.setdefault("data.datasets", []).append("train_on_inputs")
    for key in ("message_field_training", "drop_system_message"):
        if ds.get(key) and item["format"] in ("messages", "sharegpt"):
            item[key] = ds[key]
    return None if bad else item


def load_options(t: Translation, loc: list[object], ds: dict[str, Any], item: dict[str, Any], pretraining: bool) -> None:
    """`name` (hub configuration) and `data_files` go to datasets.load_dataset, as in Axolotl."""
    name, files = ds.get("name"), ds.get("data_files")
    if isinstance(name, str) and name:
        item["config_name"] = name
    elif name is not None:
        t.err([*loc, "name"], "must be the hub dataset's configuration name", code="type")
    if isinstance(files, str) and files:
        item["data_files"] = files
    elif isinstance(files, list) and files and all(isinstance(f, str) and f for f in files):
        item["data_files"] = [str(f) for f in files]
    elif files is not None:
        t.err([*loc, "data_files"], "must be a file path or a list of file paths", code="type")
    if pretraining:
        t.warn(loc, "Axolotl streams pretraining_dataset; loft downloads the split and prepares it before "
               "training (the same texts, cut into sequence_len chunks); bound it with split: train[:N]",
               code="axolotl-differs")


def messages(t: Translation, loc: list[object], ds: dict[str, Any], item: dict[str, Any]) -> None:
    fm = ds.get("field_messages")
    if isinstance(fm, str) and fm:
        item["field_messages"] = fm
    mapping: dict[str, str] = {}
    mpm = ds.get("message_property_mappings")
    if isinstance(mpm, dict):
        mapping.update({str(k): str(v) for k, v in mpm.items() if v is not None})
    elif mpm is not None:
        t.err([*loc, "message_property_mappings"], "must be a mapping such as {role: from, content: value}",
              code="type")
    for legacy, prop in (("message_field_role", "role"), ("message_field_content", "content")):
        v = ds.get(legacy)
        if isinstance(v, str) and v:
            if prop in mapping and mapping[prop] != v:
                t.err([*loc, legacy], f"contradicts message_property_mappings.{prop}", code="contradiction")
            mapping[prop] = v
    if isinstance(ds.get("field_thinking"), str):
        mapping[str(ds.get("template_thinking_key") or "reasoning_content")] = ds["field_thinking"]
    if mapping and mapping != {"role": "role", "content": "content"}:
        item["message_fields"] = {"role": "role", "content": "content", **mapping}
    roles = ds.get("roles")
    if isinstance(roles, dict) and roles:
        out: dict[str, str] = {}
        for target, srcs in roles.items():
            for s in (srcs if isinstance(srcs, list) else [srcs]):
                out[str(s)] = str(target)
        item["roles"] = out
    rtt = ds.get("roles_to_train")
    if isinstance(rtt, list):
        item["roles_to_train"] = [str(r) for r in rtt]
    eos = ds.get("train_on_eos")
    if eos is not None:
        if eos not in ("turn", "last", "all", "none"):
            t.err([*loc, "train_on_eos"], f"expected turn, last or all, got {eos!r}", code="type")
        else:
            item["train_on_eos"] = eos


def split(t: Translation, loc: list[object], split: str, item: dict[str, Any]) -> None:
    """'train[:20%]' -> split train, the first 20% of the rows in order; 'train[:500]' -> the first 500."""
    m = _SPLIT.match(split)
    if not m:
        t.err([*loc, "split"], f"cannot read the split {split!r}", code="type",
              expected="train, or train[:N], train[:N%]")
        return
    item["split"] = m.group("split")
    start, end = (m.group("start") or "").strip(), (m.group("end") or "").strip()
    if m.group(2) is None:
        return
    if start:
        t.err([*loc, "split"], f"a slice that skips rows ({split!r}) is not supported",
              hint="loft takes the first rows (subset)")
        return
    if not end:
        return
    try:
        if end.endswith("%"):
            frac = float(end[:-1]) / 100
            if not 0 < frac <= 1:
                raise ValueError
            if frac < 1:
                item.update(subset=frac, subset_mode="first")
        else:
            item.update(subset=int(end), subset_mode="first")
    except ValueError:
        t.err([*loc, "split"], f"cannot read the slice in {split!r}", code="type")
