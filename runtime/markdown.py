"""Markdown pieces for the reports loft writes (eval report, model card) that survive any content.

A fenced block whose text holds a run of backticks as long as the fence ends early: CommonMark closes a
fence at the first line of at least as many backticks. ``fence`` picks a fence one backtick longer than the
longest run in the text; table cells escape ``|`` and fold newlines, which would otherwise end the row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any


def fence(text: str, info: str = "") -> list[str]:
    """Lines of a fenced code block holding ``text`` verbatim, whatever backticks it contains."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + info, *text.split("\n"), ticks]


def cell(value: Any) -> str:
    """One table cell: ``|`` escaped, newlines folded, None as an em dash, floats to 6 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"\s*\n\s*", " ", text).strip()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A GitHub-flavoured markdown table (lines)."""
    out = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out
