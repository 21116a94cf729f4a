"""Measured device memory and utilisation: what metrics.jsonl records per logging step, and the peak that
train_report.json sets beside the plan's estimate (the estimator checking itself on every run).

Two sources, each optional: torch's caching allocator (this process's peak allocated / reserved bytes so
far; the peak stats are never reset here, so a caller that reads `max_memory_allocated` after training
still gets the run's peak) and NVML (`nvidia-ml-py`, imported as `pynvml`: every GPU's utilisation and used memory,
as nvidia-smi shows them). On a CPU run both are absent and the fields are simply not written.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3


def _gib(n: float) -> float:
    return round(n / GIB, 4)


class GpuSampler:
    """Samples once per logging step; keeps the run's peaks for the report."""

    def __init__(self) -> None:
        self.torch: Any = None
        self.nvml: Any = None
        self.handles: list[Any] = []
        self.peak_allocated = 0
        self.peak_reserved = 0
        self.peak_used: dict[int, int] = {}
        self.context_used: float | None = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:  # pragma: no cover - torch is a runtime requirement
            pass
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.nvml = pynvml
        except Exception:  # no package, no driver, no GPU: NVML is optional by design
            self.nvml, self.handles = None, []

    @property
    def active(self) -> bool:
        return self.torch is not None or bool(self.handles)

    def sample(self) -> dict[str, Any]:
        """Fields for one metrics.jsonl record (empty on a CPU run)."""
        rec: dict[str, Any] = {}
        if self.torch is not None:
            cuda = self.torch.cuda
            alloc, reserved = int(cuda.max_memory_allocated()), int(cuda.max_memory_reserved())
            self.peak_allocated = max(self.peak_allocated, alloc)
            self.peak_reserved = max(self.peak_reserved, reserved)
            rec["mem_peak_allocated_gib"], rec["mem_peak_reserved_gib"] = _gib(alloc), _gib(reserved)
            rec["mem_allocated_gib"] = _gib(cuda.memory_allocated())
        if self.handles:
            gpus = []
            for i, h in enumerate(self.handles):
                try:
                    mem = self.nvml.nvmlDeviceGetMemoryInfo(h)
                    util = self.nvml.nvmlDeviceGetUtilizationRates(h)
                except Exception:
                    continue
                self.peak_used[i] = max(self.peak_used.get(i, 0), int(mem.used))
                gpus.append({"index": i, "util_pct": int(util.gpu), "mem_used_gib": _gib(mem.used),
                             "mem_total_gib": _gib(mem.total)})
            rec["gpus"] = gpus
            if self.torch is not None and self.context_used is None and gpus:
                # what the process holds beyond the allocator's pool: CUDA context, cuBLAS workspaces
                dev = self.torch.cuda.current_device()
                if dev < len(gpus):
                    self.context_used = max(0.0, gpus[dev]["mem_used_gib"]
                                            - _gib(self.torch.cuda.memory_reserved()))
        return rec

    def peaks(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": [s for s, on in (("torch", self.torch is not None),
                                                            ("nvml", bool(self.handles))) if on]}
        if self.torch is not None:
            out["peak_allocated_gib"] = _gib(self.peak_allocated)
            out["peak_reserved_gib"] = _gib(self.peak_reserved)
        if self.context_used is not None:
            out["context_gib"] = round(self.context_used, 4)
        if self.peak_used:
            out["nvml_peak_used_gib"] = {str(i): _gib(v) for i, v in sorted(self.peak_used.items())}
        return out


def measured_vs_estimate(peaks: dict[str, Any], tokens: int, runtime_s: float,
                         estimate: dict[str, Any]) -> dict[str, Any]:
    """The report's `measured` block: measured peak and tokens/s beside the plan's estimate, with their ratio.

    Compared as docs/estimator.md defines `vram.total_gib` (peak reserved + the CUDA context, what nvidia-smi
    shows) and `vram.allocated_gib` (the tensor peak, `max_memory_allocated`)."""
    vram = (estimate or {}).get("vram") or {}
    time_est = (estimate or {}).get("time") or {}
    tps = round(tokens / runtime_s, 1) if runtime_s > 0 and tokens else None
    total = None
    if "peak_reserved_gib" in peaks:
        total = round(peaks["peak_reserved_gib"] + float(peaks.get("context_gib") or 0.0), 4)
    out: dict[str, Any] = {
        **peaks,
        "peak_total_gib": total,
        "tokens_per_s": tps,
        "estimate": {"total_gib": vram.get("total_gib"), "allocated_gib": vram.get("allocated_gib"),
                     "tokens_per_s": time_est.get("tokens_per_s"), "gpu": vram.get("gpu")},
    }
    out["ratio"] = {"total_gib": _ratio(total, vram.get("total_gib")),
                    "allocated_gib": _ratio(peaks.get("peak_allocated_gib"), vram.get("allocated_gib")),
                    "tokens_per_s": _ratio(tps, time_est.get("tokens_per_s"))}
    return out


def _ratio(measured: Any, predicted: Any) -> float | None:
    """measured / predicted (1.0 = the estimate was exact); None when either is unknown."""
    if not isinstance(measured, (int, float)) or not isinstance(predicted, (int, float)) or predicted <= 0:
        return None
    return round(float(measured) / float(predicted), 4)
