"""Stage 4: check a loft config against schemas/config.schema.json and report every problem at once.

Each jsonschema error becomes a Diagnostic at the offending key's file:line:col, phrased for a person:
unknown keys name the key and suggest the closest allowed one (also a key with that name elsewhere in
the config, e.g. `learning_rate` at the top level → `training.learning_rate`); enum errors list the
choices; type and bound errors say what was expected. A `data.config:` file is parsed and checked
against the `data` section with its own file:line:col, then merged (keys in the main config win).
A few rules a schema cannot say well (e.g. ZeRO and FSDP together) are checked after the schema.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from .errors import ConfigError, Diagnostic, did_you_mean, key_path
from .parse import Document, parse
from .resources import data_dir

SCHEMA_DIR = data_dir("schemas")


@functools.lru_cache(maxsize=4)
def load_schema(name: str = "config") -> dict[str, Any]:
    """schemas/<name>.schema.json."""
    with open(SCHEMA_DIR / f"{name}.schema.json", encoding="utf-8") as f:
        out: dict[str, Any] = json.load(f)
    return out


def subschema(path: list[str] | tuple[str, ...], schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The schema of a dotted key path (object properties only, `datasets` items by any index)."""
    node: dict[str, Any] | None = schema if schema is not None else load_schema()
    for part in path:
        if node is None:
            return None
        if node.get("type") == "array" or "items" in node:
            node = node.get("items")
            if part.isdigit() or node is None:
                continue
        props = (node or {}).get("properties", {})
        node = props.get(part)
    return node


def validate(config: Any, doc: Document | None = None, file: str = "") -> dict[str, Any]:
    """Return the config (with a `data.config` file merged in) or raise ConfigError listing every problem."""
    where = Locator(doc, file or (doc.path if doc else ""))
    diags: list[Diagnostic] = []
    if not isinstance(config, dict):
        raise ConfigError([where.diag((), "the top level must be a mapping of config keys", "not-a-mapping")])
    config = copy.deepcopy(config)
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("config"), str):
        diags += _merge_data_config(config, where)
    # first, and alone when they fire: schema messages quote values (a token would reach the terminal),
    # and NaN passes every bound check, so the schema would wave it through
    diags += number_errors(config, (), where) + _secret_errors(config, (), where)
    if not diags:
        diags += schema_errors(config, load_schema(), where)
    if not diags:
        diags += _semantic_errors(config, where)
    if diags:
        raise ConfigError(sorted(diags, key=lambda d: (d.file != where.file, d.file, d.line, d.col, d.key)))
    return config


# --- locating keys -------------------------------------------------------------------------------------

class Locator:
    """Maps a key path of the (merged) config to file:line:col; `data.*` keys that came from a
    data.config file point into that file."""

    def __init__(self, doc: Document | None, file: str) -> None:
        self.doc = doc
        self.file = file
        self.data_doc: Document | None = None
        self.data_keys: set[str] = set()  # keys of `data` taken from the data file

    @classmethod
    def for_config(cls, doc: Document | None, file: str = "") -> Locator:
        """A locator for an already validated config (re-reads its data.config file, if any)."""
        loc = cls(doc, file or (doc.path if doc else ""))
        given = doc.data.get("data") if doc is not None else None
        if isinstance(given, dict) and isinstance(given.get("config"), str):
            try:
                loc.data_doc = parse(Path(loc.file).parent / given["config"])
            except ConfigError:
                return loc
            fdata = loc.data_doc.data
            if isinstance(fdata, dict):
                loc.data_keys = {k for k in fdata if k not in given}
        return loc

    def diag(self, path: tuple[Any, ...] | list[Any], message: str, code: str, **kw: Any) -> Diagnostic:
        path = tuple(path)
        doc, sub, file = self.doc, path, self.file
        if self.data_doc is not None and len(path) >= 2 and path[0] == "data" and path[1] in self.data_keys:
            doc, sub, file = self.data_doc, path[1:], self.data_doc.path
        line, col = doc.pos(sub) if doc is not None else (0, 0)
        if doc is not None and not line:  # a key missing at the top level: the top of the file
            line, col = 1, 1
        return Diagnostic(message, key=kw.pop("key", key_path(path)), file=file, line=line, col=col, code=code, **kw)


def _merge_data_config(config: dict[str, Any], where: Locator) -> list[Diagnostic]:
    data = config["data"]
    rel = data["config"]
    base = Path(where.file).parent if where.file else Path(".")
    path = base / rel
    try:
        ddoc = parse(path)
    except ConfigError as e:
        if e.diagnostics and e.diagnostics[0].code == "missing-file":
            return [where.diag(("data", "config"), f"data config file {rel!r} not found",
                               "missing-file", expected=f"a YAML file at {path}")]
        return list(e.diagnostics)
    where.data_doc = ddoc
    fdata = ddoc.data
    data_schema = copy.deepcopy(load_schema()["properties"]["data"])
    data_schema["properties"].pop("config", None)
    sub = Locator(ddoc, ddoc.path)
    diags = schema_errors(fdata, data_schema, sub, root_hint="data")
    if diags:
        return diags
    where.data_keys = {k for k in fdata if k not in data}
    _rebase_paths(fdata, path.parent, base)
    config["data"] = {**fdata, **data}
    return []


def _rebase_paths(fdata: dict[str, Any], data_dir: Path, config_dir: Path) -> None:
    """Dataset paths in a data file are relative to that file: rewrite the ones that exist there so that
    they are relative to the config, like every other path (hub ids and absolute paths stay as they are)."""
    for ds in fdata.get("datasets") or []:
        p = ds.get("path") if isinstance(ds, dict) else None
        if isinstance(p, str) and not os.path.isabs(os.path.expanduser(p)) and (data_dir / p).exists():
            ds["path"] = Path(os.path.relpath(data_dir / p, config_dir)).as_posix()


# --- schema errors → diagnostics -------------------------------------------------------------------------

def schema_errors(instance: Any, schema: dict[str, Any], where: Locator, root_hint: str = "") -> list[Diagnostic]:
    """Every schema violation as a Diagnostic (several per unknown-key error: one per key)."""
    from jsonschema import Draft202012Validator

    out: list[Diagnostic] = []
    for err in Draft202012Validator(schema).iter_errors(instance):
        out += _to_diags(err, instance, where, root_hint)
    return out


def _to_diags(err: Any, root: Any, where: Locator, root_hint: str) -> list[Diagnostic]:
    path = tuple(err.absolute_path)
    kind = err.validator
    schema = err.schema
    value = err.instance
    shown = (root_hint + "." if root_hint else "") + key_path(path) if path else root_hint
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        diags = []
        for k in sorted(set(value) - set(allowed)):
            hint = ((_axolotl_hint(str(k)) if not path else "") or did_you_mean(str(k), allowed)
                    or _elsewhere(str(k), shown))
            exp = "one of " + ", ".join(allowed) if allowed else "no keys here"
            diags.append(where.diag((*path, k), f"unknown key {k!r}", "unknown-key",
                                    key=(shown + "." if shown else "") + str(k), expected=exp, hint=hint))
        return diags
    if kind == "required":
        missing = [k for k in schema.get("required", []) if isinstance(value, dict) and k not in value]
        return [where.diag(path, f"missing required key {k!r}", "missing-key", key=shown or "(top level)",
                           expected=_describe(schema.get("properties", {}).get(k, {})) or "a value")
                for k in missing]
    if kind in ("enum", "const"):
        choices = schema.get("enum", [schema.get("const")])
        hint = did_you_mean(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
        return [where.diag(path, f"{_show(value)} is not one of the choices", "bad-value", key=shown,
                           expected=" | ".join(_show(c) for c in choices), hint=hint)]
    if kind == "type":
        return [where.diag(path, f"wrong type: got {_type_name(value)} {_show(value)}", "wrong-type",
                           key=shown, expected=_describe(schema))]
    if kind == "anyOf":
        hint = ""
        consts = [b["const"] for b in schema["anyOf"] if "const" in b]
        if isinstance(value, str) and consts:
            hint = did_you_mean(value, [str(c) for c in consts])
        # a branch of the right type that failed on a bound says best what is wrong (e.g. "must be ≥ 1")
        for sub in err.context or ():
            if sub.validator not in ("type", "const", "enum") and not sub.relative_path:
                branch = sub.relative_schema_path[0]
                if not any(o.validator in ("type", "const") and o.relative_schema_path[0] == branch
                           for o in err.context):
                    return [where.diag(path, f"invalid value {_show(value)}: "
                                       f"{_bound_message(sub.validator, sub.validator_value)}", "bad-value",
                                       key=shown, expected=_describe(schema), hint=hint)]
        return [where.diag(path, f"invalid value {_show(value)}", "bad-value", key=shown,
                           expected=_describe(schema), hint=hint)]
    if kind == "propertyNames":
        return [where.diag(path, f"invalid key: {err.message}", "bad-key", key=shown,
                           expected="dotted config keys such as 'training.learning_rate'")]
    return [where.diag(path, f"invalid value {_show(value)}: {_bound_message(kind, err.validator_value)}",
                       "bad-value", key=shown, expected=_describe(schema))]


def _bound_message(kind: str, bound: Any) -> str:
    return {
        "minimum": f"must be ≥ {bound}", "maximum": f"must be ≤ {bound}",
        "exclusiveMinimum": f"must be > {bound}", "exclusiveMaximum": f"must be < {bound}",
        "minLength": "must not be empty" if bound == 1 else f"must have at least {bound} characters",
        "minItems": f"needs at least {bound} item(s)", "uniqueItems": "items must be unique",
        "minProperties": f"needs at least {bound} key(s)", "pattern": f"must match {bound}",
    }.get(kind, f"fails {kind} {bound!r}")


def _describe(schema: dict[str, Any]) -> str:
    """A short human phrase for what a schema accepts: 'an integer ≥ 16 or 'auto''."""
    if "anyOf" in schema:
        return " or ".join(filter(None, (_describe(b) for b in schema["anyOf"])))
    if "const" in schema:
        return _show(schema["const"])
    if "enum" in schema:
        return " | ".join(_show(c) for c in schema["enum"])
    types = schema.get("type")
    if types is None:
        return ""
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    tlist = [types] if isinstance(types, str) else list(types)
    out = " or ".join(names.get(t, t) for t in tlist)
    bounds = []
    for k, sym in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
        if k in schema:
            bounds.append(f"{sym} {schema[k]}")
    if bounds:
        out += " " + " and ".join(bounds)
    if "pattern" in schema:
        out += f" matching {schema['pattern']}"
    return out


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
            type(None): "null"}.get(type(v), type(v).__name__)


def _show(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


@functools.lru_cache(maxsize=1)
def _all_keys() -> dict[str, list[str]]:
    """leaf/section name → dotted paths where it is allowed (for 'did you mean training.learning_rate?')."""
    index: dict[str, list[str]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        if "items" in node and isinstance(node["items"], dict):
            walk(node["items"], prefix + "[]")
        for k, sub in node.get("properties", {}).items():
            p = f"{prefix}.{k}" if prefix else k
            index.setdefault(k, []).append(p)
            walk(sub, p)

    walk(load_schema(), "")
    return index


def _axolotl_hint(key: str) -> str:
    """A top-level Axolotl key in a loft config: say where loft keeps that setting."""
    from .dialects.axolotl.keys import kind_of, why

    if kind_of(key) != "translated":
        return ""
    return f"`{key}` is an Axolotl key; in loft: {why(key)} (or build the file with --dialect axolotl)"


def _elsewhere(key: str, here: str) -> str:
    paths = [p for p in _all_keys().get(key, []) if p.rsplit(".", 1)[0] != here]
    if not paths:
        return ""
    return "this key belongs under " + " or ".join(repr(p.replace("[]", "[0]")) for p in paths[:2])


# --- rules beyond the schema -------------------------------------------------------------------------------

def _semantic_errors(config: dict[str, Any], where: Locator) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    data = config.get("data", {})
    if not data.get("datasets"):
        diags.append(where.diag(("data",), "no datasets", "missing-key", key="data",
                                expected="data.datasets: [{path: ...}] or data.config: data.yaml"))
    names: dict[str, int] = {}
    for i, ds in enumerate(data.get("datasets") or []):
        name = ds.get("name")
        if name is None:
            continue
        if name in names:
            diags.append(where.diag(("data", "datasets", i, "name"), f"dataset name {name!r} is used twice",
                                    "duplicate-name", expected="unique dataset names",
                                    hint=f"the first is data.datasets[{names[name]}]"))
        names.setdefault(name, i)
    ds_cfg = config.get("deepspeed", {})
    fsdp = config.get("fsdp", {})
    target = config.get("target", {})
    if ds_cfg.get("stage", 0) > 0 and fsdp.get("enabled"):
        diags.append(where.diag(("fsdp", "enabled"), "DeepSpeed ZeRO and FSDP cannot be used together",
                                "conflict", expected="deepspeed.stage: 0 or fsdp.enabled: false"))
    if ds_cfg.get("offload_params") and ds_cfg.get("stage", 0) != 3:
        diags.append(where.diag(("deepspeed", "offload_params"), "parameter offload needs ZeRO stage 3",
                                "conflict", expected="deepspeed.stage: 3"))
    if ds_cfg.get("offload_optimizer") and ds_cfg.get("stage", 0) == 0:
        diags.append(where.diag(("deepspeed", "offload_optimizer"), "optimizer offload needs DeepSpeed",
                                "conflict", expected="deepspeed.stage: 1, 2 or 3"))
    kind = target.get("kind", "local")
    if target.get("nodes", 1) > 1 and kind in ("local", "multi_gpu"):
        diags.append(where.diag(("target", "nodes"), f"target.kind {kind!r} runs on one machine",
                                "conflict", expected="target.kind: multi_node, slurm or skypilot, or nodes: 1"))
    if str(target.get("gpu", "")).lower() == "cpu" and (target.get("num_gpus", 1) > 1 or target.get("nodes", 1) > 1):
        diags.append(where.diag(("target", "gpu"), "a CPU run uses one process",
                                "conflict", expected="num_gpus: 1 and nodes: 1 with gpu: cpu"))
    diags += _training_errors(config, where)
    diags += _file_name_errors(config, where)
    diags += _catalog_errors(target, where)
    sweep = config.get("sweep")
    if isinstance(sweep, dict):
        diags += _sweep_errors(sweep, config, where)
    return diags


def _training_errors(config: dict[str, Any], where: Locator) -> list[Diagnostic]:
    """Keys that only make sense together: partial fine-tuning, adapter extras, schedule floor, early stopping."""
    diags: list[Diagnostic] = []
    adapter = config.get("adapter", {})
    training = config.get("training", {})
    kind = adapter.get("type", "lora")
    unfrozen = training.get("unfrozen_parameters")
    for i, pattern in enumerate(unfrozen or []):
        try:
            re.compile(pattern)
        except re.error as e:
            diags.append(where.diag(("training", "unfrozen_parameters", i), f"not a regular expression: {e}",
                                    "type", expected="a Python regular expression over parameter names"))
    if unfrozen and kind != "none":
        diags.append(where.diag(("training", "unfrozen_parameters"), f"choosing which base parameters train is a "
                                f"full fine-tune option; adapter.type is {kind!r}", "conflict",
                                expected="adapter.type: none",
                                hint="with an adapter, train whole modules next to it with adapter.modules_to_save"))
    for key in ("target_parameters", "modules_to_save"):
        if adapter.get(key) and kind == "none":
            diags.append(where.diag(("adapter", key), "needs an adapter (adapter.type: none trains everything)",
                                    "conflict", expected="adapter.type: lora or qlora"))
    if kind in ("lora", "qlora") and adapter.get("target_parameters") and adapter.get("dropout", 0.05):
        diags.append(where.diag(("adapter", "dropout"), "LoRA on parameters (target_parameters) cannot apply "
                                "dropout (PEFT's ParamWrapper refuses it)", "conflict",
                                expected="adapter.dropout: 0.0"))
    if kind in ("lora", "qlora") and adapter.get("target_modules") == [] and not adapter.get("target_parameters"):
        diags.append(where.diag(("adapter", "target_modules"), "no LoRA targets", "missing-key",
                                expected="target_modules or target_parameters"))
    sched = training.get("lr_scheduler", "cosine")
    if training.get("min_lr_ratio") is not None and sched != "cosine_with_min_lr":
        diags.append(where.diag(("training", "min_lr_ratio"), f"a learning-rate floor needs the cosine_with_min_lr "
                                f"schedule; lr_scheduler is {sched!r}", "conflict",
                                expected="training.lr_scheduler: cosine_with_min_lr"))
    if training.get("early_stopping_patience") is not None:
        data = config.get("data", {})
        evals = [data.get("eval_split", 0.0)] + [d.get("eval_split") for d in data.get("datasets") or []]
        if not any(isinstance(v, (int, float)) and v > 0 for v in evals):
            diags.append(where.diag(("training", "early_stopping_patience"), "early stopping watches the eval loss, "
                                    "but there is no eval split", "conflict",
                                    expected="data.eval_split (or a dataset's eval_split) > 0"))
    return diags


# Names that become file or folder names in the bundle. `fullmatch` on purpose: the schema's
# `^…$` (Python's re.search) lets a trailing newline through.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SAFE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
# Top-level names a bundle writes itself (plus run-control files): output_dir must not be one of them,
# or a rebuild would replace the run's outputs, or prepare would read stale bundle data as outputs.
BUNDLE_NAMES = frozenset({"loft", "data", "model", "tokenizer", "plan.lock", "plan.md", "launch.sh",
                          "slurm.sbatch", "sky.yaml", "accelerate.yaml", "ds_config.json", "sweep.jsonl",
                          "requirements.lock", "chat_template.jinja", "MANIFEST.sha256", "STOP"})


def _file_name_errors(config: dict[str, Any], where: Locator) -> list[Diagnostic]:
    """Run and dataset names and output_dir become file names: letters, digits and `._-` only, so no
    value can carry a newline, a quote or a path into a script, a file name or another folder."""
    diags: list[Diagnostic] = []
    safe = "letters, digits, '.', '_' and '-' (starting with a letter or digit), at most 100"
    name = config.get("name")
    if isinstance(name, str) and not _SAFE_NAME.fullmatch(name):
        diags.append(where.diag(("name",), f"run name {name!r} is not a safe file name", "unsafe-name",
                                expected=safe))
    for i, ds in enumerate((config.get("data") or {}).get("datasets") or []):
        dname = ds.get("name") if isinstance(ds, dict) else None
        if isinstance(dname, str) and not _SAFE_NAME.fullmatch(dname):
            diags.append(where.diag(("data", "datasets", i, "name"), f"dataset name {dname!r} is not a safe file name",
                                    "unsafe-name", expected=safe))
    out = config.get("output_dir")
    if isinstance(out, str):
        parts = [p for p in out.split("/") if p not in ("", ".")]
        if out.startswith("/") or not parts or ".." in parts:
            diags.append(where.diag(("output_dir",), f"output_dir {out!r} must be a folder inside the bundle",
                                    "path-escape", expected="a relative path such as 'out'"))
        elif not all(_SAFE_PART.fullmatch(p) for p in parts):
            diags.append(where.diag(("output_dir",), f"output_dir {out!r} must be a relative folder inside the bundle "
                                    "made of plain names", "unsafe-path",
                                    expected="a path such as 'out' or 'runs/exp1': letters, digits, '.', '_', '-' "
                                    "and '/' between names (no '..')"))
        elif parts[0] in BUNDLE_NAMES or parts[0].lower() in {n.lower() for n in BUNDLE_NAMES}:
            diags.append(where.diag(("output_dir",), f"output_dir {out!r} is a name the bundle itself uses "
                                    "(a rebuild would replace it, or prepare would read bundle files as outputs)",
                                    "reserved-name", expected="another folder name, e.g. 'out'"))
    return diags


CATALOG_DIR = SCHEMA_DIR.parent / "targets" / "catalog"

# Credentials by their published shapes, found anywhere inside a string (a token pasted into a prompt or a
# project name counts too), plus long high-entropy words (keys without a known prefix). Hex digests (a
# revision sha) have at most 4 bits of entropy per character, so they never pass ENTROPY_BITS.
_TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9])("
    r"hf_[A-Za-z0-9]{20,}|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|api_[A-Za-z0-9]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}|npm_[A-Za-z0-9]{36}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
_HEX40 = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")
_WORD = re.compile(r"[A-Za-z0-9+=]{32,}")  # no separators: hyphenated model names are not keys
ENTROPY_BITS = 4.3


def _entropy(word: str) -> float:
    from collections import Counter

    n = len(word)
    return -sum(c / n * math.log2(c / n) for c in Counter(word).values())


def looks_secret(value: str, path: tuple[Any, ...] = ()) -> bool:
    """A known token shape anywhere in `value`, a 40-hex W&B key under `tracking`, or a long random word."""
    if _TOKEN_SHAPES.search(value):
        return True
    if path[:1] == ("tracking",) and _HEX40.search(value):
        return True
    for word in _WORD.findall(value):
        if (any(c.isdigit() for c in word) and any(c.islower() for c in word) and any(c.isupper() for c in word)
                and _entropy(word) > ENTROPY_BITS):
            return True
    return False


def _secret_errors(node: Any, path: tuple[Any, ...], where: Locator) -> list[Diagnostic]:
    """A config is committed and copied into plan.lock: it must never hold a token, anywhere in a value."""
    if isinstance(node, dict):
        return [d for k, v in node.items() for d in _secret_errors(v, (*path, k), where)]
    if isinstance(node, list):
        return [d for i, v in enumerate(node) for d in _secret_errors(v, (*path, i), where)]
    if isinstance(node, str) and looks_secret(node, path):
        return [where.diag(path, "this value holds what looks like a secret token; configs and plans are "
                           "committed and shared", "secret",
                           expected="the NAME of an environment variable that holds it",
                           hint=_secret_hint(path))]
    return []


def _secret_hint(path: tuple[Any, ...]) -> str:
    if path[:2] == ("tracking", "wandb") or any("wandb" in str(p) for p in path):
        return "export WANDB_API_KEY in the shell (tracking.wandb.api_key_env names the variable)"
    if path[:2] == ("export", "push_to_hub") or any("hub" in str(p) or "hf" in str(p) for p in path):
        return "export HF_TOKEN in the shell (export.push_to_hub.token_env names the variable)"
    return "export the token in the shell as an environment variable; keep only its NAME in the config"


MAX_NUMBER = 1e15  # no config number comes near; beyond it step and token arithmetic stops being exact


def number_errors(node: Any, path: tuple[Any, ...], where: Locator) -> list[Diagnostic]:
    """Every number in a config is finite and of a sane size: `.nan`, `.inf`, 1e308 and 1e-300 would
    pass a schema's bounds (NaN compares false to everything) and break arithmetic, JSON or torch later."""
    if isinstance(node, dict):
        return [d for k, v in node.items() for d in number_errors(v, (*path, k), where)]
    if isinstance(node, list):
        return [d for i, v in enumerate(node) for d in number_errors(v, (*path, i), where)]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return []
    if isinstance(node, float) and not math.isfinite(node):
        return [where.diag(path, f"{node} is not a finite number", "not-finite", expected="a finite number")]
    if abs(node) > MAX_NUMBER:
        return [where.diag(path, f"{node:g} is too large", "too-large", expected=f"a number of magnitude ≤ {MAX_NUMBER:g}")]
    if node and abs(node) < 1 / MAX_NUMBER:
        return [where.diag(path, f"{node:g} is too small to be meant", "too-small",
                           expected=f"0, or a number of magnitude ≥ {1 / MAX_NUMBER:g}")]
    return []


def document_errors(doc: Document) -> list[Diagnostic]:
    """Secrets and non-finite or absurd numbers anywhere in a source document (every key, known or not),
    at their line:col: plan.lock records the source config as given, so even an Axolotl key loft ignores
    must not carry a token, and the dialect's arithmetic must only see finite numbers."""
    where = Locator(doc, doc.path)
    data = doc.data
    return number_errors(data, (), where) + _secret_errors(data, (), where)


def _catalog_names(file: str, section: str) -> dict[str, str] | None:
    """name or alias (lower case) → catalog name; None when the catalog file is absent."""
    try:
        with open(CATALOG_DIR / file, encoding="utf-8") as f:
            entries = json.load(f).get(section, {})
    except (OSError, ValueError):
        return None
    out: dict[str, str] = {}
    for name, entry in entries.items():
        out[name.lower()] = name
        for alias in entry.get("aliases", []) if isinstance(entry, dict) else []:
            out[str(alias).lower()] = name
    return out


def _catalog_errors(target: dict[str, Any], where: Locator) -> list[Diagnostic]:
    """target.gpu and target.provider must name catalog entries (the estimate and the docs rely on them)."""
    diags: list[Diagnostic] = []
    gpu = target.get("gpu", "H100")
    gpus = _catalog_names("gpus.json", "gpus")
    if gpus is not None and str(gpu).lower() != "cpu" and str(gpu).lower() not in gpus:
        names = sorted(set(gpus.values()))
        diags.append(where.diag(("target", "gpu"), f"unknown GPU {gpu!r}", "bad-value",
                                expected="cpu or one of " + ", ".join(names),
                                hint=did_you_mean(str(gpu), names) or "`loftc gpus` lists the catalog"))
    provider = target.get("provider")
    providers = _catalog_names("providers.json", "providers") if provider is not None else None
    if provider is not None and providers is not None and str(provider).lower() not in providers:
        names = sorted(set(providers.values()))
        diags.append(where.diag(("target", "provider"), f"unknown provider {provider!r}", "bad-value",
                                expected="one of " + ", ".join(names), hint=did_you_mean(str(provider), names)))
    return diags


_NOT_SWEEPABLE = {"loft", "name", "sweep", "output_dir", "data.config", "model.base", "template"}


def _sweep_errors(sweep: dict[str, Any], config: dict[str, Any], where: Locator) -> list[Diagnostic]:
    """Each swept key must be a real config key, and each of its values (or range ends) valid for it."""
    from jsonschema import Draft202012Validator

    diags: list[Diagnostic] = []
    leaves = sorted({p.replace("[]", "[0]") for paths in _all_keys().values() for p in paths})
    for key, values in sweep.get("params", {}).items():
        parts = [p for p in re.split(r"[.\[\]]+", key) if p]
        sub = subschema(parts)
        loc = ("sweep", "params", key)
        if sub is None or any(re.sub(r"\[\d+\]", "", key) == n or key.startswith(n + ".") for n in _NOT_SWEEPABLE):
            diags.append(where.diag(loc, f"cannot sweep {key!r}: not a config key" if sub is None
                                    else f"cannot sweep {key!r}", "bad-sweep-key", key=f"sweep.params.{key}",
                                    expected="a dotted config key such as 'training.learning_rate'",
                                    hint=did_you_mean(key, leaves)))
            continue
        v = Draft202012Validator(sub)
        if isinstance(values, list) or "values" in values:
            items: list[tuple[Any, Any]] = list(enumerate(values if isinstance(values, list) else values["values"]))
        else:
            items = [(k, values[k]) for k in ("min", "max") if k in values]
        for j, val in items:
            for err in v.iter_errors(val):
                diags.append(where.diag((*loc, j), f"value {_show(val)} is invalid for {key}: {err.message}",
                                        "bad-value", key=f"sweep.params.{key}[{j!r}]".replace("'", ""),
                                        expected=_describe(sub)))
                break
    return diags
