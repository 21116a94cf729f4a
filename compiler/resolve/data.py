"""Data: each dataset's name, source (local or hub), sha256, size and row count; local files carried
into the bundle under data/ when they are small enough (`data.bundle`); `data_files` checked; the
`data.blocklist` file carried and hashed."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from ..names import safe_name
from .context import Context
from .files import (
    COMMIT,
    DATA_BUNDLE_LIMIT,
    count_rows,
    dir_files,
    extension,
    sha256_dir,
    sha256_file,
)


def resolve_data(ctx: Context) -> list[dict[str, Any]]:
    """plan["data"]["datasets"]; the config's dataset paths rewritten to where the bundle finds them."""
    d = ctx.cfg["data"]
    d["config"] = None  # merged into `datasets` by validate; its file and hash are in source.data_config
    entries: list[dict[str, Any]] = []
    used: set[str] = {ds["name"] for ds in d["datasets"] if ds.get("name")}
    local_total = 0
    locals_: list[tuple[int, Path]] = []
    for i, ds in enumerate(d["datasets"]):
        keys = ("data", "datasets", i, "path")
        spec = ds["path"]
        path = ctx.local(spec)
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
                ctx.warn("unpinned-revision", keys, f"hub dataset {spec!r} has no pinned revision",
                         hint=f"set data.datasets[{i}].revision to a commit sha")
            elif not COMMIT.match(ds["revision"]):
                ctx.warn("unpinned-revision", ("data", "datasets", i, "revision"),
                         f"revision {ds['revision']!r} is a branch or tag, not a commit: it can move",
                         hint="use the commit sha it points to now")
        elif not path.exists():
            ctx.error("missing-file", keys, f"data file {spec!r} not found",
                      expected=f"a file or directory at {path}, or a hub dataset id ('org/name')")
            continue
        elif not ctx.allowed(path, keys, "data path"):
            continue
        else:
            if ds.get("data_files") is not None and not _check_data_files(ctx, i, path, ds["data_files"]):
                continue
            if path.is_dir():
                listed = ctx.listing(path, keys, "data directory")
                if listed is None:
                    continue
                size = sum(p.stat().st_size for _, p in listed)
                entry.update(sha256=sha256_dir(path, ctx.base_dir), rows=None)
            else:
                size = path.stat().st_size
                entry.update(sha256=sha256_file(path), rows=count_rows(path))
            entry.update(source="local", bytes=size, bundled=False, path=ctx.rel(path))
            local_total += size
            locals_.append((i, path))
        entries.append(entry)
    if ctx.errors:  # missing files: nothing to bundle, and `entries` no longer lines up with datasets
        return entries
    mode = d["bundle"]
    bundle = mode == "always" or (mode == "auto" and local_total <= DATA_BUNDLE_LIMIT)
    for i, path in locals_:
        entry = entries[i]
        ds = d["datasets"][i]
        if bundle:
            entry["path"] = _attach(ctx, entry["name"], path)
            entry["bundled"] = True
        elif mode == "auto":
            ctx.warn("not-bundled", ("data", "bundle"),
                     f"local data totals {local_total / 2**20:.0f} MiB (over {DATA_BUNDLE_LIMIT // 2**20} MiB): "
                     f"{entry['name']} is referred to by a relative path, so the bundle is not relocatable",
                     hint="set data.bundle: always to copy it anyway")
        ds["path"] = entry["path"]
    return entries


def _check_data_files(ctx: Context, i: int, path: Path, data_files: str | list[str]) -> bool:
    """`data_files` of a local dataset: files inside its directory (prepare reads only those)."""
    keys = ("data", "datasets", i, "data_files")
    if not path.is_dir():
        ctx.error("conflict", keys, "data_files selects files inside a dataset directory or hub repository, "
                  f"but {path.name} is a file", expected="path: the directory, or no data_files")
        return False
    ok = True
    for name in [data_files] if isinstance(data_files, str) else data_files:
        f = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            ctx.error("path-traversal", keys, f"data_files entry {name!r} must be a path inside {path.name}/")
            ok = False
        elif not f.is_file():
            ctx.error("missing-file", keys, f"data_files entry {name!r} not found in {path}")
            ok = False
    return ok


def _attach(ctx: Context, name: str, path: Path) -> str:
    if path.is_dir():
        for rel, p in dir_files(path, ctx.base_dir):
            ctx.attachments[f"data/{name}/{rel}"] = p.read_bytes()
        return f"data/{name}"
    ext = extension(path.name)
    ctx.attachments[f"data/{name}{ext}"] = path.read_bytes()
    return f"data/{name}{ext}"


BLOCKLIST_ID = re.compile(r"^(?P<dataset>[^\s:]+):(?P<index>\d+)(?::chunk\d+)?$")


def resolve_blocklist(ctx: Context, datasets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`data.blocklist`: a file of `dataset:index` lines carried into the bundle as blocklist.txt, its
    sha256 and entry count recorded (plan["data"]["blocklist"]); a malformed line is an error at file:line."""
    d = ctx.cfg["data"]
    spec = d.get("blocklist")
    if not spec:
        return None
    keys = ("data", "blocklist")
    path = Path(os.path.abspath(ctx.config_dir / spec))
    if not ctx.allowed(path, keys, "blocklist file"):
        return None
    if not path.is_file():
        ctx.error("missing-file", keys, f"blocklist file {spec!r} not found",
                  expected=f"a text file at {path} (`loft spikes RUN --blocklist > {spec}` writes one)")
        return None
    raw = path.read_bytes()
    names = {ds["name"] for ds in datasets}
    entries, unknown = 0, set()
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        m = BLOCKLIST_ID.match(text)
        if m is None:
            ctx.error("bad-blocklist", keys, f"{path.name}:{n}: {text!r} is not a sample id",
                      expected="`dataset:index` (as `loft spikes --blocklist` prints), one a line")
            continue
        entries += 1
        if m["dataset"] not in names:
            unknown.add(m["dataset"])
    if unknown:
        ctx.warn("blocklist-unknown-dataset", keys, f"{path.name} names datasets this config does not have: "
                 f"{', '.join(sorted(unknown))}", hint=f"datasets: {', '.join(sorted(names))}")
    ctx.attachments["blocklist.txt"] = raw
    d["blocklist"] = "blocklist.txt"
    return {"path": "blocklist.txt", "sha256": hashlib.sha256(raw).hexdigest(), "entries": entries}
