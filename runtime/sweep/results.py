"""What a sweep leaves in `out/sweep/`: results.jsonl (one line per finished trial), results.md (ranked by
the metric), loss_curves.png (every trial's training loss), best.yaml (the winner as a loft config)."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

from ..train.metrics import read_jsonl
from .space import with_values

RESULTS = "results.jsonl"


def append(folder: Path, record: dict[str, Any]) -> None:
    with (folder / RESULTS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")


def load(folder: Path) -> list[dict[str, Any]]:
    """Finished trials, the last record of each trial number winning (a trial re-run after a crash)."""
    by_trial = {r["trial"]: r for r in read_jsonl(folder / RESULTS)}
    return [by_trial[k] for k in sorted(by_trial)]


def ranked(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Completed trials by metric, then pruned ones (their value is from an earlier step), then failed."""
    sign = 1.0 if direction == "minimize" else -1.0

    def key(r: dict[str, Any]) -> tuple[int, float, int]:
        group = {"complete": 0, "pruned": 1}.get(r["state"], 2)
        v = r.get("value")
        return group, sign * v if isinstance(v, int | float) and math.isfinite(v) else math.inf, r["trial"]

    return sorted(records, key=key)


def write_all(folder: Path, sweep: dict[str, Any], plan: dict[str, Any], run_root: Path) -> dict[str, Any] | None:
    """results.md, loss_curves.png and best.yaml from results.jsonl; returns the best record."""
    records = ranked(load(folder), sweep["direction"])
    _atomic(folder / "results.md", table(records, sweep))
    plot(folder / "loss_curves.png", records, run_root)
    best = next((r for r in records if r["state"] == "complete"), None)
    if best is not None:
        _atomic(folder / "best.yaml", best_yaml(plan, best, sweep))
    return best


def table(records: list[dict[str, Any]], sweep: dict[str, Any]) -> str:
    metric = sweep["metric"]
    lines = [f"# Sweep results: {len(records)} trial(s), ranked by {metric} ({sweep['direction']})", "",
             f"| rank | trial | params | {metric} | steps | time | pruned? |", "|---:|---:|---|---:|---:|---:|---|"]
    for i, r in enumerate(records, 1):
        params = ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in sorted(r["params"].items()))
        v = r.get("value")
        value = f"{v:.4f}" if isinstance(v, int | float) else "—"
        pruned = f"yes, step {r['pruned']['step']}: {r['pruned']['reason']}" if r.get("pruned") else (
            "failed: " + str(r.get("error")) if r["state"] == "failed" else "no")
        lines.append(f"| {i} | {r['trial']} | {params.replace('|', '/')} | {value} | {r.get('steps') or 0} | "
                     f"{r.get('time_s', 0):.0f} s | {pruned.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def plot(path: Path, records: list[dict[str, Any]], run_root: Path) -> None:
    """Every trial's logged training loss against the step, one line each (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for r in sorted(records, key=lambda r: r["trial"]):
        rows = [m for m in read_jsonl(run_root / r["out_dir"] / "metrics.jsonl") if m.get("loss") is not None]
        if rows:
            style = "--" if r["state"] == "pruned" else "-"
            ax.plot([m["step"] for m in rows], [m["loss"] for m in rows], style, linewidth=1.2,
                    label=f"trial {r['trial']}" + (" (pruned)" if r["state"] == "pruned" else ""))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title("sweep: training loss of every trial")
    if ax.lines:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)


def best_yaml(plan: dict[str, Any], best: dict[str, Any], sweep: dict[str, Any]) -> str:
    """The winning trial as a loft config: the config as written (plan.source.config) with the trial's values
    set and `sweep` removed, so built beside the original file it gives the trial's plan. Axolotl sources
    get the trial's full resolved loft config (its paths are relative to the bundle)."""
    import yaml

    source = plan["source"]
    values = dict(best["params"])
    steps = sweep["budget"]["steps_per_trial"]
    if steps is not None:
        values["training.max_steps"] = steps
    if source["dialect"] == "loft":
        cfg = with_values(source["config"], values)
        cfg.pop("sweep", None)
        where = f"Put it beside {source['file']} (its paths are relative to that file)"
    else:
        cfg = copy.deepcopy(best["config"])
        cfg["sweep"], cfg["output_dir"] = None, plan["config"]["output_dir"]
        cfg = {"loft": 1, **cfg}
        where = "Its paths are relative to the bundle directory"
    v = best.get("value")
    head = (f"# The best trial of sweep {plan['name']!r}: trial {best['trial']}, {sweep['metric']} "
            f"{v:.6g} ({sweep['direction']}).\n# {where}, then: loftc build best.yaml -o best-run/\n")
    return head + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
