"""Length statistics: `max_length: auto`, the histogram (terminal bars + PNG), what each strategy would cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ROUND_TO = 8  # resolved lengths are rounded up to a multiple of 8 (tensor-core friendly shapes)


def stats(lengths: np.ndarray) -> dict[str, Any]:
    if len(lengths) == 0:
        return {"count": 0}
    q = np.percentile(lengths, [50, 90, 95, 99])
    return {"count": len(lengths), "min": int(lengths.min()), "max": int(lengths.max()),
            "mean": round(float(lengths.mean()), 2), "p50": float(q[0]), "p90": float(q[1]),
            "p95": float(q[2]), "p99": float(q[3]), "knee": knee(lengths), "tokens": int(lengths.sum())}


def knee(lengths: np.ndarray) -> int:
    """Kneedle on the sorted lengths: the point farthest below the chord from shortest to longest,
    where the long tail starts."""
    s = np.sort(lengths).astype(float)
    if len(s) < 3 or s[-1] == s[0]:
        return int(s[-1]) if len(s) else 0
    x = np.linspace(0.0, 1.0, len(s))
    y = (s - s[0]) / (s[-1] - s[0])
    return int(s[int(np.argmax(x - y))])


def resolve(lengths: np.ndarray, setting: Any, rule: str, cap: int | None) -> tuple[int, str]:
    """(max_length, why): the configured int, or the `auto_length` rule over the tokenized lengths."""
    if setting != "auto":
        return int(setting), f"sequence.max_length: {setting} (from the config)"
    if len(lengths) == 0:
        raise ValueError("max_length: auto needs at least one tokenized sample")
    if rule in ("p95", "p99"):
        raw = float(np.percentile(lengths, int(rule[1:])))
    elif rule == "knee":
        raw = float(knee(lengths))
    else:
        raise ValueError(f"unknown sequence.auto_length {rule!r} (expected p95, p99 or knee)")
    chosen = int(-(-int(np.ceil(raw)) // ROUND_TO) * ROUND_TO)
    why = f"auto: {rule} of {len(lengths)} tokenized samples is {raw:g} tokens, rounded up to a multiple of {ROUND_TO}"
    if cap and chosen > cap:
        chosen, why = cap, why + f", capped at the model's max_position_embeddings {cap}"
    over = int((lengths > chosen).sum())
    return chosen, f"{why} → {chosen}; {over} samples ({100 * over / len(lengths):.1f}%) are longer"


def would_cut(lengths: np.ndarray, max_length: int) -> dict[str, dict[str, int]]:
    """What each strategy would do to the samples longer than max_length."""
    over = lengths[lengths > max_length]
    lost = int((over - max_length).sum())
    return {
        "drop": {"samples": len(over), "tokens_lost": int(over.sum())},
        "truncate": {"samples": len(over), "tokens_lost": lost},
        "truncate_left": {"samples": len(over), "tokens_lost": lost},
        "split": {"samples": len(over), "extra_chunks": int((-(-over // max_length) - 1).sum()), "tokens_lost": 0},
    }


def histogram(lengths: np.ndarray, bins: int = 12) -> tuple[list[float], list[int]]:
    if len(lengths) == 0:
        return [], []
    counts, edges = np.histogram(lengths, bins=bins)
    return [round(float(e), 1) for e in edges], [int(c) for c in counts]


def text_histogram(lengths: np.ndarray, max_length: int, width: int = 40) -> str:
    edges, counts = histogram(lengths)
    if not counts:
        return "(no samples)"
    top = max(counts) or 1
    lines = [f"token lengths of {len(lengths)} samples (max_length {max_length}):"]
    for lo, hi, c in zip(edges, edges[1:], counts, strict=False):
        mark = " ✂" if hi > max_length else ""
        lines.append(f"  {int(lo):>6}–{int(hi):<6} {'█' * max(1 if c else 0, round(width * c / top)):<{width}} {c}{mark}")
    return "\n".join(lines)


def plot(lengths: np.ndarray, max_length: int, path: Path) -> None:
    """lengths.png: the histogram of sample lengths with the max_length line (png.py: no matplotlib)."""
    from loft.runtime.prepare.png import histogram_png

    histogram_png(np.asarray(lengths), max_length, path)
