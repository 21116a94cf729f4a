"""Load a dataset's raw rows: local jsonl/json/parquet/csv, a `save_to_disk` directory, or a hub id.

JSON lines are read by hand so that a malformed line is reported as file:line, and rows are kept as
their JSON text (`_raw`): arrow never has to unify the schema of heterogeneous chats, and map workers
parse them in parallel. Input files are only ever opened for reading.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from loft.runtime.prepare.errors import PrepareError

RAW = "_raw"    # JSON text of a row (jsonl / json sources)
LINE = "_line"  # 1-based line in the source file (jsonl), else the row index + 1


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a directory's (relative path, bytes) pairs in sorted order."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0")
            h.update(_digest(f).encode())
        return h.hexdigest()
    return _digest(path)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_options(entry: dict[str, Any]) -> dict[str, Any]:
    """The dataset entry's loading options (`data_files`, `config_name`) as `load_raw` keywords."""
    return {"data_files": entry.get("data_files"), "config_name": entry.get("config_name")}


def load_raw(path: str, local: Path | None, split: str = "train", revision: str | None = None,
             data_files: str | list[str] | None = None, config_name: str | None = None) -> Any:
    """A `datasets.Dataset` of raw rows with a `_line` column (and `_raw` for JSON sources).

    ``data_files`` picks files inside a hub repository or a local directory; ``config_name`` is the hub
    dataset's configuration (``datasets.load_dataset(path, name)``)."""
    import datasets

    if local is None:
        return _load_hub(path, split, revision, data_files, config_name)
    if not local.exists():
        raise PrepareError(f"{local}: dataset path does not exist")
    if data_files is not None:
        return _local_files(local, [data_files] if isinstance(data_files, str) else list(data_files))
    if local.is_dir():
        if (local / "dataset_info.json").is_file() or (local / "state.json").is_file() \
                or (local / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise PrepareError(f"{local}: no split {split!r} (has {sorted(ds)})")
                ds = ds[split]
            return _with_lines(ds)
        files = sorted(p for p in local.iterdir() if p.suffix in (".jsonl", ".json", ".parquet", ".csv"))
        if not files:
            raise PrepareError(f"{local}: directory holds no saved dataset and no jsonl/json/parquet/csv files")
        return datasets.concatenate_datasets([load_raw(str(f), f) for f in files])
    suffix = local.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(local)
    if suffix == ".json":
        return _json(local)
    if suffix == ".parquet":
        return _with_lines(datasets.Dataset.from_parquet(str(local), keep_in_memory=True))
    if suffix == ".csv":
        return _with_lines(datasets.Dataset.from_csv(str(local), keep_in_memory=True))
    raise PrepareError(f"{local}: unsupported file type {suffix!r} (expected .jsonl, .json, .parquet, .csv)")


def _local_files(root: Path, names: list[str]) -> Any:
    """``data_files`` of a local dataset directory, concatenated in the order given (never outside it)."""
    import datasets

    if not root.is_dir():
        raise PrepareError(f"{root}: data_files needs the dataset path to be a directory (or a hub id)")
    base = root.resolve()
    parts = []
    for name in names:
        f = (root / name).resolve()
        if base not in f.parents:
            raise PrepareError(f"{root}: data_files entry {name!r} is outside the dataset directory")
        if not f.is_file():
            raise PrepareError(f"{root}: data_files entry {name!r} does not exist")
        parts.append(load_raw(str(f), f))
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def _jsonl(path: Path) -> Any:
    """Lines as text: they are parsed once, in the (parallel) tokenize step, where a malformed line
    becomes a `malformed_json` row that prepare turns into a file:line:col error."""
    import datasets

    return datasets.Dataset.from_dict(jsonl_columns(path))


def jsonl_columns(path: Path) -> dict[str, list[Any]]:
    """A jsonl file's non-blank lines as `{_raw: [text], _line: [1-based line]}`: the raw columns without
    `datasets` (prepare tokenizes these in-process while `datasets` is still being imported)."""
    rows, lines = [], []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:  # one bad sample, not a crash: marked for parse_row
                line = f"{BAD_UTF8}{e.start}\n"
            if line.strip():
                rows.append(line)
                lines.append(n)
    return {RAW: rows, LINE: lines}


def _json(path: Path) -> Any:
    import datasets

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PrepareError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise PrepareError(f"{path}: expected a JSON array of rows (or {{\"data\": [...]}})")
    bad = next((i for i, r in enumerate(data) if not isinstance(r, dict)), None)
    if bad is not None:
        raise PrepareError(f"{path}: row {bad} is not a JSON object")
    return datasets.Dataset.from_dict({RAW: [json.dumps(r) for r in data], LINE: list(range(1, len(data) + 1))})


def _with_lines(ds: Any) -> Any:
    return ds.add_column(LINE, list(range(1, len(ds) + 1)))


def _load_hub(path: str, split: str, revision: str | None, data_files: str | list[str] | None = None,
              config_name: str | None = None) -> Any:
    import os

    import datasets

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise PrepareError(
            f"dataset {path!r} is a hub id but this machine is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE=1): "
            "run prepare on a networked box, or download it and point `path` at the local copy")
    try:
        ds = datasets.load_dataset(path, config_name, data_files=data_files, split=split, revision=revision)
    except Exception as e:
        raise PrepareError(f"dataset {path!r}: could not load from the hub ({type(e).__name__}: {e})") from None
    return _with_lines(ds)


# A jsonl line that is not UTF-8 is kept as this marker + the offset of its first bad byte (Arrow columns
# hold UTF-8 only); parse_row turns it into a `bad_encoding` sample (skipped or fatal per data.bad_samples).
BAD_UTF8 = "\x00loft-not-utf8:"


def parse_row(text: str) -> dict[str, Any]:
    """One JSON line → dict; MalformedLine (with the column) when it is not a JSON object, or with reason
    `bad_encoding` when it is not UTF-8 or holds a lone surrogate (`"\\ud800"`: no tokenizer can encode it)."""
    if text.startswith(BAD_UTF8):
        offset = int(text[len(BAD_UTF8):].strip() or 0)
        raise MalformedLine(offset + 1, f"not UTF-8 text (bad byte at offset {offset})", reason="bad_encoding")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise MalformedLine(e.colno, e.msg) from None
    if not isinstance(obj, dict):
        raise MalformedLine(1, f"each line must be a JSON object, got {type(obj).__name__}")
    if _has_surrogate(obj):
        raise MalformedLine(1, "a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape)",
                            reason="bad_encoding")
    return obj


def _has_surrogate(node: Any) -> bool:
    if isinstance(node, str):
        return any("\ud800" <= c <= "\udfff" for c in node)
    if isinstance(node, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_surrogate(v) for v in node)
    return False


class MalformedLine(ValueError):
    def __init__(self, col: int, msg: str, reason: str = "malformed_json") -> None:
        super().__init__(f"{col}: {msg}")
        self.col, self.msg, self.reason = col, msg, reason


def row_dicts(batch: dict[str, list[Any]]) -> list[dict[str, Any] | MalformedLine]:
    """A `Dataset.map` batch → one dict per row (parsing `_raw` JSON text where present)."""
    if RAW in batch:
        out: list[dict[str, Any] | MalformedLine] = []
        for r in batch[RAW]:
            try:
                out.append(parse_row(r))
            except MalformedLine as bad:
                out.append(bad)
        return out
    keys = [k for k in batch if k != LINE]
    n = len(batch[LINE])
    return [{k: batch[k][i] for k in keys} for i in range(n)]
