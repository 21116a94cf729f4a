"""Stage 5: turn a valid config into the plan — every decision written down, nothing left implicit.

Defaults come from the schema's `default`s (one source of truth). Model facts come from a local
config.json or the built-in catalog; data files are hashed and counted; the chat template is chosen;
batch sizes, steps and warmup are derived where they are knowable before tokenizing; the launcher is
picked from the target. Paths in the plan are relative to the bundle directory (or to the config's
directory when there is no bundle), so the same config and data give the same plan from any place.
Small local data and model files are carried into the bundle as attachments so it is relocatable.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from . import models
from .errors import ConfigError, Diagnostic
from .parse import Document
from .resources import data_dir
from .validate import Locator, load_schema

LOFT_VERSION = "0.1.0"
PLAN_FORMAT = 1
DATA_BUNDLE_LIMIT = 100 * 1024 * 1024  # data.bundle: auto copies local data up to this total
MODEL_BUNDLE_LIMIT = 64 * 1024 * 1024  # local model directories up to this size travel in model/
REQUIREMENTS = data_dir("targets") / "requirements.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_FILE_EXTS = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".arrow", ".gz", ".zst", ".yaml", ".yml")
_SKIP_NAMES = {".git", "__pycache__", ".cache", ".DS_Store"}


def resolve(doc: Document, config: dict[str, Any], *, dialect: str = "loft",
            out_dir: str | Path | None = None) -> tuple[dict[str, Any], dict[str, bytes], list[Diagnostic]]:
    """(plan, attachments, warnings) for a validated config. Raises ConfigError for missing files."""
    r = _Resolver(doc, config, dialect, out_dir)
    return r.run()


def fill_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Every key of the schema present: missing keys take the schema's `default` (recursively)."""
    props = schema.get("properties")
    if props is not None and isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, sub in props.items():
            v = value[k] if k in value else copy.deepcopy(sub.get("default"))
            out[k] = fill_defaults(v, sub)
        for k in value:  # keys the schema allows through additionalProperties (maps such as `roles`)
            if k not in out:
                out[k] = value[k]
        return out
    items = schema.get("items")
    if isinstance(items, dict) and isinstance(value, list):
        return [fill_defaults(v, items) for v in value]
    return value


def safe_name(text: str) -> str:
    """A bundle-safe file name part: letters, digits, `._-`, starting with a letter or digit."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip("._-")[:100]
    return s or "dataset"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_files(root: Path, skip: Path | None = None) -> list[tuple[str, Path]]:
    """(posix relative path, path) of every regular file under root, sorted; VCS/cache folders and
    `skip` (the bundle being written, when it sits inside a data or model folder) are left out."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES and (skip is None or here / d != skip))
        for fn in filenames:
            if fn in _SKIP_NAMES:
                continue
            p = here / fn
            if p.is_file():
                out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def sha256_dir(root: Path, skip: Path | None = None) -> str:
    """Hash over sorted relative paths and each file's sha256, so renames and edits both change it."""
    h = hashlib.sha256()
    for rel, p in dir_files(root, skip):
        h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def count_rows(path: Path) -> int | None:
    """Rows of a .jsonl (non-blank lines) or a top-level JSON list; None for other formats."""
    name = path.name.lower()
    if name.endswith(".jsonl"):
        n = 0
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    n += 1
        return n
    if name.endswith(".json"):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return len(data) if isinstance(data, list) else None
    return None


def requirements() -> dict[str, Any]:
    with open(REQUIREMENTS, encoding="utf-8") as f:
        out: dict[str, Any] = json.load(f)
    return out


def is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and not spec.lower().endswith(_FILE_EXTS)


class _Resolver:
    def __init__(self, doc: Document, config: dict[str, Any], dialect: str, out_dir: str | Path | None) -> None:
        self.doc = doc
        self.dialect = dialect
        self.config_path = Path(os.path.abspath(doc.path))
        self.config_dir = self.config_path.parent
        self.base_dir = Path(os.path.abspath(out_dir)) if out_dir is not None else self.config_dir
        self.where = Locator.for_config(doc if dialect == "loft" else None, doc.path)
        self.given = config
        self.cfg: dict[str, Any] = fill_defaults(config, load_schema())
        self.attachments: dict[str, bytes] = {}
        self.warnings: list[Diagnostic] = []
        self.errors: list[Diagnostic] = []

    # -- helpers ----------------------------------------------------------------------------------------
    def rel(self, p: Path) -> str:
        """Path relative to the bundle (or config) directory, with forward slashes."""
        return Path(os.path.relpath(p, self.base_dir)).as_posix()

    def warn(self, code: str, keys: tuple[Any, ...], message: str, **kw: Any) -> None:
        self.warnings.append(self.where.diag(keys, message, code, severity="warning", **kw))

    def error(self, code: str, keys: tuple[Any, ...], message: str, **kw: Any) -> None:
        self.errors.append(self.where.diag(keys, message, code, **kw))

    def local(self, spec: str) -> Path | None:
        """The local path a spec names, or None when it is a hub id."""
        if spec.startswith(("/", "./", "../", "~")) or spec in (".", ".."):
            return Path(os.path.abspath(self.config_dir / os.path.expanduser(spec)))
        p = Path(os.path.abspath(self.config_dir / spec))
        # `models/x` where ./models/ exists is a local path with a typo, not a hub org called "models"
        if p.exists() or not is_hub_id(spec) or (self.config_dir / spec.split("/", 1)[0]).is_dir():
            return p
        return None

    # -- stages -----------------------------------------------------------------------------------------
    def run(self) -> tuple[dict[str, Any], dict[str, bytes], list[Diagnostic]]:
        cfg = self.cfg
        if cfg.get("name") is None:
            cfg["name"] = safe_name(self.config_path.stem)
        self.check_output_dir()
        model, model_dir = self.model()
        data = self.data()
        if self.errors:
            raise ConfigError(self.errors)
        template = self.template(model, model_dir)
        if self.errors:
            raise ConfigError(self.errors)
        derived = self.derived(data)
        plan: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "loft_version": LOFT_VERSION,
            "name": cfg["name"],
            "source": self.source(),
            "config": cfg,
            "model": model,
            "data": {"datasets": data},
            "template": template,
            "derived": derived,
            "launch": self.launch(),
            "estimate": None,
            "versions": self.versions(),
            "sweep": self.sweep(),
            "warnings": [],
        }
        if self.errors:
            raise ConfigError(self.errors)
        return plan, dict(sorted(self.attachments.items())), self.warnings

    def check_output_dir(self) -> None:
        out = self.cfg["output_dir"]
        norm = os.path.normpath(out)
        if os.path.isabs(out) or norm == ".." or norm.startswith("../") or norm == ".":
            self.error("path-escape", ("output_dir",), f"output_dir {out!r} must be a folder inside the bundle",
                       expected="a relative path such as 'out'")
        else:
            self.cfg["output_dir"] = Path(norm).as_posix()

    def source(self) -> dict[str, Any]:
        src: dict[str, Any] = {
            "file": self.rel(self.config_path),
            "dialect": self.dialect,
            "sha256": hashlib.sha256(self.doc.text.encode("utf-8")).hexdigest(),
            "config": self.doc.data,
        }
        given = self.doc.data.get("data") if isinstance(self.doc.data, dict) else None
        if self.dialect == "loft" and isinstance(given, dict) and isinstance(given.get("config"), str):
            p = Path(os.path.abspath(self.config_dir / given["config"]))
            src["data_config"] = {"file": self.rel(p), "sha256": sha256_file(p)}
        return src

    def model(self) -> tuple[dict[str, Any], Path | None]:
        m = self.cfg["model"]
        spec = m["base"]
        path = self.local(spec)
        facts: dict[str, Any]
        entry: dict[str, Any] = {"revision": m["revision"]}
        if path is not None:
            if not path.is_dir():
                self.error("missing-file", ("model", "base"), f"model directory {spec!r} not found",
                           expected=f"a directory with config.json at {path}, or a hub id such as 'org/name'")
                return {**models.empty_facts(), "source": "config.json", "id": None, "path": spec,
                        "revision": None, "params": None}, None
            facts, problem = models.local_facts(path)
            if problem:
                self.error("model-config", ("model", "base"), f"cannot read the model's config: {problem}",
                           expected="a model directory holding a transformers config.json")
            entry.update(source="config.json", id=None, path=self.carry_dir(path, "model", ("model", "base")))
            m["base"] = entry["path"]
            if m["revision"] is not None:
                self.warn("revision-ignored", ("model", "revision"), "model.revision is ignored for a local directory")
                entry["revision"] = m["revision"] = None
        else:
            found = models.lookup(spec)
            if found is None:
                facts = models.empty_facts()
                entry["source"] = "unknown"
                self.warn("unknown-architecture", ("model", "base"),
                          f"{spec!r} is not in the built-in catalog: model facts are unknown, so the VRAM/time "
                          "estimate is skipped (nothing is downloaded at compile time)",
                          hint="use a local model directory, or add the model to targets/catalog/models.json")
            else:
                facts = {k: found.get(k) for k in models.FACT_KEYS}
                entry["source"] = "catalog"
            entry.update(id=spec, path=None)
            if m["revision"] is None:
                self.warn("unpinned-revision", ("model", "base"),
                          f"hub model {spec!r} has no pinned revision: a later build may train on different weights",
                          hint="set model.revision to a commit sha")
            elif not _COMMIT.match(m["revision"]):
                self.warn("unpinned-revision", ("model", "revision"),
                          f"revision {m['revision']!r} is a branch or tag, not a commit: it can move",
                          hint="use the commit sha it points to now")
        tok = m["tokenizer"]
        if tok is not None:
            tpath = self.local(tok)
            if tpath is not None and path is not None and tpath == path:
                m["tokenizer"] = m["base"]  # the model directory itself: already carried
            elif tpath is not None:
                if not tpath.is_dir():
                    self.error("missing-file", ("model", "tokenizer"), f"tokenizer directory {tok!r} not found",
                               expected="a directory with tokenizer files, or a hub id")
                else:
                    m["tokenizer"] = self.carry_dir(tpath, "tokenizer", ("model", "tokenizer"))
        facts = self.override_facts(facts)
        entry.update(facts)
        entry["params"] = _count_params(facts)
        return entry, path

    def override_facts(self, facts: dict[str, Any]) -> dict[str, Any]:
        """`model.config_overrides` as the loaded model will see them: settings the estimate reads update the
        facts; keys that reshape the pretrained weights are an error (they only make sense from random init)."""
        m = self.cfg["model"]
        out = dict(facts)
        for key, value in (m.get("config_overrides") or {}).items():
            keys = ("model", "config_overrides", key)
            if key in _SHAPE_KEYS and m["init"] == "pretrained":
                self.error("conflict", keys, f"{key} changes the shape of the pretrained weights, which then "
                           "cannot load", expected="remove it, or model.init: random")
            elif key in _SHAPE_KEYS or key in _SETTING_FACTS:
                boolean = key == "tie_word_embeddings"
                if isinstance(value, bool) != boolean or not isinstance(value, int) or (not boolean and value < 1):
                    self.error("type", keys, f"expected {'true or false' if boolean else 'a positive integer'}, "
                               f"got {value!r}")
                    continue
                out["num_experts" if key == "num_local_experts" else key] = value
        return out

    def carry_dir(self, path: Path, name: str, keys: tuple[Any, ...]) -> str:
        """Bundle a small local directory under `name/`; otherwise refer to it by a relative path."""
        files = dir_files(path, self.base_dir)
        size = sum(p.stat().st_size for _, p in files)
        if size <= MODEL_BUNDLE_LIMIT:
            for rel, p in files:
                self.attachments[f"{name}/{rel}"] = p.read_bytes()
            return name
        self.warn("not-bundled", keys, f"{path.name}/ ({size / 2**20:.0f} MiB) is larger than "
                  f"{MODEL_BUNDLE_LIMIT // 2**20} MiB and is not copied into the bundle: the bundle refers to it "
                  "by a relative path and is not relocatable")
        return self.rel(path)

    def data(self) -> list[dict[str, Any]]:
        d = self.cfg["data"]
        d["config"] = None  # merged into `datasets` by validate; its file and hash are in source.data_config
        entries: list[dict[str, Any]] = []
        used: set[str] = {ds["name"] for ds in d["datasets"] if ds.get("name")}
        local_total = 0
        locals_: list[tuple[int, Path]] = []
        for i, ds in enumerate(d["datasets"]):
            keys = ("data", "datasets", i, "path")
            spec = ds["path"]
            path = self.local(spec)
            if ds["name"] is None:
                stem = spec.rstrip("/").rsplit("/", 1)[-1]
                if path is not None and path.is_file():
                    stem = path.name.split(".")[0] or path.name
                name = base = safe_name(stem)
                n = 2
                while name in used:
                    name, n = f"{base}-{n}", n + 1
                used.add(name)
                ds["name"] = name
            entry: dict[str, Any] = {"name": ds["name"], "revision": ds["revision"]}
            if path is None:
                entry.update(source="hub", path=spec, bundled=False, sha256=None, bytes=None, rows=None)
                if ds["revision"] is None:
                    self.warn("unpinned-revision", keys, f"hub dataset {spec!r} has no pinned revision",
                              hint=f"set data.datasets[{i}].revision to a commit sha")
                elif not _COMMIT.match(ds["revision"]):
                    self.warn("unpinned-revision", ("data", "datasets", i, "revision"),
                              f"revision {ds['revision']!r} is a branch or tag, not a commit: it can move",
                              hint="use the commit sha it points to now")
            elif not path.exists():
                self.error("missing-file", keys, f"data file {spec!r} not found",
                           expected=f"a file or directory at {path}, or a hub dataset id ('org/name')")
                continue
            else:
                if ds.get("data_files") is not None and not self.check_data_files(i, path, ds["data_files"]):
                    continue
                if path.is_dir():
                    files = dir_files(path, self.base_dir)
                    size = sum(p.stat().st_size for _, p in files)
                    entry.update(sha256=sha256_dir(path, self.base_dir), rows=None)
                else:
                    size = path.stat().st_size
                    entry.update(sha256=sha256_file(path), rows=count_rows(path))
                entry.update(source="local", bytes=size, bundled=False, path=self.rel(path))
                local_total += size
                locals_.append((i, path))
            entries.append(entry)
        if self.errors:  # missing files: nothing to bundle, and `entries` no longer lines up with datasets
            return entries
        mode = d["bundle"]
        bundle = mode == "always" or (mode == "auto" and local_total <= DATA_BUNDLE_LIMIT)
        for i, path in locals_:
            entry = entries[i]
            ds = d["datasets"][i]
            if bundle:
                entry["path"] = self.attach_data(entry["name"], path)
                entry["bundled"] = True
            elif mode == "auto":
                self.warn("not-bundled", ("data", "bundle"),
                          f"local data totals {local_total / 2**20:.0f} MiB (over {DATA_BUNDLE_LIMIT // 2**20} MiB): "
                          f"{entry['name']} is referred to by a relative path, so the bundle is not relocatable",
                          hint="set data.bundle: always to copy it anyway")
            ds["path"] = entry["path"]
        return entries

    def check_data_files(self, i: int, path: Path, data_files: str | list[str]) -> bool:
        """`data_files` of a local dataset: files inside its directory (prepare reads only those)."""
        keys = ("data", "datasets", i, "data_files")
        if not path.is_dir():
            self.error("conflict", keys, "data_files selects files inside a dataset directory or hub repository, "
                       f"but {path.name} is a file", expected="path: the directory, or no data_files")
            return False
        ok = True
        for name in [data_files] if isinstance(data_files, str) else data_files:
            f = path / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                self.error("path-traversal", keys, f"data_files entry {name!r} must be a path inside {path.name}/")
                ok = False
            elif not f.is_file():
                self.error("missing-file", keys, f"data_files entry {name!r} not found in {path}")
                ok = False
        return ok

    def attach_data(self, name: str, path: Path) -> str:
        if path.is_dir():
            for rel, p in dir_files(path, self.base_dir):
                self.attachments[f"data/{name}/{rel}"] = p.read_bytes()
            return f"data/{name}"
        ext = _extension(path.name)
        self.attachments[f"data/{name}{ext}"] = path.read_bytes()
        return f"data/{name}{ext}"

    def template(self, model: dict[str, Any], model_dir: Path | None) -> dict[str, Any]:
        from .templates import select_template

        spec = self.cfg["template"]
        try:
            choice = select_template(spec, model=model, model_dir=model_dir, config_dir=self.config_dir,
                                     allow_fallback=bool(self.cfg["template_mask_fallback"]))
        except ConfigError as e:
            line, col = self.where.doc.pos(("template",)) if self.where.doc is not None else (0, 0)
            self.errors += [_relocate(d, self.where.file, line, col) for d in e.diagnostics]
            return {}
        text = choice.text.encode("utf-8")
        self.attachments["chat_template.jinja"] = text
        if getattr(choice, "source", None) == "file":
            self.cfg["template"] = "chat_template.jinja"
        return {
            "name": choice.name,
            "source": choice.source,
            "file": "chat_template.jinja",
            "sha256": hashlib.sha256(text).hexdigest(),
            "end_of_turn": choice.end_of_turn,
            "tagged": bool(choice.tagged),
            "mask": choice.mask,
        }

    def derived(self, data: list[dict[str, Any]]) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg["training"]
        target = cfg["target"]
        cpu = str(target["gpu"]).lower() == "cpu"
        world = 1 if cpu else target["nodes"] * target["num_gpus"]
        micro = t["micro_batch_size"]
        accum = t["gradient_accumulation_steps"]
        glob = t["global_batch_size"]
        keys = ("training", "global_batch_size")
        if accum == "auto":
            if glob is None:
                accum = 1
            elif isinstance(micro, int):
                if glob % (micro * world):
                    self.error("batch", keys, f"global_batch_size {glob} is not a multiple of micro_batch_size × "
                               f"world size = {micro} × {world}",
                               expected=f"a multiple of {micro * world}")
                    accum = None
                else:
                    accum = glob // (micro * world)
        if isinstance(micro, int) and isinstance(accum, int):
            product = micro * accum * world
            if glob is not None and glob != product:
                self.error("batch", keys, f"global_batch_size {glob} ≠ micro_batch_size × "
                           f"gradient_accumulation_steps × world size = {micro} × {accum} × {world} = {product}",
                           expected=f"{product}, or gradient_accumulation_steps: auto")
            glob = product
        max_len = cfg["sequence"]["max_length"]
        tokens_per_step = glob * max_len if isinstance(glob, int) and isinstance(max_len, int) else None
        rows = _train_rows(data, cfg)
        total_steps: int | None = t["max_steps"]
        if total_steps is None and not cfg["sequence"]["packing"] and rows is not None and isinstance(glob, int):
            total_steps = max(1, math.ceil(rows / glob * t["epochs"]))
            steps_per_epoch = max(1, math.ceil(rows / glob))
            # N evaluations / checkpoints per epoch become step counts once the epoch length is known
            for per_epoch, every in (("evals_per_epoch", "eval_steps"), ("saves_per_epoch", "save_steps")):
                if t[every] is None and t[per_epoch]:
                    t[every] = max(1, steps_per_epoch // t[per_epoch])
        warmup = t["warmup_steps"]
        if warmup is None and total_steps is not None:
            warmup = math.ceil(total_steps * t["warmup_ratio"])
        return {
            "world_size": world,
            "micro_batch_size": micro,
            "gradient_accumulation_steps": accum,
            "global_batch_size": glob,
            "tokens_per_step": tokens_per_step,
            "rows": rows,
            "total_steps": total_steps,
            "total_tokens": total_steps * tokens_per_step if total_steps and tokens_per_step else None,
            "warmup_steps": warmup,
        }

    def launch(self) -> dict[str, Any]:
        cfg = self.cfg
        target = cfg["target"]
        cpu = str(target["gpu"]).lower() == "cpu"
        nodes = 1 if cpu else target["nodes"]
        gpus = 0 if cpu else target["num_gpus"]
        stage = cfg["deepspeed"]["stage"]
        if cfg["fsdp"]["enabled"]:
            launcher = "accelerate"
        elif stage > 0 or nodes * max(gpus, 1) > 1 or target["kind"] in ("multi_gpu", "multi_node"):
            launcher = "torchrun"
        else:
            launcher = "python"
        return {
            "target": target["kind"],
            "launcher": launcher,
            "nodes": nodes,
            "gpus_per_node": gpus,
            "deepspeed_config": "ds_config.json" if stage > 0 else None,
            "accelerate_config": "accelerate.yaml" if cfg["fsdp"]["enabled"] else None,
        }

    def versions(self) -> dict[str, str]:
        req = requirements()
        out = {"python": req["python"], **req["packages"]}
        cfg = self.cfg
        if cfg["deepspeed"]["stage"] > 0:
            out["deepspeed"] = req["optional"]["deepspeed"]
        if cfg["adapter"]["type"] == "qlora" or "8bit" in cfg["training"]["optimizer"]:
            out["bitsandbytes"] = req["optional"]["bitsandbytes"]
        return dict(sorted(out.items()))

    def sweep(self) -> list[dict[str, Any]]:
        from .sweep import expand

        try:
            return expand(self.cfg)
        except ConfigError as e:
            line, col = self.where.doc.pos(("sweep",)) if self.where.doc is not None else (0, 0)
            self.errors += [_relocate(d, self.where.file, line, col) for d in e.diagnostics]
            return []


# config.json keys that decide weight shapes, and model settings the plan's facts (and the estimate) read
_SHAPE_KEYS = frozenset({"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                         "intermediate_size", "moe_intermediate_size", "vocab_size", "num_experts",
                         "num_local_experts"})
_SETTING_FACTS = frozenset({"max_position_embeddings", "num_experts_per_tok", "tie_word_embeddings"})


def _relocate(d: Diagnostic, file: str, line: int, col: int) -> Diagnostic:
    """Point a diagnostic raised without a position at the config key it belongs to."""
    if d.line:
        return d
    from dataclasses import replace

    return replace(d, file=d.file or file, line=line, col=col)


def _extension(filename: str) -> str:
    """'.jsonl', or '.jsonl.gz' for compressed files; only safe characters."""
    parts = filename.lower().split(".")[1:]
    if not parts:
        return ""
    keep = parts[-2:] if parts[-1] in ("gz", "zst", "bz2", "xz") and len(parts) >= 2 else parts[-1:]
    ext = "." + ".".join(re.sub(r"[^a-z0-9]", "", p) for p in keep)
    return ext if ext.strip(".") else ""


def _count_params(facts: dict[str, Any]) -> int | None:
    from .estimate.params import count_params

    return count_params(facts)


def _take(n: int, amount: Any) -> int:
    """Rows `subset` / `eval_split` select out of n: an int count or a float fraction (as prepare counts)."""
    if amount is None or amount == 0:
        return 0
    k = round(n * float(amount)) if isinstance(amount, float) and amount < 1 else int(amount)
    return max(0, min(n, k))


def _train_rows(data: list[dict[str, Any]], cfg: dict[str, Any]) -> int | None:
    """Training rows before packing, as prepare will draw them when every row is valid: per dataset
    subset → minus the eval split, then the blend (shares ∝ weight · n^(1/T) of the natural total,
    × per-dataset epochs). None when a dataset's row count is unknown (hub data, parquet, ...)."""
    sizes: list[int] = []
    for entry, ds in zip(data, cfg["data"]["datasets"], strict=True):
        n = entry.get("rows")
        if n is None:
            return None
        if ds["subset"] is not None:
            n = _take(n, ds["subset"])
        ev = ds["eval_split"] if ds["eval_split"] is not None else cfg["data"]["eval_split"]
        sizes.append(n - _take(n, ev))
    temperature = float(cfg["data"]["temperature"])
    scores = [float(ds["weight"]) * (n ** (1.0 / temperature) if n > 0 else 0.0)
              for n, ds in zip(sizes, cfg["data"]["datasets"], strict=True)]
    total, score_sum = sum(sizes), sum(scores)
    if score_sum <= 0:
        return 0
    return sum(round(total * s / score_sum * float(ds["epochs"]))
               for s, ds in zip(scores, cfg["data"]["datasets"], strict=True))
