"""A checkpoint that has its completion marker but a damaged file (a truncated safetensors, a corrupt
optimizer.pt) is skipped with a message, and train resumes from the newest one that loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.runtime.train import checkpoint

from tests.runtime.train_bundle import losses, make_bundle


def test_damage_finds_a_truncated_safetensors_and_a_corrupt_zip(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    good = tmp_path / "checkpoint-1"
    good.mkdir()
    save_file({"w": torch.zeros(64)}, str(good / "adapter_model.safetensors"))
    torch.save({"x": torch.ones(64)}, good / "optimizer.pt")
    assert checkpoint.damage(good) is None
    data = (good / "adapter_model.safetensors").read_bytes()
    (good / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    assert "adapter_model.safetensors" in (checkpoint.damage(good) or "")
    save_file({"w": torch.zeros(64)}, str(good / "adapter_model.safetensors"))
    raw = bytearray((good / "optimizer.pt").read_bytes())
    i = raw.find(b"\x00\x00\x80\x3f")  # inside the stored tensor data (1.0 as float32)
    raw[i:i + 4] = b"\x01\x02\x03\x04"
    (good / "optimizer.pt").write_bytes(bytes(raw))
    assert "optimizer.pt" in (checkpoint.damage(good) or "")


@pytest.mark.slow
def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tiny_model_dir: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    over = {"training.max_steps": 6, "training.save_steps": 3}
    clean = make_bundle(tmp_path / "clean", tiny_model_dir, over)
    assert run(load(clean)) == 0
    run_dir = make_bundle(tmp_path / "crash", tiny_model_dir, over)
    assert run(load(run_dir)) == 0
    ck = run_dir / "out" / "checkpoints"
    import shutil

    shutil.rmtree(run_dir / "out" / "final")
    weights = next((ck / "checkpoint-6").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # the disk filled up; the marker was already there
    assert checkpoint.is_complete(ck / "checkpoint-6")
    capsys.readouterr()
    assert run(load(run_dir)) == 0
    err = capsys.readouterr()
    assert "checkpoint-6 is damaged" in err.out + err.err and weights.name in err.out + err.err
    report = json.loads((run_dir / "out" / "train_report.json").read_text())
    assert report["resumed_from"].endswith("checkpoint-3") and report["status"] == "completed"
    got, want = losses(run_dir), losses(clean)
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert all(abs(a - b) <= 1e-6 for (_, a), (_, b) in zip(got, want, strict=True))
