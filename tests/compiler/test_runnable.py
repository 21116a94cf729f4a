"""Nothing is locked that cannot run: GPU-only options are refused at build for `target.gpu: cpu` (with the
key and the reason), accepted for a GPU target (their package pinned), and cut_cross_entropy is applied by
Apple's cut-cross-entropy package (or covered by Liger's fused linear cross entropy when liger is on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler import pipeline
from loft.compiler.errors import ConfigError
from loft.runtime.kernels import apply_cut_cross_entropy, liger_settings

from tests.compiler.project_factory import BASE_CONFIG, make_project

GPU_ONLY = [
    ("training:\n  precision: fp32\n  optimizer: adamw_torch\n  kernels: {cut_cross_entropy: true}\n",
     "training.kernels.cut_cross_entropy"),
    ("training:\n  precision: fp32\n  optimizer: adamw_torch\n  kernels: {liger: true}\n", "training.kernels.liger"),
    ("training:\n  precision: fp32\n  optimizer: adamw_8bit\n", "training.optimizer"),
    ("training:\n  precision: fp16\n  optimizer: adamw_torch\n", "training.precision"),
    ("training:\n  precision: fp32\n  optimizer: adamw_torch\nadapter: {type: qlora}\n", "adapter.type"),
    ("training:\n  precision: fp32\n  optimizer: adamw_torch\nmodel:\n  base: ./models/tiny\n"
     "  attn_implementation: flash_attention_2\n", "model.attn_implementation"),
]


def _config(training_and_more: str, gpu: str) -> str:
    base = BASE_CONFIG.replace("training:\n  precision: fp32\n  optimizer: adamw_torch\n", "")
    if "model:\n" in training_and_more:
        base = base.replace("model:\n  base: ./models/tiny\n", "")
    return base.replace("gpu: cpu", f"gpu: {gpu}") + training_and_more


@pytest.mark.parametrize(("extra", "key"), GPU_ONLY)
def test_gpu_only_options_are_refused_for_a_cpu_target(tmp_path: Path, extra: str, key: str) -> None:
    cfg = make_project(tmp_path, _config(extra, "cpu"))
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg, out_dir=tmp_path / "run", estimate=False)
    found = [d for d in e.value.diagnostics if d.code == "needs-gpu"]
    assert [d.key for d in found] == [key] and "CUDA GPU" in found[0].message and found[0].line > 0


@pytest.mark.parametrize(("extra", "key"), GPU_ONLY)
def test_they_build_for_a_gpu_target(tmp_path: Path, extra: str, key: str) -> None:
    cfg = make_project(tmp_path, _config(extra, "H100"))
    plan = pipeline.plan(cfg, out_dir=tmp_path / "run", estimate=False).plan
    if key == "training.kernels.liger":
        assert plan["versions"]["liger-kernel"]
    if key == "training.kernels.cut_cross_entropy":
        assert plan["versions"]["cut-cross-entropy"]


def test_cut_cross_entropy_is_applied_by_its_package_unless_liger_covers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("cut_cross_entropy.transformers")
    fake.cce_patch = lambda model: ("patched", model)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cut_cross_entropy", types.ModuleType("cut_cross_entropy"))
    monkeypatch.setitem(sys.modules, "cut_cross_entropy.transformers", fake)
    assert apply_cut_cross_entropy("m", {"liger": False, "cut_cross_entropy": True}) == ("patched", "m")
    assert apply_cut_cross_entropy("m", {"liger": True, "cut_cross_entropy": True}) == "m"  # Liger's FLCE
    assert apply_cut_cross_entropy("m", {"liger": False, "cut_cross_entropy": False}) == "m"
    assert liger_settings({"liger": True, "cut_cross_entropy": False}) == (True, None)


def test_cut_cross_entropy_with_aux_losses_is_refused(tmp_path: Path) -> None:
    extra = ("training:\n  precision: fp32\n  optimizer: adamw_torch\n  kernels: {cut_cross_entropy: true}\n"
             "  aux_losses: {training_temperature: 2.0}\n")
    cfg = make_project(tmp_path, _config(extra, "H100"))
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg, out_dir=tmp_path / "run", estimate=False)
    assert [d.key for d in e.value.diagnostics] == ["training.kernels.cut_cross_entropy"]
