"""micro_batch_size: auto — the search with an injected out-of-memory probe, and the batch arithmetic."""

from __future__ import annotations

import pytest
from loft.runtime.train.autobatch import calibrate, choose, search


@pytest.mark.parametrize("fits_up_to", [1, 2, 3, 5, 8, 13, 31, 32, 33, 64, 100])
def test_search_finds_largest_fit(fits_up_to):
    calls = []

    def probe(n: int) -> bool:
        calls.append(n)
        return n <= fits_up_to

    best, tried = search(probe, limit=64)
    assert best == min(fits_up_to, 64)
    assert [n for n, _ in tried] == calls
    assert len(calls) <= 2 * 7 + 1  # doubling then bisection: logarithmic in the limit


def test_search_reports_zero_when_nothing_fits():
    assert search(lambda n: False, limit=16)[0] == 0
    with pytest.raises(RuntimeError, match="even a micro batch of 1"):
        calibrate(lambda n: False, global_batch_size=32, world_size=1)


@pytest.mark.parametrize(("gbs", "world", "fit", "micro", "accum"), [
    (32, 1, 5, 4, 8), (32, 2, 64, 16, 1), (48, 2, 7, 6, 4), (8, 4, 3, 2, 1), (17, 1, 4, 1, 17),
])
def test_choose_keeps_the_global_batch(gbs, world, fit, micro, accum):
    assert choose(gbs, world, fit) == (micro, accum)
    assert micro * accum * world == gbs


def test_calibrate_records_search():
    result = calibrate(lambda n: n <= 6, global_batch_size=64, world_size=2)
    assert (result.micro_batch_size, result.gradient_accumulation_steps, result.max_fit) == (4, 8, 6)
    assert result.global_batch_size == 64
    assert (6, True) in result.tried and (7, False) in result.tried
    assert result.as_dict()["micro_batch_size"] == 4


def test_auto_on_cpu_falls_back_to_one(tmp_path):
    from loft.runtime.plan import Bundle
    from loft.runtime.train.trainer import _batch_shape

    plan = {"format": 1, "config": {"training": {"micro_batch_size": "auto"}, "output_dir": "out"},
            "derived": {"micro_batch_size": "auto", "gradient_accumulation_steps": "auto", "global_batch_size": 16,
                        "world_size": 1}}

    def never() -> None:
        raise AssertionError("no probe on CPU")

    micro, accum, record = _batch_shape(Bundle(tmp_path, plan), on_gpu=False, probe_factory=never)
    assert (micro, accum) == (1, 16)
    assert record is not None and record["calibrated"] is False
    # on a GPU the injected probe decides
    micro, accum, record = _batch_shape(Bundle(tmp_path, plan), on_gpu=True,
                                        probe_factory=lambda: (lambda n: n <= 3))
    assert (micro, accum) == (2, 8) and record is not None and record["max_fit"] == 3
