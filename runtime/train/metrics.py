"""Local run records: ``metrics.jsonl`` (one object per logging step: loss, learning rate, grad norm, tokens,
tokens/s, measured device memory and utilisation, a spike flag), ``batches.jsonl`` (the sample ids of each
optimizer step), and the W&B wiring the plan asks for (``report_to``; never on unless configured).

On resume both files are cut back to the checkpoint's step first, so a stopped-and-resumed run reads
like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from .gpustats import GpuSampler

if TYPE_CHECKING:
    from .spikes import SpikeWatcher

METRICS = "metrics.jsonl"
BATCHES = "batches.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: drop it
            continue
    return rows


def truncate_after(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep records with ``step <= step`` (all of them are rewritten; returns what was kept)."""
    kept = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    if path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, path)
    return kept


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsCallback(TrainerCallback):
    """Appends one JSON object per Trainer log to ``metrics.jsonl`` (main process only).

    Each training record also carries ``max_steps`` (for the dashboard's ETA), ``tokens_per_s`` (since the
    previous record), the sampler's memory fields and, when the spike watcher flags the step, ``spike``."""

    def __init__(self, out: Path, resume_step: int | None = None, sampler: GpuSampler | None = None,
                 spikes: SpikeWatcher | None = None) -> None:
        self.path = out / METRICS
        self.offset = 0.0
        self.start = time.monotonic()
        self.sampler = sampler
        self.spikes = spikes
        self.previous: tuple[float, int] | None = None
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        else:
            kept = truncate_after(self.path, resume_step)
            self.offset = max((float(r.get("elapsed_s") or 0.0) for r in kept), default=0.0)
            if self.spikes is not None:
                self.spikes.replay(kept)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start = time.monotonic()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        elapsed = round(self.offset + time.monotonic() - self.start, 3)
        if "loss" in logs:
            rec = {"step": state.global_step, "loss": _clean(logs.get("loss")),
                   "learning_rate": _clean(logs.get("learning_rate")), "grad_norm": _clean(logs.get("grad_norm")),
                   "tokens": int(logs.get("num_input_tokens_seen", state.num_input_tokens_seen or 0)),
                   "epoch": _clean(logs.get("epoch", state.epoch)), "elapsed_s": elapsed,
                   "max_steps": int(state.max_steps or 0)}
            if self.previous is not None and elapsed > self.previous[0]:
                rec["tokens_per_s"] = round((rec["tokens"] - self.previous[1]) / (elapsed - self.previous[0]), 1)
            self.previous = (elapsed, rec["tokens"])
            if self.sampler is not None:
                rec.update(self.sampler.sample())
            if self.spikes is not None:
                spike = self.spikes.observe(rec)
                if spike is not None:
                    rec["spike"] = spike
        elif any(k.startswith("eval_") for k in logs):
            rec = {"step": state.global_step, "epoch": _clean(state.epoch), "elapsed_s": elapsed}
            rec.update({k: _clean(v) for k, v in logs.items() if k.startswith("eval_")})
        else:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


class BatchRecorder(TrainerCallback):
    """Writes the sample ids the trainer consumed in each optimizer step.

    Rank 0 writes ``batches.jsonl``; other ranks write ``batches.rank<R>.jsonl`` (no collective needed).
    """

    def __init__(self, out: Path, rank: int, resume_step: int | None = None) -> None:
        self.path = out / (BATCHES if rank == 0 else f"batches.rank{rank}.jsonl")
        self.pending: list[list[Any]] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=256)  # for spike dumps (spikes.SpikeWatcher)
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        else:
            truncate_after(self.path, resume_step)

    def add(self, sample_ids: list[list[Any]]) -> None:
        for ids in sample_ids:
            self.pending.append([i if isinstance(i, (int, str)) else str(i) for i in ids])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        rec = {"step": state.global_step, "sample_ids": self.pending}
        self.pending = []
        self.recent.append(rec)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def report_to(tracking: dict[str, Any] | None) -> list[str]:
    """``report_to`` for TrainingArguments, and the W&B environment the plan names (never a secret)."""
    wandb = (tracking or {}).get("wandb")
    if not wandb:
        return []
    try:
        import wandb as _wandb  # noqa: F401
    except ImportError:
        raise RuntimeError("tracking.wandb is set in the plan but the `wandb` package is not installed "
                           "here: `pip install wandb`, or remove tracking.wandb and rebuild") from None
    for key, env in (("project", "WANDB_PROJECT"), ("entity", "WANDB_ENTITY"), ("mode", "WANDB_MODE")):
        if wandb.get(key):
            os.environ.setdefault(env, str(wandb[key]))
    key_env = wandb.get("api_key_env") or "WANDB_API_KEY"
    if key_env != "WANDB_API_KEY" and os.environ.get(key_env) and "WANDB_API_KEY" not in os.environ:
        os.environ["WANDB_API_KEY"] = os.environ[key_env]
    return ["wandb"]
