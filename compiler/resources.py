"""Where loft's data folders are. They are siblings of this package both in a checkout (compiler/,
schemas/, targets/, chat_templates/, runtime/) and in an install (loft/compiler, loft/schemas, …), so one
path works for both; no importlib.resources indirection (editable installs of data-only folders trip it)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """The folder of a loft package: "schemas", "targets", "chat_templates" or "runtime"."""
    return ROOT / name
