"""Local files as the plan records them: hashes, listings, row counts, bundle-safe names."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

DATA_BUNDLE_LIMIT = 100 * 1024 * 1024  # data.bundle: auto copies local data up to this total
MODEL_BUNDLE_LIMIT = 64 * 1024 * 1024  # local model directories up to this size travel in model/
MAX_DIR_FILES = 100_000  # a dataset or model directory; `model.base: /` would otherwise walk the disk

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")
_FILE_EXTS = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".arrow", ".gz", ".zst", ".yaml", ".yml")
_SKIP_NAMES = {".git", "__pycache__", ".cache", ".DS_Store"}
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


def is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and not spec.lower().endswith(_FILE_EXTS)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_files(root: Path, skip: Path | None = None, limit: int | None = None) -> list[tuple[str, Path]]:
    """(posix relative path, path) of every regular file under root, sorted; VCS/cache folders and
    `skip` (the bundle being written, when it sits inside a data or model folder) are left out; the walk
    stops after `limit` files. Devices, FIFOs and sockets are never listed (reading one would hang)."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if limit is not None and len(out) >= limit:
            break
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


def extension(filename: str) -> str:
    """'.jsonl', or '.jsonl.gz' for compressed files; only safe characters."""
    parts = filename.lower().split(".")[1:]
    if not parts:
        return ""
    keep = parts[-2:] if parts[-1] in ("gz", "zst", "bz2", "xz") and len(parts) >= 2 else parts[-1:]
    ext = "." + ".".join(re.sub(r"[^a-z0-9]", "", p) for p in keep)
    return ext if ext.strip(".") else ""
