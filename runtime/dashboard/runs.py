"""What the dashboard and the terminal view show: the runs under the given directories and their records.

A directory given on the command line is a bundle (holds plan.lock: its output dir and every sweep trial's
`trial-N/` under it) or an output directory itself (holds metrics.jsonl). Records are read incrementally by
byte offset, complete lines only, so a line being written is never half-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
REPORT = "train_report.json"


@dataclass(frozen=True)
class Run:
    id: str
    label: str
    out: Path
    plan: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The estimate to draw beside the measured values, and the train report once it exists."""
        est = self.plan.get("estimate") or {}
        vram, time_est = est.get("vram") or {}, est.get("time") or {}
        report = _json(self.out / REPORT)
        return {"id": self.id, "label": self.label,
                "estimate": {"total_gib": vram.get("total_gib"), "allocated_gib": vram.get("allocated_gib"),
                             "tokens_per_s": time_est.get("tokens_per_s"), "gpu": vram.get("gpu"),
                             "total_steps": (self.plan.get("derived") or {}).get("total_steps")},
                "report": {k: report.get(k) for k in ("status", "global_step", "max_steps", "measured",
                                                      "train_runtime_s", "tokens")} if report else None}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def discover(dirs: list[Path]) -> list[Run]:
    """Every run under `dirs`, in the order given (trials by number)."""
    runs: list[Run] = []
    for d in dirs:
        d = d.resolve()
        plan = _json(d / "plan.lock")
        if plan:
            out = (d / str((plan.get("config") or {}).get("output_dir") or "out")).resolve()
            name = str(plan.get("name") or d.name)
        else:
            out, name = d, d.name
        trials = sorted((p for p in out.glob("trial-*") if p.is_dir() and p.name[6:].isdigit()),
                        key=lambda p: int(p.name[6:]))
        if (out / METRICS).is_file() or not trials:
            runs.append(Run(str(len(runs)), name, out, plan))
        for t in trials:
            runs.append(Run(str(len(runs)), f"{name}/{t.name}", t, plan))
    return runs


def read_from(path: Path, offset: int) -> tuple[list[dict[str, Any]], int, bool]:
    """(records after byte `offset`, the new offset, reset). `reset` is true when the file was rewritten
    shorter (a resumed run cuts metrics.jsonl back to its checkpoint): the records are then from the start."""
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0, offset > 0
    reset = size < offset
    if reset:
        offset = 0
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(max(0, size - offset))
    end = data.rfind(b"\n") + 1  # complete lines only
    records = []
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records, offset + end, reset


def eta_s(records: list[dict[str, Any]]) -> float | None:
    """Seconds left at the pace so far: (max_steps - step) × elapsed / step, from the newest training record."""
    train = [r for r in records if "loss" in r and r.get("step")]
    if not train:
        return None
    last = train[-1]
    step, total, elapsed = int(last["step"]), int(last.get("max_steps") or 0), float(last.get("elapsed_s") or 0)
    if total <= 0 or step <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - step) * elapsed / step)


def snapshot(dirs: list[Path]) -> list[dict[str, Any]]:
    """Each run's state now, as `loft dashboard --json` prints it: the page's summary plus the newest record
    and the ETA (what a script polling a run needs, without a browser)."""
    out = []
    for run in discover(dirs):
        records, _, _ = read_from(run.out / METRICS, 0)
        out.append({**run.summary(), "out": str(run.out), "records": len(records),
                    "latest": records[-1] if records else None, "eta_s": eta_s(records)})
    return out
