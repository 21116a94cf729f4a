"""Per-dataset cache of tokenized (and fitted) samples under `out/cache/`.

An entry is a `save_to_disk` directory plus `meta.json`, named `<dataset>-<key>` where the key hashes
everything that shapes its content (see `key`). Entries are written to a temp dir and renamed, so an
interrupted prepare never leaves a half entry that later looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any


def key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def entry(cache_dir: Path, name: str, k: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cache_dir / f"{safe}-{k}"


def load(path: Path) -> tuple[Any, dict[str, Any]] | None:
    if not (path / "meta.json").is_file():
        return None
    import datasets

    try:
        found = datasets.load_from_disk(str(path / "data")), json.loads((path / "meta.json").read_text())
    except Exception:  # a damaged entry is rebuilt, not trusted
        return None
    os.utime(path)  # recently used: pruned last
    return found


def save(path: Path, ds: Any, meta: dict[str, Any]) -> Any:
    """Write the entry atomically; return the dataset re-opened from disk (memory-mapped)."""
    import datasets

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ds.save_to_disk(str(tmp / "data"))
    (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return datasets.load_from_disk(str(path / "data"))


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of what decides the tokens: the fast tokenizer's full JSON and its special tokens."""
    h = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def prune(cache_dir: Path, name: str, keep: set[str], max_entries: int = 6) -> None:
    """Keep a dataset's newest `max_entries` entries (always those in `keep`); a config flip-flop
    still hits, while old keys don't pile up without bound."""
    import re

    prefix = entry(cache_dir, name, "x").name[:-1]
    pattern = re.compile(re.escape(prefix) + r"[0-9a-f]{20}$")
    found = sorted((p for p in cache_dir.iterdir() if pattern.match(p.name)),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for n, p in enumerate(found):
        if n >= max_entries and p.name[len(prefix):] not in keep:
            shutil.rmtree(p, ignore_errors=True)
