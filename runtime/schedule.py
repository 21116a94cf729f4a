"""The step schedule: one formula for the compiler (resolve/batch.py, when the row count is known at build)
and the runtime (prepare, once the prepared row count is; train reads what prepare wrote, with the blend
counts beside it).

Pure: plain arithmetic on plan values, no training library, so the compiler may import it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

FILE = "schedule.json"  # beside the prepared splits: prepared/schedule.json


def steps_per_epoch(rows: int, global_batch: int) -> int:
    return max(1, math.ceil(rows / global_batch))


def total_steps(rows: int, global_batch: int, epochs: float) -> int:
    return max(1, math.ceil(rows / global_batch * epochs))


def warmup(total: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    """training.warmup_steps when set, else ceil(total × warmup_ratio)."""
    return int(warmup_steps) if warmup_steps is not None else math.ceil(total * warmup_ratio)


def every(per_epoch_steps: int, times: int) -> int:
    """`N per epoch` as a step interval."""
    return max(1, per_epoch_steps // times)


def resolve(training: dict[str, Any], rows: int | None, global_batch: int | None) -> dict[str, Any]:
    """The numbers the Trainer runs with, from the plan's training section and the training rows:
    total_steps (max_steps wins), warmup_steps, eval_steps / save_steps (`evals/saves_per_epoch` become
    intervals). Values stay null where the rows or the global batch are not known yet."""
    known = rows is not None and global_batch is not None
    spe = steps_per_epoch(rows, global_batch) if rows is not None and global_batch is not None else None
    total = training["max_steps"]
    if total is None and known:
        assert rows is not None and global_batch is not None
        total = total_steps(rows, global_batch, training["epochs"])
    out: dict[str, Any] = {
        "rows": rows, "global_batch_size": global_batch, "steps_per_epoch": spe, "total_steps": total,
        "warmup_steps": warmup(total, training["warmup_steps"], training["warmup_ratio"]) if total is not None
        else training["warmup_steps"],
    }
    for per_epoch, key in (("evals_per_epoch", "eval_steps"), ("saves_per_epoch", "save_steps")):
        value = training[key]
        if value is None and training[per_epoch] and spe is not None:
            value = every(spe, training[per_epoch])
        out[key] = value
    return out


def write(prepared: Path, schedule: dict[str, Any], blend: dict[str, dict[str, int]]) -> dict[str, Any]:
    """schedule.json: the step numbers and the blend counts prepare resolved (per dataset: the training rows
    `available` before the blend and the samples `drawn`, runtime/blend_counts.py); returns what it wrote."""
    out = {**schedule, "blend": blend}
    prepared.mkdir(parents=True, exist_ok=True)
    (prepared / FILE).write_text(json.dumps(out, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return out


def read(prepared: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((prepared / FILE).read_text(encoding="utf-8"))
    return out
