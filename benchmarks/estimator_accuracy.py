"""Estimator accuracy against measured H100 peaks (../shared/calibration/h100_small.jsonl).

Each measured case becomes a loft plan (the model's config.json facts + the case's training switches),
goes through the same `estimate_plan` as `loftc build`, and the predicted per-GPU total is compared with
what nvidia-smi would have shown: peak_reserved_gib + the CUDA context (context_used_gib). Cases that ran
out of memory must be predicted not to fit 80 GB.

    python benchmarks/estimator_accuracy.py [--calibration DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "calibration"

# Thresholds of issue 18: median and worst absolute error over the cases that ran; tokens/s median.
MEDIAN_LIMIT_PCT = 4.0
WORST_LIMIT_PCT = 10.0
SPEED_MEDIAN_LIMIT_PCT = 15.0
OOM_LIMIT_GIB = 80.0

MODES: dict[str, dict[str, Any]] = {
    "full_bf16": {"model": {"dtype": "bf16"}, "adapter": {"type": "none"}},
    "full_fp32_master": {"model": {"dtype": "fp32"}, "adapter": {"type": "none"}},
    "lora_r16": {"model": {"dtype": "bf16"},
                 "adapter": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}},
}


def load(calibration: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(env line, case lines, model name → config.json facts) of ../shared/calibration."""
    env, cases, models = read_jsonl(calibration / "h100_small.jsonl")
    for cfg in sorted((calibration / "models").glob("*/config.json")):
        models[cfg.parent.name] = json.loads(cfg.read_text(encoding="utf-8"))
    return env, cases, models


def read_jsonl(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A calibration file: its env line, its cases, and the configs its model lines carry
    (benchmarks/estimator_calibrate.py writes them inline)."""
    env: dict[str, Any] = {}
    cases: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("kind") == "env":
            env = row
        elif row.get("kind") == "case":
            cases.append(row)
        elif row.get("kind") == "model" and isinstance(row.get("config"), dict):
            models[row["model"]] = row["config"]
    return env, cases, models


def case_plan(case: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The loft plan a calibration case corresponds to (no accumulation). Cases of
    benchmarks/estimator_calibrate.py name each switch; those of h100_small.jsonl only a `mode`."""
    if "adapter" in case:
        adapter: dict[str, Any] = {"type": case["adapter"]}
        if case["adapter"] != "none":
            adapter.update(r=16, alpha=32, dropout=0.05, target_modules="all-linear")
        mode = {"model": {"dtype": case.get("dtype", "bf16")}, "adapter": adapter}
    else:
        mode = MODES[case["mode"]]
    world = int(case.get("world", 1))
    cfg = {
        "model": {"attn_implementation": case.get("attn", "sdpa"), **mode["model"]},
        "adapter": mode["adapter"],
        "sequence": {"max_length": case["seq"], "packing": True},
        "training": {"micro_batch_size": case["batch"], "optimizer": case["optimizer"], "precision": "bf16",
                     "gradient_checkpointing": case["grad_ckpt"], "gradient_accumulation_steps": 1,
                     "kernels": {"liger": bool(case.get("liger")), "cut_cross_entropy": False}},
        "deepspeed": {"stage": int(case.get("zero_stage", 0)), "offload_optimizer": bool(case.get("offload_optimizer")),
                      "offload_params": bool(case.get("offload_params"))},
        "fsdp": {"enabled": bool(case.get("fsdp")), "sharding": case.get("fsdp") or "full_shard"},
        "target": {"gpu": "H100", "num_gpus": world, "nodes": 1, "provider": None},
    }
    return {"model": dict(facts), "config": cfg,
            "derived": {"world_size": world, "micro_batch_size": case["batch"], "gradient_accumulation_steps": 1},
            "data": {"datasets": []}}


def extra_files() -> list[Path]:
    """Calibration files written by benchmarks/estimator_calibrate.py and committed under benchmarks/calibration."""
    return sorted((ROOT / "benchmarks" / "calibration").glob("*.jsonl"))


def compare(calibration: Path | None, extra: list[Path] | None = None) -> dict[str, Any]:
    """Case-by-case predictions and the summary: ../shared/calibration and the extra calibration files."""
    sources = [load(calibration)] if calibration is not None else []
    sources += [read_jsonl(p) for p in extra or []]
    rows = []
    env: dict[str, Any] = sources[0][0] if sources else {}
    for src_env, cases, models in sources:
        rows += _rows(src_env, cases, models)
    return {"gpu": env.get("gpu"), "torch": env.get("torch"), "rows": rows, "summary": summarise(rows),
            "modes": {m: summarise([r for r in rows if r["mode"] == m]) for m in sorted({r["mode"] for r in rows})}}


def _rows(env: dict[str, Any], cases: list[dict[str, Any]], models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from loft.compiler.estimate import estimate_plan

    context = float(env.get("context_used_gib", 0.0))
    limit = float(env.get("total_gib") or OOM_LIMIT_GIB)  # the measuring card's memory
    rows = []
    for case in cases:
        if case.get("status") not in ("ok", "oom"):
            continue  # timeout / error: nothing measured
        est = estimate_plan(case_plan(case, models[case["model"]]))
        vram = est["vram"]
        row = {
            "model": case["model"], "mode": case["mode"], "grad_ckpt": case["grad_ckpt"], "batch": case["batch"],
            "seq": case["seq"], "status": case["status"], "predicted_gib": vram["total_gib"],
            "predicted_allocated_gib": vram.get("allocated_gib"), "phase": vram.get("peak_phase"),
            "predicted_tokens_per_s": est["time"]["tokens_per_s"], "measured_tokens_per_s": case.get("tokens_per_s"),
            "bound": (est["time"].get("step") or {}).get("bound"),
        }
        if case.get("tokens_per_s"):
            row["speed_error_pct"] = round(100.0 * (est["time"]["tokens_per_s"] / case["tokens_per_s"] - 1), 1)
        if case["status"] == "ok":
            measured = case["peak_reserved_gib"] + context
            row.update(measured_gib=round(measured, 4), measured_allocated_gib=case["peak_allocated_gib"],
                       error_pct=round(100.0 * (vram["total_gib"] - measured) / measured, 2))
        else:
            row.update(measured_gib=None, error_pct=None, predicted_fits_80gb=vram["total_gib"] <= limit)
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [abs(r["error_pct"]) for r in rows if r["error_pct"] is not None]
    oom = [r for r in rows if r["status"] != "ok"]
    summary = {
        "cases": len(rows), "ok_cases": len(errors), "oom_cases": len(oom),
        "median_abs_error_pct": round(statistics.median(errors), 2) if errors else None,
        "worst_abs_error_pct": round(max(errors), 2) if errors else None,
        "oom_predicted_not_to_fit": sum(1 for r in oom if not r["predicted_fits_80gb"]),
    }
    # Throughput: the roofline's step time against the measured one (3-step timings), on every case timed.
    speed = [abs(r["speed_error_pct"]) for r in rows if r.get("speed_error_pct") is not None]
    summary["speed_cases"] = len(speed)
    summary["speed_median_abs_error_pct"] = round(statistics.median(speed), 1) if speed else None
    summary["speed_worst_abs_error_pct"] = round(max(speed), 1) if speed else None
    summary["passes"] = bool(
        errors and summary["median_abs_error_pct"] <= MEDIAN_LIMIT_PCT
        and summary["worst_abs_error_pct"] <= WORST_LIMIT_PCT
        and summary["oom_predicted_not_to_fit"] == len(oom)
        and (not speed or summary["speed_median_abs_error_pct"] <= SPEED_MEDIAN_LIMIT_PCT)
    )
    return summary


def table(result: dict[str, Any]) -> str:
    head = ("| model | mode | ckpt | batch×seq | status | measured GiB | predicted GiB | error % | peak phase "
            "| tokens/s measured | predicted | error % | bound |")
    lines = [head, "|---|---|---|---|---|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        measured = "OOM" if r["measured_gib"] is None else f"{r['measured_gib']:.2f}"
        err = "fits 80GB!" if r["error_pct"] is None and r.get("predicted_fits_80gb") else (
            "no-fit ✓" if r["error_pct"] is None else f"{r['error_pct']:+.1f}")
        lines.append(f"| {r['model']} | {r['mode']} | {'on' if r['grad_ckpt'] else 'off'} | {r['batch']}×{r['seq']} "
                     f"| {r['status']} | {measured} | {r['predicted_gib']:.2f} | {err} | {r['phase']} "
                     f"| {r['measured_tokens_per_s'] or '—'} | {r['predicted_tokens_per_s'] or '—'} "
                     f"| {r['speed_error_pct']:+.0f} | {r['bound']} |" if r.get("speed_error_pct") is not None else
                     f"| {r['measured_tokens_per_s'] or '—'} | {r['predicted_tokens_per_s'] or '—'} | — | {r['bound']} |")
    s = result["summary"]
    lines += ["", f"{s['ok_cases']} ok cases: median |error| {s['median_abs_error_pct']}%, worst "
              f"{s['worst_abs_error_pct']}% (limits {MEDIAN_LIMIT_PCT}% / {WORST_LIMIT_PCT}%); "
              f"{s['oom_predicted_not_to_fit']}/{s['oom_cases']} OOM cases predicted not to fit; "
              f"{'PASS' if s['passes'] else 'FAIL'}",
              f"throughput ({s['speed_cases']} timed cases): median |error| {s['speed_median_abs_error_pct']}%, "
              f"worst {s['speed_worst_abs_error_pct']}% (limit {SPEED_MEDIAN_LIMIT_PCT}% median)", "",
              "| mode | ok cases | median abs error % | worst % | OOMs predicted | tokens/s median abs error % |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode, m in result["modes"].items():
        lines.append(f"| {mode} | {m['ok_cases']} | {m['median_abs_error_pct']} | {m['worst_abs_error_pct']} "
                     f"| {m['oom_predicted_not_to_fit']}/{m['oom_cases']} | {m['speed_median_abs_error_pct']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=Path, default=DEFAULT, help="folder holding h100_small.jsonl and models/")
    ap.add_argument("--extra", type=Path, nargs="*", default=None,
                    help="calibration files of benchmarks/estimator_calibrate.py (default: benchmarks/calibration/*.jsonl)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    extra = extra_files() if args.extra is None else args.extra
    shared = args.calibration if (args.calibration / "h100_small.jsonl").is_file() else None
    if shared is None and not extra:
        print(f"no calibration data at {args.calibration} (../shared is absent in a user's clone)", file=sys.stderr)
        return 2
    result = compare(shared, extra)
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else table(result))
    return 0 if result["summary"]["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
