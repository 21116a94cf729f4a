"""Loss-spike attribution: flag a logging step whose loss or grad norm is above k × its rolling median, and
write the decoded samples of the batches behind it to ``<out>/spikes/step_N.md`` (+ one JSON line in
``spikes/spikes.jsonl``), so a bad sample can be found, read and blocklisted (``loft spikes RUN --blocklist``).

The rule (``tracking.spikes`` in the plan): a value v of a watched metric at a step is a spike when at least
``min_history`` earlier values exist and v > ``factor`` × median(the last ``window`` of them). The median,
not the mean: one spike must not raise the bar for the next one.
"""

from __future__ import annotations

import json
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPIKES_DIR = "spikes"
SPIKES_FILE = "spikes.jsonl"
TEXT_LIMIT = 4000  # characters of a sample's text shown in a dump


@dataclass(frozen=True)
class SpikeRule:
    enabled: bool = True
    factor: float = 3.0
    window: int = 50
    min_history: int = 10
    metrics: tuple[str, ...] = ("loss", "grad_norm")
    max_dumps: int = 50

    @classmethod
    def from_plan(cls, tracking: dict[str, Any] | None) -> SpikeRule:
        cfg = dict((tracking or {}).get("spikes") or {})
        if "metrics" in cfg:
            cfg["metrics"] = tuple(cfg["metrics"])
        return cls(**{k: v for k, v in cfg.items() if k in cls.__dataclass_fields__})


@dataclass
class Detector:
    """Incremental: `observe(record)` returns the spike description for that record, or None."""

    rule: SpikeRule
    history: dict[str, deque[float]] = field(default_factory=dict)

    def observe(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        hits: dict[str, Any] = {}
        for name in self.rule.metrics:
            value = rec.get(name)
            if not isinstance(value, (int, float)):
                continue
            past = self.history.setdefault(name, deque(maxlen=max(1, self.rule.window)))
            if len(past) >= self.rule.min_history:
                median = statistics.median(past)
                if median > 0 and value > self.rule.factor * median:
                    hits[name] = {"value": value, "median": round(median, 6), "ratio": round(value / median, 3)}
            past.append(float(value))
        if not hits:
            return None
        return {"metrics": hits, "factor": self.rule.factor, "window": self.rule.window}


def detect(records: Iterable[dict[str, Any]], rule: SpikeRule) -> list[dict[str, Any]]:
    """Spikes in metrics.jsonl records (training records only), oldest first: {step, metrics, ...}."""
    det = Detector(rule)
    found = []
    for rec in records:
        if "loss" not in rec:
            continue
        spike = det.observe(rec)
        if spike is not None:
            found.append({"step": rec.get("step"), **spike})
    return found


class SampleDecoder:
    """Sample id → its tokens in the prepared train split, decoded. The index is built on first use."""

    def __init__(self, train_ds: Any, tokenizer: Any) -> None:
        self.ds, self.tokenizer = train_ds, tokenizer
        self.where: dict[str, int] | None = None

    def _index(self) -> dict[str, int]:
        if self.where is None:
            ids = self.ds.with_format("arrow")["sample_ids"].to_pylist()
            self.where = {}
            for row, sids in enumerate(ids):
                for sid in sids or []:
                    self.where.setdefault(str(sid), row)
        return self.where

    def sample(self, sid: str) -> dict[str, Any]:
        row = self._index().get(sid)
        if row is None:
            return {"id": sid, "text": None, "tokens": None, "trained_tokens": None}
        rec = self.ds[row]
        ids, labels = list(rec["input_ids"]), list(rec["labels"])
        pos = list(rec.get("position_ids") or range(len(ids)))
        starts = [i for i, p in enumerate(pos) if p == 0] or [0]
        k = [str(s) for s in rec["sample_ids"]].index(sid)
        lo = starts[k] if k < len(starts) else 0
        hi = starts[k + 1] if k + 1 < len(starts) else len(ids)
        text = self.tokenizer.decode(ids[lo:hi], skip_special_tokens=False)
        return {"id": sid, "tokens": hi - lo, "trained_tokens": sum(1 for t in labels[lo:hi] if t != -100),
                "text": text}


class SpikeWatcher:
    """Detector + dumps, called by MetricsCallback for each training record (rank 0)."""

    def __init__(self, out: Path, rule: SpikeRule, batches: Any, decoder: SampleDecoder | None) -> None:
        self.dir = out / SPIKES_DIR
        self.rule, self.batches, self.decoder = rule, batches, decoder
        self.detector = Detector(rule)
        self.last_step = 0
        self.dumped = 0

    def replay(self, kept: list[dict[str, Any]]) -> None:
        """On resume: rebuild the rolling history from the records kept, and drop dumps after them."""
        for rec in kept:
            if "loss" in rec:
                self.detector.observe(rec)
                self.last_step = int(rec.get("step") or 0)
        path = self.dir / SPIKES_FILE
        if path.is_file():
            lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            keep = [x for x in lines if int(json.loads(x).get("step", 0)) <= self.last_step]
            path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")
            self.dumped = len(keep)

    def observe(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        step = int(rec.get("step") or 0)
        spike = self.detector.observe(rec) if self.rule.enabled else None
        lo, self.last_step = self.last_step, step
        if spike is None:
            return None
        ids = [sid for b in self.batches.recent if lo < int(b["step"]) <= step for r in b["sample_ids"] for sid in r]
        spike = {**spike, "sample_ids": ids}
        if self.dumped < self.rule.max_dumps:
            self.dumped += 1
            spike["dump"] = f"{SPIKES_DIR}/step_{step}.md"
            self._dump(step, rec, spike)
        return spike

    def _dump(self, step: int, rec: dict[str, Any], spike: dict[str, Any]) -> None:
        samples = [self.decoder.sample(str(s)) if self.decoder else {"id": s} for s in spike["sample_ids"]]
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"step_{step}.md").write_text(markdown(step, rec, spike, samples), encoding="utf-8")
        line = {"step": step, "metrics": spike["metrics"], "factor": spike["factor"], "window": spike["window"],
                "samples": [{k: s.get(k) for k in ("id", "tokens", "trained_tokens", "text")} for s in samples]}
        with (self.dir / SPIKES_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")


def markdown(step: int, rec: dict[str, Any], spike: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    why = "; ".join(f"{k} {v['value']:.4g} = {v['ratio']:.2f} × rolling median {v['median']:.4g}"
                    for k, v in spike["metrics"].items())
    lines = [f"# Spike at step {step}", "",
             f"- {why} (factor {spike['factor']}, window {spike['window']})",
             f"- learning rate {rec.get('learning_rate')}, epoch {rec.get('epoch')}",
             f"- {len(samples)} samples in the flagged batches; blocklist them with "
             f"`loft spikes RUN --blocklist --step {step} >> blocklist.txt`", ""]
    for s in samples:
        lines += [f"## {s['id']}", ""]
        if s.get("text") is None:
            lines += ["(not found in prepared/train)", ""]
            continue
        text = s["text"] if len(s["text"]) <= TEXT_LIMIT else s["text"][:TEXT_LIMIT] + " …(cut)"
        lines += [f"{s['tokens']} tokens, {s['trained_tokens']} trained", "", "```text", text.replace("```", "``\u200b`"),
                  "```", ""]
    return "\n".join(lines)
