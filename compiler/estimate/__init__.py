"""Estimate stage: a plan → peak VRAM per GPU, training time and cost, before anything is rented.

Pure functions of the plan and targets/catalog (no torch). `estimate_plan` never raises on unknown model
facts: it returns an estimate marked unknown with the reason, so a build of an exotic config still works.
All floats are rounded so the plan stays byte-reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import catalog
from .cost import cheapest, cost_options
from .params import count_params, param_breakdown
from .setup import Setup, setup_from_plan
from .time import estimate_time
from .vram import vram

__all__ = ["count_params", "estimate_plan", "param_breakdown"]

REFERENCE_GPU = "H100"
MAX_MICRO_BATCH = 4096
SHARDED_COUNTS = (2, 4, 8, 16, 32, 64)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _sig(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def _context(gpu: str | None) -> float:
    spec = catalog.gpus().get(gpu or "") or catalog.gpus()[REFERENCE_GPU]
    return float(spec.get("cuda_context_gib", 0.6))


def total_gib(s: Setup, gpu: str | None) -> float:
    return float(vram(s, _context(gpu))["total_gib"])


def fits(s: Setup, gpu: str) -> bool:
    return total_gib(s, gpu) <= float(catalog.gpus()[gpu]["memory_gib"])


def max_micro_batch(s: Setup, gpu: str) -> int:
    """Largest micro batch whose peak fits `gpu` (0: not even one sequence)."""
    if not fits(s.with_(micro_batch=1), gpu):
        return 0
    lo, hi = 1, 2
    while hi <= MAX_MICRO_BATCH and fits(s.with_(micro_batch=hi), gpu):
        lo, hi = hi, hi * 2
    hi = min(hi, MAX_MICRO_BATCH + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(s.with_(micro_batch=mid), gpu):
            lo = mid
        else:
            hi = mid
    return lo


def _sharded(s: Setup) -> bool:
    return s.zero_stage > 0 or s.fsdp not in (None, "no_shard")


def _unknown(reason: str) -> dict[str, Any]:
    return {  # plan.schema.json allows only vram/time/cost/warnings at this level: the reason sits in each
        "vram": {"unknown": reason, "total_gib": None, "components": {}, "phase_peaks": {}, "fits": {},
                 "recommended": None, "max_micro_batch": None, "assumptions": []},
        "time": {"unknown": reason, "hours": None, "tokens": None, "flops": None, "tokens_per_s": None,
                 "basis": reason},
        "cost": {"unknown": reason, "cheapest": None, "total_usd": None, "options": []},
        "warnings": [{"code": "estimate-unknown", "message": reason}],
    }


def estimate_plan(plan: Mapping[str, Any], gpu: str | None = None, num_gpus: int | None = None,
                  provider: str | None = None, micro_batch: int | None = None) -> dict[str, Any]:
    """The plan's `estimate`: vram, time, cost, warnings. Keyword overrides are the CLI's --gpu etc.
    Never raises on odd input: a configuration it cannot size gets an estimate marked unknown."""
    try:
        est = _estimate(plan, gpu, num_gpus, provider, micro_batch)
    except (ArithmeticError, TypeError, ValueError, KeyError, AttributeError) as exc:
        return _unknown(f"the estimator cannot size this configuration ({type(exc).__name__}: {exc})")
    if not _finite(est):  # absurd but finite inputs (1e153 layers) overflow to inf: not a number to plan with
        return _unknown("the estimate overflowed: the model facts or config hold absurd sizes")
    return est


def _finite(node: Any) -> bool:
    """Every float in the estimate is finite (plan.lock is strict JSON)."""
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite(v) for v in node.values())
    if isinstance(node, list):
        return all(_finite(v) for v in node)
    return True


def _estimate(plan: Mapping[str, Any], gpu: str | None, num_gpus: int | None, provider: str | None,
              micro_batch: int | None) -> dict[str, Any]:
    try:
        setup, why = setup_from_plan(plan)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # malformed facts: say so, never crash
        return _unknown(f"the plan's model facts or config cannot be read ({exc})")
    if setup is None:
        return _unknown(why)
    warnings: list[dict[str, str]] = []
    assumptions = list(setup.assumptions)
    if num_gpus is not None:
        setup = setup.with_(num_gpus=max(1, int(num_gpus)))
    if micro_batch is not None:
        setup = setup.with_(micro_batch=max(1, int(micro_batch)), micro_batch_auto=False)
    wanted = gpu or setup.gpu
    chosen = catalog.gpu_name(wanted)
    if chosen is None:
        if str(wanted).lower() != "cpu":
            warnings.append({"code": "unknown-gpu", "message": f"GPU {wanted!r} is not in targets/catalog/gpus.json: "
                             f"fits and time are given for the catalog's GPUs, headline figures for {REFERENCE_GPU}"})
        else:
            assumptions.append(f"target.gpu is cpu: device memory is shown for a {REFERENCE_GPU}")
    ref = chosen or REFERENCE_GPU
    prov = catalog.provider_name(provider or setup.provider)
    if (provider or setup.provider) and prov is None:
        warnings.append({"code": "unknown-provider",
                         "message": f"provider {provider or setup.provider!r} is not in targets/catalog/providers.json"})

    mmb = max_micro_batch(setup, ref)
    if setup.micro_batch_auto:
        setup = setup.with_(micro_batch=max(1, mmb))
        assumptions.append(f"training.micro_batch_size is auto: sized at the largest that fits a {ref} ({mmb})")
    v = vram(setup, _context(ref))
    fit_map = {g: fits(setup, g) for g in sorted(catalog.gpus())}
    if not fit_map[ref]:
        warnings.append({"code": "does-not-fit",
                         "message": f"predicted peak {v['total_gib']:.1f} GiB per GPU exceeds the {ref}'s "
                         f"{catalog.gpus()[ref]['memory_gib']:g} GiB" + _advice(setup)})

    gpu_specs = catalog.gpus()
    times = {g: estimate_time(setup, gpu_specs[g], plan) for g in gpu_specs}
    t = estimate_time(setup, gpu_specs.get(chosen or "") if chosen else None, plan) if chosen is None else times[chosen]
    if chosen is None and str(wanted).lower() != "cpu":
        t = times[REFERENCE_GPU]
    options = cost_options(lambda g: times[g]["hours"], lambda g: fit_map[g], setup.world, prov,
                           chosen if gpu else None)
    best = cheapest(options)
    recommended = _recommend(setup, fit_map, best)
    if recommended is None:
        warnings.append({"code": "no-gpu-fits", "message": "no GPU in the catalog fits this configuration" + _advice(setup)})

    for o in options:
        o["hours"] = _sig(o["hours"])
        o["total_usd"] = _r(o["total_usd"], 2)
    return {
        "vram": {
            "total_gib": _r(v["total_gib"]),
            "allocated_gib": _r(v["allocated_gib"]),
            "components": {k: _r(x) for k, x in v["components"].items()},
            "component_max": {k: _r(x) for k, x in v["component_max"].items()},
            "phase_peaks": {k: _r(x) for k, x in v["phase_peaks"].items()},
            "peak_phase": v["peak_phase"],
            "offload_cpu_gib": _r(v["offload_cpu_gib"]),
            "gpu": ref,
            "memory_gib": gpu_specs[ref]["memory_gib"],
            "fits": fit_map,
            "recommended": recommended,
            "max_micro_batch": mmb,
            "micro_batch": setup.micro_batch,
            "seq_len": setup.seq_len,
            "num_gpus": setup.world,
            "params": setup.params,
            "trainable_params": setup.trainable,
            "assumptions": assumptions,
        },
        "time": {
            "hours": _sig(t["hours"]),
            "tokens": t["tokens"],
            "flops": _sig(t["flops"]),
            "flops_per_token": _sig(t["flops_per_token"]),
            "tokens_per_s": _r(t["tokens_per_s"], 1),
            "mfu": _r(t["mfu"]),
            "gpu": ref,
            "num_gpus": setup.world,
            "step": _step(t.get("step")),
            "basis": t["basis"],
        },
        "cost": {
            "cheapest": best,
            "cheapest_spot": cheapest(options, spot=True),
            "total_usd": best["total_usd"] if best else None,
            "options": options,
        },
        "warnings": warnings,
    }


def _step(step: dict[str, Any] | None) -> dict[str, Any] | None:
    """The roofline of one micro-step (seconds to 4 significant digits), what the run's measured step is
    compared with (train_report.json)."""
    if not step:
        return None
    return {k: (_sig(v) if isinstance(v, float) else v) for k, v in sorted(step.items())}


def _recommend(s: Setup, fit_map: dict[str, bool], best: dict[str, Any] | None) -> dict[str, Any] | None:
    """The cheapest fitting option when prices and time are known; else the smallest GPU that fits at the
    requested count; with sharding, the fewest GPUs of the reference kind that make it fit."""
    if best is not None:
        return {"gpu": best["gpu"], "num_gpus": best["num_gpus"], "provider": best["provider"],
                "reason": "cheapest on-demand option that fits"}
    specs = catalog.gpus()
    fitting = sorted((g for g, ok in fit_map.items() if ok),
                     key=lambda g: (specs[g]["memory_gib"], -specs[g]["bf16_tflops"], g))
    if fitting:
        return {"gpu": fitting[0], "num_gpus": s.world, "provider": None,
                "reason": "smallest-memory GPU that fits (no token count, so no cost ranking)"}
    if _sharded(s):
        for n in SHARDED_COUNTS:
            if n <= s.world:
                continue
            bigger = s.with_(num_gpus=n if s.nodes == 1 else s.num_gpus, nodes=1 if s.nodes == 1 else -(-n // 8))
            ok = sorted((g for g in specs if fits(bigger, g)), key=lambda g: (specs[g]["memory_gib"], g))
            if ok:
                return {"gpu": ok[0], "num_gpus": bigger.world, "provider": None,
                        "reason": f"sharded states fit across {bigger.world} GPUs"}
    return None


def _advice(s: Setup) -> str:
    tips = []
    if s.micro_batch > 1:
        tips.append("a smaller training.micro_batch_size")
    if not s.grad_ckpt:
        tips.append("training.gradient_checkpointing: true")
    if not (s.liger or s.cce):
        tips.append("training.kernels.liger: true (no full logits)")
    if s.adapter == "none":
        tips.append("adapter.type: lora or qlora")
    elif s.adapter == "lora":
        tips.append("adapter.type: qlora")
    if not _sharded(s):
        tips.append("deepspeed.stage: 3 across several GPUs")
    else:
        if not (s.offload_optimizer or s.fsdp_offload):
            tips.append("deepspeed.offload_optimizer: true")
        tips.append("more GPUs (sharded states shrink per GPU)")
    return ("; try " + ", ".join(tips)) if tips else ""
