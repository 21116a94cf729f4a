"""The search space as plan.lock records it, and the few pure rules both sides of the plan share.

Pure Python (no Optuna, no torch): the compiler imports it to normalise `sweep.params` into
`plan.sweep.space` and to check which keys a `bayes` sweep may search, the runtime to turn the same
space into Optuna distributions. One module, so the two can never disagree about a range.

A space entry is one of
  {"type": "categorical", "values": [...]}
  {"type": "float" | "int", "low": x, "high": y, "log": bool, "step": number | null}
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

# Keys a `bayes` trial may set at run time: the compiler resolves every trial of a grid or random sweep,
# but bayes trials are chosen as results come in, so their keys must be ones that change no number the
# compiler derives (batch shape, steps, warmup, data rows, cadences, launcher): optimiser and adapter
# settings. A key outside this set is refused at build (grid or random resolve any key).
RUNTIME_KEYS = frozenset({
    "training.learning_rate", "training.weight_decay", "training.max_grad_norm", "training.adam_beta1",
    "training.adam_beta2", "training.adam_epsilon", "training.lr_scheduler", "training.min_lr_ratio",
    "training.seed", "training.aux_losses.training_temperature",
    "training.aux_losses.adaptive_label_smoothing.max_smoothing",
    "adapter.r", "adapter.alpha", "adapter.dropout", "adapter.rslora", "adapter.dora",
})

# Config sections the prepare stage reads: a trial that changes none of them trains on the run's data.
PREPARE_KEYS = ("data", "sequence", "template", "template_mask_fallback", "model")

_INDEX = re.compile(r"^(?P<key>[^\[\]]+)((\[\d+\])*)$")


def normalise(spec: Any) -> dict[str, Any]:
    """A `sweep.params` value (a list, {values}, or {min, max, log, step}) as a space entry."""
    if isinstance(spec, list):
        return {"type": "categorical", "values": list(spec)}
    if "values" in spec:
        return {"type": "categorical", "values": list(spec["values"])}
    lo, hi = spec["min"], spec["max"]
    is_int = _is_int(lo) and _is_int(hi) and (spec.get("step") is None or _is_int(spec["step"]))
    return {"type": "int" if is_int else "float", "low": lo, "high": hi, "log": bool(spec.get("log", False)),
            "step": spec.get("step")}


def grid_values(entry: dict[str, Any]) -> list[Any] | None:
    """Every value a grid enumerates: a list, or a stepped range; None for a continuous range."""
    if entry["type"] == "categorical":
        return list(entry["values"])
    step = entry.get("step")
    if step is None:
        return None
    n = math.floor((entry["high"] - entry["low"]) / step + 1e-9) + 1
    vals = [entry["low"] + i * step for i in range(n)]
    return [int(v) for v in vals] if entry["type"] == "int" else [round_value(float(v)) for v in vals]


def range_problem(entry: dict[str, Any]) -> str | None:
    """Why a range entry cannot be searched, or None."""
    if entry["type"] == "categorical":
        return None
    lo, hi, step = entry["low"], entry["high"], entry.get("step")
    if lo > hi:
        return f"min {lo} is above max {hi}"
    if entry["log"] and lo <= 0:
        return "a log range needs min > 0"
    if entry["log"] and step is not None:
        return "a log range cannot have a step"
    if step is not None and step > hi - lo and hi != lo:
        return f"step {step} is larger than the range"
    return None


def round_value(x: float) -> float:
    """Sampled floats keep 6 significant digits: readable in plan.lock and identical across platforms."""
    return float(f"{x:.6g}")


def split_key(name: str) -> list[str | int]:
    """'data.datasets[0].weight' -> ['data', 'datasets', 0, 'weight']; ValueError when malformed."""
    parts: list[str | int] = []
    for piece in name.split("."):
        m = _INDEX.match(piece)
        if not m:
            raise ValueError(name)
        parts.append(m.group("key"))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", piece))
    return parts


def with_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with each dotted key set. Sections a config as written leaves to their defaults
    are added (`adapter.r` on a file without `adapter:`); list items must exist."""
    out = copy.deepcopy(config)
    for name, value in sorted(values.items()):
        *parents, last = split_key(name)
        node: Any = out
        for part in parents:
            if isinstance(part, str) and node.get(part) is None:
                node[part] = {}
            node = node[part]
        node[last] = copy.deepcopy(value)
    return out


def prepare_view(config: dict[str, Any]) -> dict[str, Any]:
    """What the prepare stage reads of a config (its sections and the shuffle seed)."""
    view = {k: config.get(k) for k in PREPARE_KEYS}
    view["seed"] = (config.get("training") or {}).get("seed")
    return view


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
