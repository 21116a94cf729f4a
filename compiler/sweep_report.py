"""plan.md's sweep section: the trial matrix with each trial's estimate, the totals, or a bayes search space."""

from __future__ import annotations

import json
from typing import Any


def sweep_view(plan: dict[str, Any]) -> dict[str, Any] | None:
    """Pre-formatted rows for the plan.md template; None without a sweep."""
    sweep = plan.get("sweep")
    if not sweep:
        return None
    budget = sweep["budget"]
    pruner = {"none": "none", "median": f"median (after {sweep['pruner_startup_trials']} trials)",
              "successive_halving": "successive halving"}[sweep["pruner"]]
    settings = [
        ("method", {"grid": "grid (every combination)", "random": f"random (seed {sweep['seed']})",
                    "bayes": f"bayes: Optuna TPE (seed {sweep['seed']})"}[sweep["method"]]),
        ("metric", f"{sweep['metric']} ({sweep['direction']})"),
        ("pruner", pruner + " at eval points" if sweep["pruner"] != "none" else "none"),
        ("budget", ", ".join(filter(None, [
            f"{budget['trials']} trials" if budget["trials"] is not None else None,
            f"{budget['steps_per_trial']} steps per trial" if budget["steps_per_trial"] else None,
            f"wall time {_duration(budget['wall_time_s'])}" if budget["wall_time_s"] else None])) or "—"),
        ("parallel", "one trial per GPU" if sweep["parallel"] == "per_gpu" else "one trial at a time"),
    ]
    space = [(name, _space(entry)) for name, entry in sweep["space"].items()]
    trials = sweep["trials"] or ([sweep["base_trial"]] if sweep.get("base_trial") else [])
    gpu = next((((t["estimate"] or {}).get("vram") or {}).get("gpu") for t in trials), None)
    rows = [{"trial": "each" if t["trial"] is None else t["trial"],
             "params": ", ".join(f"`{k}` = {_json(v)}" for k, v in sorted(t["overrides"].items())) or "(the space)",
             "steps": _steps(t["derived"]), "hours": _hours(_get(t, "time", "hours")),
             "usd": _usd(_get(t, "cost", "total_usd")),
             "fits": {True: "yes", False: "**no**", None: "—"}[t["fits"]]} for t in trials]
    if sweep["method"] != "bayes":
        hours = [_get(t, "time", "hours") for t in trials]
        usd = [_get(t, "cost", "total_usd") for t in trials]
        fitting = sum(1 for t in trials if t["fits"] is not False)
        total = {"trials": len(trials), "hours": _hours(sum(hours) if None not in hours else None),
                 "usd": _usd(sum(usd) if None not in usd else None), "fits": f"{fitting} of {len(trials)}"}
    else:
        n = budget["trials"]
        h, c = _get(trials[0], "time", "hours"), _get(trials[0], "cost", "total_usd")
        total = {"trials": n, "hours": _hours(h * n if h is not None else None),
                 "usd": _usd(c * n if c is not None else None), "fits": "—"}
    return {"settings": settings, "space": space, "rows": rows, "total": total, "gpu": gpu or "target GPU",
            "method": sweep["method"]}


def _get(trial: dict[str, Any], section: str, key: str) -> Any:
    value = ((trial.get("estimate") or {}).get(section) or {}).get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _space(entry: dict[str, Any]) -> str:
    if entry["type"] == "categorical":
        return "one of " + ", ".join(_json(v) for v in entry["values"])
    text = f"{entry['type']} {entry['low']:g} … {entry['high']:g}"
    if entry["log"]:
        text += ", log scale"
    if entry.get("step") is not None:
        text += f", step {entry['step']:g}"
    return text


def _steps(derived: dict[str, Any]) -> str:
    steps = derived.get("total_steps")
    return f"{steps:,}" if isinstance(steps, int) else "set by prepare"


def _hours(h: float | None) -> str:
    if h is None:
        return "—"
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.2f} h"


def _usd(v: float | None) -> str:
    return "—" if v is None else f"${v:,.2f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)
