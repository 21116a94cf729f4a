"""Measured vs estimated, from finished runs: each run's train_report.json `measured` block as a markdown row.

    .venv/bin/python benchmarks/measured_vs_estimate.py run/ other-run/ [--json]

A run directory is a bundle (its output dir and every sweep trial under it) or an output directory. The
measured figures come from the run itself (torch's allocator peaks, NVML, tokens / runtime); this script only
reads and lines them up, so what it prints is what the GPU measured. On a CPU run the memory columns are empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rows(dirs: list[Path]) -> list[dict[str, Any]]:
    from loft.runtime.dashboard.runs import discover

    out = []
    for run in discover(dirs):
        report = (run.summary()["report"] or {})
        m = report.get("measured")
        if not m:
            continue
        out.append({"run": run.label, "gpu": m["estimate"].get("gpu"), "peak_total_gib": m.get("peak_total_gib"),
                    "est_total_gib": m["estimate"].get("total_gib"), "ratio_total": m["ratio"].get("total_gib"),
                    "peak_allocated_gib": m.get("peak_allocated_gib"),
                    "est_allocated_gib": m["estimate"].get("allocated_gib"),
                    "ratio_allocated": m["ratio"].get("allocated_gib"), "tokens_per_s": m.get("tokens_per_s"),
                    "est_tokens_per_s": m["estimate"].get("tokens_per_s"), "ratio_tps": m["ratio"].get("tokens_per_s")})
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    head = ["run", "gpu", "peak GiB (reserved + context)", "est. GiB", "ratio", "peak allocated GiB",
            "est. allocated", "ratio", "tokens/s", "est. tokens/s", "ratio"]
    keys = ["run", "gpu", "peak_total_gib", "est_total_gib", "ratio_total", "peak_allocated_gib", "est_allocated_gib",
            "ratio_allocated", "tokens_per_s", "est_tokens_per_s", "ratio_tps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("–" if r[k] is None else str(r[k]) for k in keys) + " |" for r in table]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    table = rows(args.runs)
    if not table:
        print("no finished runs with a measured block in train_report.json", file=sys.stderr)
        return 1
    print(json.dumps(table, indent=2) if args.json else markdown(table), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
