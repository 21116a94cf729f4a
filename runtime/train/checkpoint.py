"""Atomic checkpoints and resume.

The Trainer writes a checkpoint into ``<checkpoints>/.staging/checkpoint-N``; after every rank has
finished writing, the main process drops a ``loft-complete.json`` marker in it and renames it to
``<checkpoints>/checkpoint-N`` (a rename within one directory is atomic on POSIX). A run killed mid-save
leaves only a staging directory or a directory without the marker; neither is ever picked for resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "loft-complete.json"
STAGING = ".staging"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def is_complete(path: Path) -> bool:
    return path.is_dir() and (path / MARKER).is_file() and (path / "trainer_state.json").is_file()


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Complete checkpoints, oldest step first."""
    if not checkpoints.is_dir():
        return []
    found = []
    for child in checkpoints.iterdir():
        m = _NAME.match(child.name)
        if m and is_complete(child):
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def newest_complete(checkpoints: Path) -> Path | None:
    done = complete_checkpoints(checkpoints)
    return done[-1] if done else None


def damage(path: Path) -> str | None:
    """Why a complete-marked checkpoint cannot be loaded, or None: every safetensors file's header must
    cover its data (a truncated file fails here, as it would in the Trainer), and every torch zip
    (optimizer.pt, scheduler.pt, ...) must pass its CRC check. Reads the files once, at resume only."""
    import zipfile

    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        try:
            if f.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(f), "pt") as st:
                    for key in st.keys():  # noqa: SIM118 (safe_open is not iterable)
                        st.get_slice(key)
            elif f.suffix in (".pt", ".bin", ".pth") and zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    bad = z.testzip()
                if bad is not None:
                    return f"{f.name}: entry {bad} is corrupt"
            elif f.suffix == ".json":
                json.loads(f.read_text(encoding="utf-8"))
        except Exception as e:  # any failure to read is damage; the message says which file and why
            return f"{f.name}: {type(e).__name__}: {e}"
    return None


def newest_loadable(checkpoints: Path, say: Any = None) -> Path | None:
    """The newest complete checkpoint whose files load; damaged newer ones are skipped with a message
    (kept on disk for a look, never deleted here)."""
    for path in reversed(complete_checkpoints(checkpoints)):
        problem = damage(path)
        if problem is None:
            return path
        if say is not None:
            say(f"{path.name} is damaged ({problem}); falling back to the previous complete checkpoint")
    return None


def staging_dir(checkpoints: Path) -> Path:
    return checkpoints / STAGING


def log_window_file(path: Path, rank: int) -> Path:
    return path / f"loft-log-window-rank{rank}.json"


def save_log_window(path: Path, rank: int, loss_sum: float, last_logged: int) -> None:
    """The Trainer's unlogged running loss (one value per rank) and the step it was last logged at.

    Written into the checkpoint so that a logging window which spans a save-and-quit logs the same mean
    loss as the uninterrupted run: the Trainer keeps that accumulator in memory only and starts it at 0 on
    resume, which would average the window over its resumed steps alone.
    """
    path.mkdir(parents=True, exist_ok=True)  # a rank that saves no weights may reach here first
    log_window_file(path, rank).write_text(
        json.dumps({"loss_sum": loss_sum, "last_logged": last_logged}, sort_keys=True) + "\n", encoding="utf-8")


def load_log_window(path: Path, rank: int) -> tuple[float, int] | None:
    """``save_log_window``'s values, or None for a checkpoint written without them."""
    try:
        data = json.loads(log_window_file(path, rank).read_text(encoding="utf-8"))
        return float(data["loss_sum"]), int(data["last_logged"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def publish(checkpoints: Path, step: int, meta: dict[str, Any] | None = None) -> Path:
    """Mark the staged checkpoint complete and move it into place (main process only)."""
    staged = staging_dir(checkpoints) / f"checkpoint-{step}"
    final = checkpoints / f"checkpoint-{step}"
    (staged / MARKER).write_text(json.dumps({"step": step, **(meta or {})}, sort_keys=True) + "\n",
                                 encoding="utf-8")
    _fsync_dir(staged)
    if final.exists():  # the same step saved again (e.g. a stop right at a save step): replace it
        trash = checkpoints / f".old-checkpoint-{step}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, final)
    _fsync_dir(checkpoints)
    with contextlib.suppress(OSError):
        staging_dir(checkpoints).rmdir()
    return final


def rotate(checkpoints: Path, keep: int | None) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``keep``; incomplete leftovers are removed too."""
    removed = []
    for child in checkpoints.iterdir() if checkpoints.is_dir() else []:
        if _NAME.match(child.name) and not is_complete(child):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    if keep is not None and keep > 0:
        done = complete_checkpoints(checkpoints)
        for old in done[: max(0, len(done) - keep)]:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return removed


def clean_staging(checkpoints: Path) -> None:
    """Half-written checkpoints from a killed run."""
    shutil.rmtree(staging_dir(checkpoints), ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
