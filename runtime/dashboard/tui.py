"""`loft dashboard RUN --tui`: the same numbers in the terminal (rich's Live table), for SSH sessions
without a tunnel. One column per run or sweep trial, a loss sparkline, refreshed every `interval` seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .runs import METRICS, Run, discover, eta_s, read_from

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    vals = values[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(BLOCKS[min(len(BLOCKS) - 1, int((v - lo) / span * (len(BLOCKS) - 1) + 0.5))] for v in vals)


def _f(v: Any, spec: str = ".4g") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "–"


def row(run: Run, records: list[dict[str, Any]]) -> dict[str, str]:
    """One run's cells (plain strings: the table and the tests read the same thing)."""
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    last = train[-1] if train else {}
    summary = run.summary()
    est, measured = summary["estimate"], ((summary["report"] or {}).get("measured") or {})
    gpus = last.get("gpus") or []
    eta = eta_s(records)
    peak = measured.get("peak_total_gib") or max((r.get("mem_peak_reserved_gib") or 0 for r in train), default=0) or None
    return {
        "run": run.label,
        "step": f"{last.get('step', 0)}/{last.get('max_steps') or '?'}",
        "epoch": _f(last.get("epoch"), ".3g"),
        "loss": _f(last.get("loss")),
        "eval": _f(evals[-1]["eval_loss"]) if evals else "–",
        "lr": _f(last.get("learning_rate"), ".3g"),
        "grad": _f(last.get("grad_norm"), ".3g"),
        "tok/s": _f(last.get("tokens_per_s"), ".4g"),
        "eta": (summary["report"] or {}).get("status") or (f"{eta / 60:.1f} min" if eta is not None else "–"),
        "gpu": " ".join(f"{g['index']}:{g['util_pct']}% {g['mem_used_gib']:.1f}G" for g in gpus) or "–",
        "peak/est GiB": f"{_f(peak)}/{_f(est.get('total_gib'))}",
        "spikes": str(sum(1 for r in train if r.get("spike"))),
        "loss curve": sparkline([float(r["loss"]) for r in train if isinstance(r.get("loss"), (int, float))]),
    }


class Watch:
    """Incremental reader over every run of `dirs` (the TUI's state)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.data: dict[Path, tuple[int, list[dict[str, Any]]]] = {}

    def rows(self) -> list[dict[str, str]]:
        out = []
        for run in discover(self.dirs):
            offset, recs = self.data.get(run.out, (0, []))
            new, offset, reset = read_from(run.out / METRICS, offset)
            recs = (new if reset else recs + new)
            self.data[run.out] = (offset, recs)
            out.append(row(run, recs))
        return out


def table(rows: list[dict[str, str]], color: bool) -> Any:
    """One column per run, one row per quantity: several runs still fit an 80-column SSH terminal."""
    from rich.table import Table

    t = Table(title="loft", expand=False, header_style="bold" if color else "")
    t.add_column("")
    for r in rows:
        t.add_column(r["run"], overflow="fold")
    for key in (k for k in (rows[0] if rows else {}) if k != "run"):
        t.add_row(key, *(r[key] for r in rows))
    return t


def run_tui(dirs: list[Path], interval: float = 2.0, frames: int | None = None, color: bool = True) -> int:
    """Refresh until Ctrl-C, or `frames` times (tests, `--once`)."""
    from rich.console import Console
    from rich.live import Live

    console = Console(no_color=not color)
    watch = Watch(dirs)
    shown = 0
    with Live(table(watch.rows(), color), console=console, auto_refresh=False) as live:
        shown += 1
        try:
            while frames is None or shown < frames:
                time.sleep(interval)
                live.update(table(watch.rows(), color), refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass
    return 0
