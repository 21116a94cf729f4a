"""Train modes and the plan → TrainingArguments mapping: full FT, LoRA variants, random init, QLoRA on CPU,
precision, optimizer/scheduler names, W&B wiring, metrics and batch records, aux losses inside the Trainer."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import losses, make_bundle, read_jsonl, runtime_env


def _bundle(tmp_path, model, over=None, **kw):
    from loft.runtime.plan import load

    return load(make_bundle(tmp_path, model, over, **kw))


def test_training_arguments_follow_the_plan(tiny_model_dir, tmp_path):
    from loft.runtime.train.trainer import training_arguments
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    b = _bundle(tmp_path, tiny_model_dir, {"training.optimizer": "adafactor", "training.lr_scheduler": "constant",
                                           "training.eval_steps": 5, "training.save_steps": None,
                                           "training.precision": "bf16", "training.weight_decay": 0.1},
                plan_extra={"launch.deepspeed_config": "ds_config.json", "config.training.warmup_steps": 3})
    (b.root / "ds_config.json").write_text(json.dumps({"zero_optimization": {"stage": 2},
                                                       "train_micro_batch_size_per_gpu": "auto"}))
    try:
        args = training_arguments(b, micro=2, accum=4, has_eval=True, on_gpu=False)
    finally:
        unset_hf_deepspeed_config()  # TrainingArguments(deepspeed=...) sets a process-wide config
    assert args.optim == "adafactor" and args.lr_scheduler_type == "constant"
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 4)
    assert args.warmup_steps == 3 and args.weight_decay == 0.1 and args.max_steps == 6
    assert args.eval_strategy == "steps" and args.eval_steps == 5 and args.save_strategy == "epoch"
    assert args.prediction_loss_only
    assert args.bf16 and args.use_cpu and args.dataloader_num_workers == 0 and args.report_to == []
    assert args.deepspeed == str(b.root / "ds_config.json")
    assert args.output_dir == str(b.out / "checkpoints")


def test_precision_on_cpu_is_said():
    from loft.runtime.train.trainer import precision_flags

    assert precision_flags("fp16", on_gpu=True) == ({"fp16": True}, None)
    flags, note = precision_flags("fp16", on_gpu=False)
    assert flags == {} and note is not None and "fp32" in note
    flags, note = precision_flags("bf16", on_gpu=False)
    assert flags == {"bf16": True} and note is not None and "bfloat16" in note
    assert precision_flags("fp32", on_gpu=False) == ({}, None)


def test_wandb_is_report_to_from_the_plan(monkeypatch):
    from loft.runtime.train.metrics import report_to

    assert report_to(None) == [] and report_to({"wandb": None}) == []
    try:
        import wandb  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install wandb"):
            report_to({"wandb": {"project": "p", "mode": "offline"}})
    else:  # pragma: no cover - wandb is not installed in this project's environment
        monkeypatch.delenv("WANDB_PROJECT", raising=False)
        assert report_to({"wandb": {"project": "p", "mode": "offline"}}) == ["wandb"]


def test_lora_config_variants():
    from loft.runtime.train.model import lora_config

    from tests.plan_contract import compiled_plan

    adapter = compiled_plan()["config"]["adapter"]  # every key the plan holds, as compiled
    c = lora_config({**adapter, "r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"],
                     "rslora": True, "dora": True})
    assert (c.r, c.lora_alpha, c.lora_dropout) == (8, 16, 0.1)
    assert set(c.target_modules) == {"q_proj", "v_proj"} and c.use_rslora and c.use_dora
    assert lora_config({**adapter, "target_modules": "all-linear"}).target_modules == "all-linear"
    assert lora_config({**adapter, "alpha": 24.5}).lora_alpha == 24.5  # a float alpha arrives as it is


def test_random_init_is_seeded(tiny_model_dir, tmp_path):
    import torch
    from loft.runtime.train.model import load_base_model

    b = _bundle(tmp_path, tiny_model_dir, {"model.init": "random", "training.seed": 3})
    m1, m2 = load_base_model(b), load_base_model(b)
    pre = load_base_model(_bundle(tmp_path / "p", tiny_model_dir))
    w = "model.layers.0.self_attn.q_proj.weight"
    s1, s2, sp = m1.state_dict(), m2.state_dict(), pre.state_dict()
    assert torch.equal(s1[w], s2[w]) and not torch.equal(s1[w], sp[w])


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_training_model_isolates_packed_samples(tiny_model_dir, tmp_path, init):
    """The model train() gets must not let packed samples attend to each other (default use_cache leaks)."""
    import torch
    from loft.runtime.train.model import load_base_model

    model = load_base_model(_bundle(tmp_path, tiny_model_dir, {"model.init": init}))
    model.train()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(3, 500, (1, 6), generator=g), torch.randint(3, 500, (1, 5), generator=g)
    packed_ids = torch.cat([a, b], 1)
    position_ids = torch.tensor([[*range(6), *range(5)]])
    with torch.no_grad():
        alone = model(input_ids=b).logits[0]
        packed = model(input_ids=packed_ids, position_ids=position_ids).logits[0, 6:]
    assert model.config.use_cache is False
    assert torch.allclose(packed, alone, atol=1e-5)


@pytest.mark.slow
def test_qlora_on_cpu_fails_before_loading(tmp_path, tiny_model_dir):
    run = make_bundle(tmp_path, tiny_model_dir, {"adapter.type": "qlora"})
    (run / "model").unlink()  # nothing to load: the error must come first anyway
    proc = subprocess.run([sys.executable, "-m", "loft.runtime", "train", str(run)], env=runtime_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "qlora" in proc.stderr and "CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_full_finetune_and_records(tiny_model_dir, tmp_path):
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    run_dir = make_bundle(tmp_path, tiny_model_dir, {"adapter.type": "none", "training.max_steps": 8,
                                                    "training.learning_rate": 3e-3, "training.save_steps": 4})
    assert run(load(run_dir)) == 0
    out = run_dir / "out"
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "tokenizer.json").is_file()
    assert not (out / "final" / "adapter_config.json").exists()
    recs = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in recs] == list(range(1, 9))
    for r in recs:
        assert {"step", "loss", "learning_rate", "grad_norm", "tokens", "epoch", "elapsed_s"} <= r.keys()
    assert all(b["tokens"] > a["tokens"] for a, b in itertools.pairwise(recs))
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert any(r.get("eval_loss") is not None for r in read_jsonl(out / "metrics.jsonl"))
    # batches.jsonl: 2 rows × 2 accumulation per step; ids are real sample ids, none repeated within an epoch
    batches = read_jsonl(out / "batches.jsonl")
    assert [b["step"] for b in batches] == list(range(1, 9))
    assert all(len(b["sample_ids"]) == 4 for b in batches)
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "prepared" / "train"))
    known = {tuple(x) for x in ds["sample_ids"]}
    seen = [tuple(ids) for b in batches for ids in b["sample_ids"]]
    assert set(seen) <= known and len(seen) == len(set(seen))
    report = json.loads((out / "train_report.json").read_text())
    assert report["status"] == "completed" and report["global_batch_size"] == 4
    assert report["first_loss"] == recs[0]["loss"] and report["last_loss"] == recs[-1]["loss"]


@pytest.mark.slow
def test_dora_rslora_targets_and_gradient_checkpointing(tiny_model_dir, tmp_path):
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    run_dir = make_bundle(tmp_path, tiny_model_dir, {
        "adapter.target_modules": ["q_proj", "v_proj"], "adapter.dora": True, "adapter.rslora": True,
        "training.gradient_checkpointing": True, "training.max_steps": 3, "sequence.packing": False})
    assert run(load(run_dir)) == 0
    cfg = json.loads((run_dir / "out" / "final" / "adapter_config.json").read_text())
    assert set(cfg["target_modules"]) == {"q_proj", "v_proj"} and cfg["use_dora"] and cfg["use_rslora"]
    assert len(losses(run_dir)) == 3


@pytest.mark.slow
def test_aux_losses_inside_the_trainer_match_direct(tiny_model_dir, tmp_path):
    """Step 1's logged loss (LoRA B = 0, so the base model's logits) equals the aux loss computed directly."""
    import torch
    from datasets import load_from_disk
    from loft.runtime.plan import load
    from loft.runtime.train.collate import flatten
    from loft.runtime.train.losses import causal_lm_loss
    from loft.runtime.train.trainer import run
    from transformers import AutoModelForCausalLM

    over = {"training.max_steps": 2, "training.aux_losses.training_temperature": 2.0,
            "training.aux_losses.adaptive_label_smoothing": {"enabled": True, "max_smoothing": 0.2}}
    run_dir = make_bundle(tmp_path, tiny_model_dir, over, ambiguity=True)
    assert run(load(run_dir)) == 0
    step1 = read_jsonl(run_dir / "out" / "batches.jsonl")[0]["sample_ids"]
    ds = load_from_disk(str(run_dir / "out" / "prepared" / "train"))
    by_ids = {tuple(r["sample_ids"]): r for r in ds}
    rows = [by_ids[tuple(ids)] for ids in step1]
    micro = [flatten(rows[i:i + 2], with_ambiguity=True) for i in range(0, len(rows), 2)]
    n = sum(int((b["labels"][..., 1:] != -100).sum()) for b in micro)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    total = 0.0
    with torch.no_grad():
        for b in micro:
            logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
            total += float(causal_lm_loss(logits, b["labels"], temperature=2.0, ambiguity=b["ambiguity"],
                                          max_smoothing=0.2, num_items_in_batch=n))
    plain = float(causal_lm_loss(logits, b["labels"]))
    logged = losses(run_dir)[0][1]
    assert logged == pytest.approx(total, rel=1e-5)
    assert logged != pytest.approx(plain, rel=1e-3)


@pytest.mark.slow
def test_adaptive_smoothing_needs_the_ambiguity_column(tiny_model_dir, tmp_path):
    run = make_bundle(tmp_path, tiny_model_dir, {"training.aux_losses.adaptive_label_smoothing.enabled": True})
    proc = subprocess.run([sys.executable, "-m", "loft.runtime", "train", str(run)], env=runtime_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and "ambiguity" in proc.stderr and "Traceback" not in proc.stderr


def test_axolotl_extension_keys(tiny_model_dir, tmp_path):
    """evals/saves_per_epoch become step counts from the prepared row count; adam betas reach the optimizer;
    model.special_tokens are set on the tokenizer and grow the embeddings when new."""
    from loft.runtime import schedule
    from loft.runtime.train.model import fit_embeddings, load_base_model, load_tokenizer
    from loft.runtime.train.trainer import training_arguments

    t = {"eval_steps": None, "save_steps": None, "evals_per_epoch": 4, "saves_per_epoch": 2, "max_steps": None,
         "epochs": 1, "warmup_steps": None, "warmup_ratio": 0.1}

    def every(training: dict, rows: int | None) -> tuple:
        steps = schedule.resolve(training, rows, 4)
        return steps["eval_steps"], steps["save_steps"]

    assert every(t, 100) == (6, 12)  # 25 steps per epoch
    assert every({**t, "eval_steps": 3}, 100) == (3, 12)
    assert every(t, None) == (None, None)
    assert schedule.resolve(t, 100, 4)["warmup_steps"] == 3  # ceil(25 × 0.1)
    b = _bundle(tmp_path, tiny_model_dir, {"training.adam_beta2": 0.95, "training.adam_epsilon": 1e-6,
                                           "training.save_steps": None, "training.saves_per_epoch": 5,
                                           "model.special_tokens": {"pad_token": "<|brand_new_pad|>"}})
    args = training_arguments(b, micro=2, accum=2, has_eval=False, on_gpu=False, train_rows=40)
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.9, 0.95, 1e-6)
    assert args.save_strategy == "steps" and args.save_steps == 2
    tok = load_tokenizer(b)
    assert tok.pad_token == "<|brand_new_pad|>"
    model = load_base_model(b)
    before = model.get_input_embeddings().weight.shape[0]
    assert fit_embeddings(model, tok) and model.get_input_embeddings().weight.shape[0] == before + 1
    assert not fit_embeddings(model, tok)


def test_8bit_optimizer_without_bitsandbytes_is_a_clear_error(tiny_model_dir, tmp_path):
    from loft.runtime.train.model import StageError
    from loft.runtime.train.trainer import training_arguments

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        b = _bundle(tmp_path, tiny_model_dir, {"training.optimizer": "paged_adamw_8bit"})
        with pytest.raises(StageError, match="bitsandbytes"):
            training_arguments(b, micro=1, accum=1, has_eval=False, on_gpu=False)
    else:  # pragma: no cover - bitsandbytes is not installed in this project's environment
        pytest.skip("bitsandbytes is installed")


def test_flash_attention_on_cpu_is_a_clear_error(tiny_model_dir, tmp_path):
    import torch
    from loft.runtime.train.model import StageError, check_attention

    if torch.cuda.is_available():  # pragma: no cover - this project's CI has no GPU
        pytest.skip("a GPU is visible")
    b = _bundle(tmp_path, tiny_model_dir, {"model.attn_implementation": "flash_attention_2"})
    with pytest.raises(StageError, match="needs a CUDA GPU"):
        check_attention(b)
    check_attention(_bundle(tmp_path / "s", tiny_model_dir))  # sdpa: nothing to check
