"""The estimate as a terminal table (`loftc estimate`, `loftc check`) and as Markdown (plan.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COMPONENT_LABELS = {
    "weights": "weights (incl. bf16 casts / gathered shards)",
    "lora": "LoRA adapter parameters",
    "gradients": "gradients",
    "optimizer": "optimizer states (+ step temporaries)",
    "master_weights": "fp32 master weights",
    "activations": "activations saved for backward",
    "logits": "logits and loss",
    "workspace": "kernel workspaces",
    "cuda_context": "CUDA context",
    "allocator_overhead": "allocator overhead (reserved − allocated)",
    "allocator_holes": "allocator: freed gradient region the loss path cannot reuse",
}
MAX_OPTIONS = 12


def _g(x: Any) -> str:
    return "—" if x is None else f"{float(x):.2f}"


def _usd(x: Any) -> str:
    return "—" if x is None else f"${float(x):,.2f}"


def _hours(x: Any) -> str:
    if x is None:
        return "unknown"
    x = float(x)
    if x < 1 / 60:
        return f"{x * 3600:.0f} s"
    return f"{x * 60:.1f} min" if x < 1 else f"{x:.2f} h"


def _table(header: list[str], rows: list[list[str]], md: bool) -> list[str]:
    if md:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()] + [
        fmt.format(*r).rstrip() for r in rows]


def _lines(est: Mapping[str, Any], md: bool) -> list[str]:
    h = (lambda s: f"#### {s}") if md else (lambda s: f"{s}:")
    out: list[str] = []
    v = est.get("vram") or {}
    if v.get("unknown") or v.get("total_gib") is None:
        why = v.get("unknown") or "no VRAM figure in this estimate"
        out.append(("**Estimate unavailable:** " if md else "estimate unavailable: ") + str(why))
        return out
    t = est.get("time") or {}
    c = est.get("cost") or {}
    fits = v.get("fits") or {}
    gpu = v.get("gpu")
    verdict = "fits" if fits.get(gpu) else "does NOT fit"
    out.append(f"Peak VRAM per GPU: {_g(v.get('total_gib'))} GiB on {gpu} ({v.get('memory_gib')} GiB usable): "
               f"{verdict}; peak in the {v.get('peak_phase')} phase; micro batch {v.get('micro_batch')} × "
               f"{v.get('seq_len')} tokens on {v.get('num_gpus')} GPU(s); largest micro batch that fits: "
               f"{v.get('max_micro_batch')}.")
    out.append("")
    comps, maxima = v.get("components") or {}, v.get("component_max") or {}
    rows = [[COMPONENT_LABELS.get(k, k), _g(x), _g(maxima.get(k))] for k, x in comps.items() if x or maxima.get(k)]
    rows.append(["total (what nvidia-smi shows)", _g(v.get("total_gib")), ""])
    out += _table(["component", "GiB at peak", "GiB max in step"], rows, md)
    phases = v.get("phase_peaks") or {}
    if phases:
        out += ["", "Phase peaks (GiB): " + ", ".join(f"{p} {_g(x)}" for p, x in phases.items())]
    if v.get("offload_cpu_gib"):
        out.append(f"CPU memory for offloaded states: {_g(v['offload_cpu_gib'])} GiB")
    ok = [g for g, f in fits.items() if f]
    no = [g for g, f in fits.items() if not f]
    out += ["", f"Fits: {', '.join(ok) or 'none'}", f"Does not fit: {', '.join(no) or 'none'}"]
    rec = v.get("recommended")
    if rec:
        where = f" at {rec['provider']}" if rec.get("provider") else ""
        out.append(f"Recommended: {rec['num_gpus']}× {rec['gpu']}{where} ({rec.get('reason', '')})")
    out += ["", h("Time"),
            f"{_hours(t.get('hours'))} on {t.get('num_gpus')}× {t.get('gpu')}"
            + (f" for {t['tokens']:,} tokens" if t.get("tokens") else "")
            + (f" at {t['tokens_per_s']:,.0f} tokens/s" if t.get("tokens_per_s") else ""),
            f"basis: {t.get('basis')}"]
    options = c.get("options") or []
    out += ["", h("Cost")]
    best = c.get("cheapest")
    if best:
        out.append(f"Cheapest that fits: {_usd(best['total_usd'])} — {best['num_gpus']}× {best['gpu']} on "
                   f"{best['provider']} at ${best['price_per_gpu_hour']:.2f}/GPU-h on demand (list price as of "
                   f"{best['as_of']}, {best['source']})")
        spot = c.get("cheapest_spot")
        if spot and spot is not best and spot.get("total_usd") != best.get("total_usd"):
            out.append(f"Cheapest on spot/interruptible: {_usd(spot['total_usd'])} — {spot['num_gpus']}× "
                       f"{spot['gpu']} on {spot['provider']}")
    elif t.get("hours") is None:
        out.append("no cost: the token count is unknown until prepare")
    else:
        out.append("no catalog option fits")
    if options:
        rows = [[o["provider"], o["gpu"], str(o["num_gpus"]), f"${o['price_per_gpu_hour']:.2f}",
                 "spot" if o["spot"] else "on-demand", "yes" if o["fits"] else "no", _hours(o["hours"]),
                 _usd(o["total_usd"]), o["as_of"]] for o in options[:MAX_OPTIONS]]
        head = ["provider", "gpu", "gpus", "$/GPU-h", "kind", "fits", "time", "total", "as of"]
        out += ["", *_table(head, rows, md)]
        if len(options) > MAX_OPTIONS:
            out.append(f"… {len(options) - MAX_OPTIONS} more (loftc estimate --json lists all)")
    notes = list(v.get("assumptions") or [])
    if notes:
        out += ["", h("Assumptions")] + [f"- {n}" for n in notes]
    warns = est.get("warnings") or []
    if warns:
        out += ["", h("Warnings")] + [f"- {w.get('message', w) if isinstance(w, Mapping) else w}" for w in warns]
    return out


def to_markdown(estimate: Mapping[str, Any]) -> str:
    return "\n".join(_lines(estimate, md=True)) + "\n"


def to_text(estimate: Mapping[str, Any]) -> str:
    return "\n".join(_lines(estimate, md=False)) + "\n"
