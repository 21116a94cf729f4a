"""GpuSampler with stand-ins for torch.cuda and NVML (no GPU here): the record fields, the peaks kept for the
report, the context estimate, and that the allocator's peak stats are never reset (callers read them after)."""

from __future__ import annotations

from types import SimpleNamespace

from loft.runtime.train.gpustats import GIB, GpuSampler


class FakeCuda:
    def __init__(self):
        self.peaks = [(2 * GIB, 3 * GIB), (5 * GIB, 6 * GIB), (5 * GIB, 6 * GIB)]
        self.resets = 0

    def max_memory_allocated(self):
        return self.peaks[0][0]

    def max_memory_reserved(self):
        return self.peaks[0][1]

    def memory_allocated(self):
        return GIB

    def memory_reserved(self):
        return self.peaks[0][1]

    def current_device(self):
        return 0

    def reset_peak_memory_stats(self):
        self.resets += 1


class FakeNvml:
    def __init__(self):
        self.used = [int(3.5 * GIB), int(6.75 * GIB)]

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=self.used.pop(0) if len(self.used) > 1 else self.used[0], total=80 * GIB)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=97)


def test_sampler_records_and_peaks():
    s = GpuSampler()
    cuda = FakeCuda()
    s.torch, s.nvml, s.handles = SimpleNamespace(cuda=cuda), FakeNvml(), ["gpu0"]
    first = s.sample()
    assert first["mem_peak_allocated_gib"] == 2.0 and first["mem_peak_reserved_gib"] == 3.0
    assert first["gpus"] == [{"index": 0, "util_pct": 97, "mem_used_gib": 3.5, "mem_total_gib": 80.0}]
    cuda.peaks.pop(0)
    second = s.sample()
    assert second["mem_peak_reserved_gib"] == 6.0 and second["gpus"][0]["mem_used_gib"] == 6.75
    assert cuda.resets == 0
    peaks = s.peaks()
    assert peaks == {"source": ["torch", "nvml"], "peak_allocated_gib": 5.0, "peak_reserved_gib": 6.0,
                     "context_gib": 0.5, "nvml_peak_used_gib": {"0": 6.75}}


def test_cpu_sampler_writes_nothing():
    s = GpuSampler()
    s.torch, s.handles = None, []
    assert s.sample() == {} and s.peaks() == {"source": []} and not s.active
