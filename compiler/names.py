"""Names loft writes into a plan (run names, dataset names), made from user text."""

from __future__ import annotations

import re


def safe_name(text: str, default: str = "dataset", sep: str = "_") -> str:
    """A loft name (letters, digits, . _ -; starting with a letter or digit; at most 100 characters), also
    safe as a bundle file name part; runs of other characters become one `sep`. `default` when nothing
    usable is left."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", sep, text)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:100].rstrip("-._")
    return name or default
