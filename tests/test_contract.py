"""The contract test: every example and every ../shared Axolotl corpus config that builds is compiled, its
plan loaded by the runtime's loader (schema-checked), and the runtime's settings objects are built from it
without loading weights — TrainingArguments, LoraConfig, model load kwargs, collator settings, the
DeepSpeed json — asserting each plan value arrives unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from loft.compiler import pipeline
from loft.compiler.errors import ConfigError
from loft.compiler.render import canonical_json, ds_config
from loft.runtime import schedule
from loft.runtime.contract import plan_errors
from loft.runtime.kernels import liger_settings
from loft.runtime.plan import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


class Recorded(dict):  # type: ignore[type-arg]
    """Stands in for TrainingArguments: the keyword arguments the runtime passes, as given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(kwargs)


def _plans(shared: Path | None, tmp: Path, tiny_model: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    project = tmp / "examples"
    shutil.copytree(ROOT / "examples", project, ignore=shutil.ignore_patterns("models", "__pycache__", "*.py"))
    shutil.copytree(tiny_model, project / "models" / "tiny-llama")
    for cfg in sorted(project.glob("*.yaml")):
        out.append((cfg.name, pipeline.plan(cfg, out_dir=tmp / "run", estimate=False).plan))
    if shared is not None:
        for cfg in sorted([*(shared / "corpus/axolotl/examples").glob("*.yml"),
                           *(shared / "corpus/axolotl/examples").glob("*.yaml")]):
            try:
                out.append((cfg.name, pipeline.plan(cfg, out_dir=tmp / "run", estimate=False).plan))
            except ConfigError:
                continue  # refused at build, with the reason (tests/axolotl/test_corpus.py): nothing locked
    return out


def _check(name: str, plan: dict[str, Any], root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers
    from loft.runtime.train.collate import LoftCollator
    from loft.runtime.train.model import load_kwargs, lora_config, torch_dtype
    from loft.runtime.train.trainer import training_arguments

    plan = json.loads(canonical_json(plan))  # as plan.lock holds it
    assert plan_errors(plan) == [], name
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.lock").write_text(canonical_json(plan), encoding="utf-8")
    bundle = load(root)  # the runtime's loader: schema-checked
    cfg, t, d = bundle.config, bundle.config["training"], bundle.derived

    # TrainingArguments: the kwargs as the runtime passes them
    monkeypatch.setattr(transformers, "TrainingArguments", Recorded)
    micro = d["micro_batch_size"] if isinstance(d["micro_batch_size"], int) else 1
    accum = d["gradient_accumulation_steps"] if isinstance(d["gradient_accumulation_steps"], int) else 1
    rows = 1000
    steps = schedule.resolve(t, rows, micro * accum)
    monkeypatch.setenv("WORLD_SIZE", "1")
    import types

    for optional in ("bitsandbytes", "wandb"):  # installed on the GPU box (requirements.lock), not needed here
        monkeypatch.setitem(__import__("sys").modules, optional, types.ModuleType(optional))
    args = training_arguments(bundle, micro, accum, has_eval=True, on_gpu=True, steps=steps)
    assert args["learning_rate"] == t["learning_rate"], name
    assert args["lr_scheduler_type"] == t["lr_scheduler"], name
    assert args["optim"] == t["optimizer"], name
    assert args["weight_decay"] == t["weight_decay"] and args["max_grad_norm"] == t["max_grad_norm"], name
    assert args["seed"] == args["data_seed"] == t["seed"], name
    assert args["logging_steps"] == t["logging_steps"], name
    assert args["dataloader_num_workers"] == t["dataloader_num_workers"], name
    assert args["per_device_train_batch_size"] == micro and args["gradient_accumulation_steps"] == accum, name
    assert args["warmup_steps"] == steps["warmup_steps"], name
    assert args["max_steps"] == (steps["total_steps"] or -1), name
    assert args["num_train_epochs"] == t["epochs"], name
    assert args.get("save_steps") == (steps["save_steps"] or None), name
    assert args["eval_steps"] == (steps["eval_steps"] or None), name
    assert args["activation_checkpointing"] == t["gradient_checkpointing"], name
    assert (args["use_liger_kernel"], args["liger_kernel_config"]) == liger_settings(t["kernels"]), name
    assert args.get("bf16", False) == (t["precision"] == "bf16"), name
    assert args.get("fp16", False) == (t["precision"] == "fp16"), name
    if t["lr_scheduler"] == "cosine_with_min_lr":
        assert args["lr_scheduler_kwargs"] == {"min_lr_rate": t["min_lr_ratio"]}, name
    for key in ("adam_beta1", "adam_beta2", "adam_epsilon"):
        assert args.get(key) == t[key], name
    ds = bundle.plan["launch"]["deepspeed_config"]
    assert (args["deepspeed"] is None) == (ds is None), name

    # LoraConfig
    a = cfg["adapter"]
    if a["type"] in ("lora", "qlora"):
        lc = lora_config(a)
        assert (lc.r, lc.lora_alpha, lc.lora_dropout) == (a["r"], a["alpha"], a["dropout"]), name
        want = a["target_modules"]
        assert (lc.target_modules == want) if isinstance(want, str) else (set(lc.target_modules) == set(want)), name
        assert (lc.use_rslora, lc.use_dora) == (a["rslora"], a["dora"]), name

    # model load kwargs, collator, DeepSpeed json
    kw = load_kwargs(bundle)
    m = cfg["model"]
    assert kw["dtype"] == torch_dtype(m["dtype"]) and kw["trust_remote_code"] == m["trust_remote_code"], name
    assert kw.get("attn_implementation", "auto") == m["attn_implementation"], name
    als = t["aux_losses"]["adaptive_label_smoothing"]
    coll = LoftCollator(pad_token_id=0, packing=cfg["sequence"]["packing"], with_ambiguity=als["enabled"])
    assert coll.packing == cfg["sequence"]["packing"], name
    if ds is not None:
        js = ds_config(plan)
        assert js["zero_optimization"]["stage"] == cfg["deepspeed"]["stage"], name


def test_every_compiled_plan_reaches_the_runtime_unchanged(tmp_path: Path, tiny_model_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import SHARED

    plans = _plans(SHARED if SHARED.is_dir() else None, tmp_path, tiny_model_dir)
    assert len(plans) >= len(EXAMPLES)
    for i, (name, plan) in enumerate(plans):
        _check(name, plan, tmp_path / f"b{i}", monkeypatch)
