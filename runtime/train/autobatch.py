"""``training.micro_batch_size: auto``: find the largest micro batch that fits, keep the global batch.

The search is Lightning's batch-size finder: double until the probe runs out of memory, then binary-search
between the last fit and the first failure. The probe (one forward+backward on the longest rows) is
injected, so the search is tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Probe = Callable[[int], bool]  # micro batch size -> fits in memory


@dataclass
class AutoBatch:
    micro_batch_size: int
    gradient_accumulation_steps: int
    global_batch_size: int
    max_fit: int
    tried: list[tuple[int, bool]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(probe: Probe, limit: int, start: int = 1) -> tuple[int, list[tuple[int, bool]]]:
    """Largest size in [1, limit] for which ``probe`` is true (assumes fits are monotone). 0 if even 1 fails."""
    tried: list[tuple[int, bool]] = []

    def ok(n: int) -> bool:
        fits = probe(n)
        tried.append((n, fits))
        return fits

    size = max(1, min(start, limit))
    if not ok(size):
        lo, hi = 0, size
    else:
        lo = size
        hi = limit + 1
        while lo < limit:
            nxt = min(lo * 2, limit)
            if ok(nxt):
                lo = nxt
            else:
                hi = nxt
                break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, tried


def choose(global_batch_size: int, world_size: int, max_fit: int) -> tuple[int, int]:
    """(micro, accumulation) with micro ≤ max_fit and micro × accumulation × world == global batch.

    Picks the largest micro batch that divides the per-rank batch, so the global batch is exact.
    """
    per_rank = max(1, global_batch_size // max(1, world_size))
    micro = max(d for d in range(1, min(max_fit, per_rank) + 1) if per_rank % d == 0)
    return micro, per_rank // micro


def calibrate(probe: Probe, global_batch_size: int, world_size: int, limit: int | None = None) -> AutoBatch:
    per_rank = max(1, global_batch_size // max(1, world_size))
    max_fit, tried = search(probe, limit or per_rank)
    if max_fit == 0:
        raise RuntimeError("micro_batch_size: auto: even a micro batch of 1 on the longest rows runs out of "
                           "memory; lower sequence.max_length, turn on gradient_checkpointing, or use a "
                           "larger GPU / ZeRO offload")
    micro, accum = choose(global_batch_size, world_size, max_fit)
    return AutoBatch(micro, accum, micro * accum * max(1, world_size), max_fit, tried)


def cuda_probe(model: Any, rows: list[dict[str, Any]], collate: Callable[[list[dict[str, Any]]], dict[str, Any]]
               ) -> Probe:
    """A probe that runs forward+backward on the ``n`` longest rows; False on CUDA out-of-memory."""
    import torch

    longest = sorted(rows, key=lambda r: len(r["input_ids"]), reverse=True)
    device = next(model.parameters()).device

    def probe(n: int) -> bool:
        batch = collate([longest[i % len(longest)] for i in range(n)])
        batch = {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}
        batch.pop("ambiguity", None)
        try:
            out = model(**batch)
            out.loss.backward()
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    return probe
