"""Write stage: the bundle on disk and its MANIFEST.sha256 (checks against them: compiler/verify.py).

Writing is atomic at the level a user cares about: the new bundle is built complete (and fsynced) in a
temp directory beside `run/`, then swapped in by rename, so a failed build leaves an existing `run/` as
it was. Run outputs are never deleted: on a rebuild, every top-level entry of the old directory that
the old bundle did not write itself (its `out/` with checkpoints, logs a user put there) moves into
the new bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError

MANIFEST = "MANIFEST.sha256"
PLAN = "plan.lock"
_SKIP_DIRS = {"__pycache__"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_text(files: dict[str, bytes]) -> str:
    """`<sha256>  <path>` lines sorted by path, for every file but the manifest itself."""
    return "".join(f"{sha256(files[p])}  {p}\n" for p in sorted(files) if p != MANIFEST)


def parse_manifest(text: str) -> dict[str, str]:
    """{path: sha256}; raises ValueError naming the first malformed line."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64 or not path or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"line {n} is not '<sha256>  <path>': {line[:80]!r}")
        out[path] = digest
    return out


def file_mode(path: str) -> int:
    return 0o755 if path.endswith(".sh") else 0o644


def is_bundle(path: Path) -> bool:
    return (path / PLAN).is_file() and (path / MANIFEST).is_file()


# Run-time control files a user may create in a bundle (`touch run/STOP`: save-and-quit); never bundle files.
RUN_CONTROL = {"STOP"}


def output_dirs(plan_bytes: bytes | None) -> set[str]:
    """Top-level names that hold run outputs: always `out`, plus the plan's output_dir when relative."""
    names = {"out"}
    if plan_bytes:
        try:
            out = json.loads(plan_bytes)["config"].get("output_dir", "out")
        except (ValueError, KeyError, TypeError, AttributeError):
            out = "out"
        parts = Path(out).parts if isinstance(out, str) and not os.path.isabs(out) else ()
        if parts and parts[0] not in ("..", ".", "loft", MANIFEST, PLAN):
            names.add(parts[0])
    return names


def write_bundle(out_dir: Path, files: dict[str, bytes], force: bool) -> None:
    """Write `files` + MANIFEST.sha256 to `out_dir` via a temp dir and rename; see the module docstring."""
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.is_symlink():
        out_dir = out_dir.resolve()  # swap the directory it points to, keep the link
    for rel in files:
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bundle file path {rel!r} is not a plain relative path")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError.one(f"{out_dir} exists and is not a directory", key="-o", code="out-not-dir")
    existing = out_dir.is_dir() and any(out_dir.iterdir())
    old_is_bundle = existing and is_bundle(out_dir)
    if existing and not old_is_bundle and not force:
        raise ConfigError.one(
            f"{out_dir} is not empty and is not a loft bundle (no plan.lock and MANIFEST.sha256)",
            key="-o", expected="an empty or new directory, or an earlier loft bundle",
            hint="pick another -o, or pass --force to write the bundle into it (its other files are kept; "
                 "loft refuses if one of them is where a bundle file goes)",
            code="out-not-bundle")
    files = {p: files[p] for p in sorted(files) if p != MANIFEST}
    if existing:
        _refuse_foreign(out_dir, files, old_is_bundle)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.loft-new-", dir=out_dir.parent))
    try:
        for rel, data in files.items():
            _write_file(tmp / rel, data, file_mode(rel))
        _write_file(tmp / MANIFEST, manifest_text(files).encode(), 0o644)
        dirs = sorted({(tmp / rel).parent for rel in files} | {tmp}, key=lambda p: -len(p.parts))
        _fsync_all([tmp / rel for rel in files] + [tmp / MANIFEST], dirs)
        os.chmod(tmp, 0o755)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        _fsync_dir(out_dir.parent)
        return
    _swap(out_dir, tmp, files, old_is_bundle)


def owned_paths(out_dir: Path, old_is_bundle: bool) -> set[str]:
    """Every file the old bundle wrote itself, by its MANIFEST.sha256 (nothing for a directory that is
    not a bundle): what a rebuild may replace. Everything else in the directory is the user's."""
    if not old_is_bundle:
        return set()
    try:
        return set(parse_manifest((out_dir / MANIFEST).read_text("utf-8"))) | {MANIFEST}
    except (OSError, ValueError):
        return {MANIFEST, PLAN}


def _refuse_foreign(out_dir: Path, files: dict[str, bytes], old_is_bundle: bool) -> None:
    """Stop before touching anything when the new bundle would replace a file loft did not write (a
    user's `data/`, `model/` or `requirements.lock` under --force, or a file added inside a bundle's own
    folder). Run outputs (output_dir) and the runtime's __pycache__ are not in the way: they are kept."""
    owned = owned_paths(out_dir, old_is_bundle)
    keep = output_dirs(files.get(PLAN)) | (output_dirs(_read(out_dir / PLAN)) if old_is_bundle else set())
    new_top = {p.split("/")[0] for p in files} | {MANIFEST}
    foreign: list[str] = []
    for name in sorted(new_top - keep):
        entry = out_dir / name
        if not (entry.exists() or entry.is_symlink()):
            continue
        if entry.is_dir() and not entry.is_symlink():
            for dirpath, dirnames, filenames in os.walk(entry):
                dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
                for fn in filenames:
                    rel = Path(dirpath, fn).relative_to(out_dir).as_posix()
                    if rel not in owned and not fn.endswith((".pyc", ".pyo")):
                        foreign.append(rel)
        elif name not in owned:
            foreign.append(name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ConfigError.one(
            f"{out_dir} holds files loft did not write where the bundle goes: {shown}", key="-o",
            code="out-not-owned", expected="a directory whose bundle paths loft wrote itself (MANIFEST.sha256)",
            hint="move those files away, or pick another -o; loft never overwrites or deletes them")


def _swap(out_dir: Path, tmp: Path, files: dict[str, bytes], old_is_bundle: bool) -> None:
    """Move the old directory aside, carry the user's entries into the new one, rename it in place."""
    old_manifest: set[str] = set()
    if old_is_bundle:
        with contextlib.suppress(OSError, ValueError):
            old_manifest = {p.split("/")[0] for p in parse_manifest((out_dir / MANIFEST).read_text("utf-8"))}
        old_manifest.add(MANIFEST)
    new_top = {p.split("/")[0] for p in files} | {MANIFEST}
    keep = output_dirs(files.get(PLAN))
    if old_is_bundle:
        keep |= output_dirs(_read(out_dir / PLAN))
    carry = sorted(
        e.name for e in out_dir.iterdir()
        if e.name in keep or (e.name not in old_manifest and e.name not in new_top and not e.name.startswith(".loft-"))
    )
    aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.loft-old-", dir=out_dir.parent))
    os.rmdir(aside)
    os.rename(out_dir, aside)
    moved: list[str] = []
    try:
        for name in carry:
            dest = tmp / name
            if dest.exists() or dest.is_symlink():
                shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
            os.rename(aside / name, dest)
            moved.append(name)
        os.rename(tmp, out_dir)
    except BaseException:
        for name in moved:  # put the user's entries back, then the old bundle
            with contextlib.suppress(OSError):
                os.rename(tmp / name, aside / name)
        with contextlib.suppress(OSError):
            os.rename(aside, out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out_dir.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.chmod(path, mode)  # not subject to the umask


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: list[Path], dirs: list[Path]) -> None:
    """Flush every file, then the directories, before the rename makes them visible. Concurrent fsyncs
    share journal commits: one by one they cost ~6 ms each on a busy disk, together about one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(32, len(paths) + len(dirs))) as pool:
        list(pool.map(_fsync_path, paths))
        list(pool.map(_fsync_dir, dirs))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- reading and verifying


def read_files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a bundle on disk except its outputs and Python caches, keyed by relative path."""
    run_dir = Path(run_dir)
    skip = output_dirs(_read(run_dir / PLAN))
    out: dict[str, bytes] = {}
    for rel, path in _bundle_paths(run_dir, skip):
        if path.is_symlink():
            out[rel] = b"symlink -> " + os.readlink(path).encode()
        else:
            out[rel] = path.read_bytes()
    return out


def _bundle_paths(root: Path, skip_top: set[str]) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in _SKIP_DIRS and not (prefix == "" and (d in skip_top or d.startswith(".loft-")))
        )
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")) or (prefix == "" and name in RUN_CONTROL):
                continue
            path = Path(dirpath) / name
            if not (path.is_file() or path.is_symlink()) or stat.S_ISFIFO(path.lstat().st_mode):
                continue
            yield prefix + name, path
