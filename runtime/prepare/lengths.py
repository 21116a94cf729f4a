"""Length statistics: `max_length: auto`, the histogram (terminal bars + PNG), what each strategy would cut."""

from __future__ import annotations

import contextlib
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


class Plotter:
    """Draws lengths.png in a child process forked when prepare starts (Linux): the child imports
    matplotlib (~0.4 s of Python) while the parent tokenizes, on another core and without taking the
    parent's GIL, then plots the lengths `send` gives it. `wait` joins it, and plots here if the child
    failed (so a plotting error still surfaces); without fork everything happens in `wait`."""

    def __init__(self, path: Path) -> None:
        import multiprocessing
        import sys

        self.path = path
        self.args: tuple[np.ndarray, int] | None = None
        self.child: Any = None
        self.conn: Any = None
        if sys.platform.startswith("linux"):
            path.unlink(missing_ok=True)  # so `wait` can tell the child's plot from an old one
            ctx = multiprocessing.get_context("fork")
            self.conn, theirs = ctx.Pipe()
            self.child = ctx.Process(target=_plot_child, args=(theirs, path), name="loft-plot-lengths", daemon=True)
            self.child.start()
            theirs.close()

    def send(self, lengths: np.ndarray, max_length: int) -> None:
        self.args = (lengths, max_length)
        if self.conn is not None:
            with contextlib.suppress(OSError):  # the child died: `wait` plots here
                self.conn.send(self.args)

    def wait(self) -> None:
        if self.args is None:
            raise RuntimeError("Plotter.wait before send")
        if self.child is not None:
            self.child.join()
            self.conn.close()
            if self.child.exitcode == 0 and self.path.is_file():
                return
        plot(self.args[0], self.args[1], self.path)

    def close(self) -> None:
        """Stop the child if prepare ended before `wait` (an error)."""
        if self.child is not None and self.child.is_alive():
            self.child.terminate()
            self.child.join()


def _plot_child(conn: Any, path: Path) -> None:
    import os

    os.nice(19)  # the import is background work: the tokenizer's threads keep the cores while they need them
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # the import is the work done ahead

    try:
        lengths, max_length = conn.recv()
    except EOFError:  # the parent stopped early
        return
    plot(lengths, max_length, path)


def plot(lengths: np.ndarray, max_length: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.hist(lengths, bins=min(60, max(10, len(set(lengths.tolist())))), color="#4C72B0")
    ax.axvline(max_length, color="#C44E52", linestyle="--", label=f"max_length {max_length}")
    ax.set_xlabel("tokens per sample")
    ax.set_ylabel("samples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None, "Creation Time": None} if path.suffix == ".png" else None)
    plt.close(fig)
