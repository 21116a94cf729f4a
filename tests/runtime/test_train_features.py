"""Runtime side of the keys real Axolotl configs use: config overrides (router aux loss), added vocabulary,
LoRA on fused MoE expert tensors and modules_to_save, partial full fine-tuning, the cosine floor, early stopping,
and dataset loading options (data_files, hub configuration name)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle, read_jsonl


def _bundle(tmp_path: Path, model: Path, over: dict[str, Any] | None = None, **kw: Any) -> Any:
    from loft.runtime.plan import load

    return load(make_bundle(tmp_path, model, over, **kw))


@pytest.fixture(scope="module")
def tiny_moe_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Mixtral (4 experts, fused 3-D expert tensors in transformers 5) with the tiny model's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, MixtralConfig

    out = tmp_path_factory.mktemp("tiny-moe") / "model"
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    cfg = MixtralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                        num_experts_per_tok=2, max_position_embeddings=512, tie_word_embeddings=False,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


# --- model.config_overrides -------------------------------------------------------------------------------

def test_config_overrides_reach_the_loaded_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.train.model import load_base_model

    b = _bundle(tmp_path, tiny_model_dir, {"model.config_overrides": {"rms_norm_eps": 0.125}})
    model = load_base_model(b)
    assert model.config.rms_norm_eps == 0.125
    assert model.model.norm.variance_epsilon == 0.125  # the layers were built from the overridden config
    b = _bundle(tmp_path / "r", tiny_model_dir, {"model.config_overrides": {"rms_norm_eps": 0.125},
                                                 "model.init": "random"})
    assert load_base_model(b).model.norm.variance_epsilon == 0.125


def test_output_router_logits_adds_the_router_aux_loss(tiny_moe_dir: Path, tmp_path: Path) -> None:
    """Axolotl's `model_config: {output_router_logits: true}` (Mixtral examples): the loss gains the router's
    load-balancing term."""
    import torch
    from loft.runtime.train.model import load_base_model

    x = torch.arange(3, 35).unsqueeze(0)
    plain = load_base_model(_bundle(tmp_path / "a", tiny_moe_dir)).eval()
    aux = load_base_model(_bundle(tmp_path / "b", tiny_moe_dir,
                                  {"model.config_overrides": {"output_router_logits": True,
                                                              "router_aux_loss_coef": 0.5}})).eval()
    with torch.no_grad():
        p, a = plain(input_ids=x, labels=x), aux(input_ids=x, labels=x)
    assert p.aux_loss is None and a.aux_loss is not None
    assert float(a.loss) == pytest.approx(float(p.loss) + 0.5 * float(a.aux_loss), rel=1e-5)


# --- LoRA on expert tensors, modules_to_save ----------------------------------------------------------------

def test_lora_on_fused_expert_tensors_matches_the_estimate(tiny_moe_dir: Path, tmp_path: Path) -> None:
    from loft.compiler.estimate.params import arch_from_facts, count_expert_lora_params
    from loft.runtime.train.model import apply_adapter, load_base_model

    targets = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    b = _bundle(tmp_path, tiny_moe_dir, {"adapter.target_modules": [], "adapter.target_parameters": targets,
                                         "adapter.dropout": 0.0})  # PEFT's ParamWrapper has no dropout
    model = apply_adapter(load_base_model(b), b)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("experts" in n and "lora_" in n for n in trainable)
    facts = json.loads((tiny_moe_dir / "config.json").read_text())
    arch = arch_from_facts({**facts, "num_experts": facts["num_local_experts"]})
    assert arch is not None
    assert sum(trainable.values()) == count_expert_lora_params(arch, 4, targets)  # r = 4 in the test plan
    import torch

    x = torch.arange(3, 35).unsqueeze(0)
    model(input_ids=x, labels=x).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_modules_to_save_train_in_full_next_to_the_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.train.model import apply_adapter, load_base_model

    b = _bundle(tmp_path, tiny_model_dir, {"adapter.target_modules": ["q_proj"],
                                           "adapter.modules_to_save": ["embed_tokens"]})
    model = apply_adapter(load_base_model(b), b)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("embed_tokens.modules_to_save" in n for n in names)
    assert any("q_proj.lora_A" in n for n in names)
    assert not any("v_proj" in n for n in names)
    # the tiny model ties lm_head to embed_tokens: the trained copy stays tied
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


# --- training.unfrozen_parameters ----------------------------------------------------------------------------

def test_unfrozen_parameters_freeze_the_rest_and_match_the_estimate(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.compiler.estimate.params import arch_from_facts, count_unfrozen_params
    from loft.runtime.train.model import StageError, apply_adapter, load_base_model

    patterns = [r"model\.layers\.1\.mlp", r"^model\.norm"]
    b = _bundle(tmp_path, tiny_model_dir, {"adapter.type": "none", "training.unfrozen_parameters": patterns})
    model = apply_adapter(load_base_model(b), b)
    on = {n for n, p in model.named_parameters() if p.requires_grad}
    assert on == {"model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
                  "model.layers.1.mlp.down_proj.weight", "model.norm.weight"}
    arch = arch_from_facts(json.loads((tiny_model_dir / "config.json").read_text()))
    assert arch is not None
    assert count_unfrozen_params(arch, patterns) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    b = _bundle(tmp_path / "x", tiny_model_dir, {"adapter.type": "none",
                                                 "training.unfrozen_parameters": ["no_such_param"]})
    with pytest.raises(StageError, match="match no parameter"):
        apply_adapter(load_base_model(b), b)


@pytest.mark.slow
def test_partial_finetune_changes_only_the_unfrozen_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run
    from safetensors.torch import load_file

    run_dir = make_bundle(tmp_path, tiny_model_dir, {"adapter.type": "none", "training.max_steps": 2,
                                                    "training.learning_rate": 1e-2,
                                                    "training.unfrozen_parameters": [r"layers\.0\.self_attn"]})
    assert run(load(run_dir)) == 0
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(run_dir / "out" / "final" / "model.safetensors"))
    changed = {k for k in before if k in after and not before[k].equal(after[k].to(before[k].dtype))}
    assert changed == {f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"}


# --- scheduler floor, early stopping --------------------------------------------------------------------------

def test_min_lr_ratio_is_the_cosine_floor(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.train.trainer import training_arguments

    b = _bundle(tmp_path, tiny_model_dir, {"training.lr_scheduler": "cosine_with_min_lr",
                                           "training.min_lr_ratio": 0.25})
    args = training_arguments(b, micro=2, accum=2, has_eval=False, on_gpu=False)
    assert args.lr_scheduler_type == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.25}
    # the 0.1 default is locked by the compiler (tests/compiler/test_resolve.py); the runtime reads the plan
    b = _bundle(tmp_path / "d", tiny_model_dir, {"training.lr_scheduler": "cosine_with_min_lr",
                                                 "training.min_lr_ratio": 0.1})
    assert training_arguments(b, 2, 2, False, False).lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    b = _bundle(tmp_path / "c", tiny_model_dir, {"training.lr_scheduler": "cosine", "training.min_lr_ratio": 0.5})
    assert training_arguments(b, 2, 2, False, False).lr_scheduler_kwargs == {}


def test_early_stopping_arguments(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.train.trainer import training_arguments

    b = _bundle(tmp_path, tiny_model_dir, {"training.early_stopping_patience": 2, "training.eval_steps": 1})
    args = training_arguments(b, 2, 2, has_eval=True, on_gpu=False)
    assert args.metric_for_best_model == "eval_loss" and args.greater_is_better is False
    assert args.load_best_model_at_end is False  # the last model is kept, as Axolotl does by default


def test_early_stopping_stops_when_eval_loss_stops_improving(tiny_model_dir: Path, tmp_path: Path) -> None:
    """learning_rate 1e-30 (updates below the weights' precision): the eval loss never improves after the first evaluation, so patience 1 stops at step 2."""
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    run_dir = make_bundle(tmp_path, tiny_model_dir, {"training.learning_rate": 1e-30, "training.eval_steps": 1,
                                                    "training.early_stopping_patience": 1,
                                                    "training.max_steps": 6}, n_train=48, n_eval=4)
    assert run(load(run_dir)) == 0
    report = json.loads((run_dir / "out" / "train_report.json").read_text())
    assert report["global_step"] == 2 and report["status"] == "completed" and report["early_stopped"]
    assert report["best_eval_loss"] is not None
    assert (run_dir / "out" / "final").is_dir()
    assert [r["step"] for r in read_jsonl(run_dir / "out" / "metrics.jsonl") if "eval_loss" in r] == [1, 2]


# --- model.added_tokens: prepare and train share one vocabulary ---------------------------------------------

def test_added_tokens_are_one_vocabulary_for_prepare_and_train(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loft.runtime.prepare.stage import load_tokenizer as prepare_tokenizer
    from loft.runtime.train.model import fit_embeddings, load_base_model
    from loft.runtime.train.model import load_tokenizer as train_tokenizer

    b = _bundle(tmp_path, tiny_model_dir, {"model.added_tokens": ["<tool_call>", "</tool_call>"],
                                           "model.special_tokens": {"pad_token": "<|my_pad|>"}})
    ptok, ttok = prepare_tokenizer(b), train_tokenizer(b)
    assert len(ptok) == len(ttok)
    text = "call <tool_call>get_time()</tool_call> now"
    ids = ptok.encode(text, add_special_tokens=False)
    assert ids == ttok.encode(text, add_special_tokens=False)
    new = ttok.convert_tokens_to_ids(["<tool_call>", "</tool_call>"])
    assert all(i in ids for i in new) and ptok.pad_token == ttok.pad_token == "<|my_pad|>"
    model = load_base_model(b)
    size = model.get_input_embeddings().weight.shape[0]
    assert fit_embeddings(model, ttok) and model.get_input_embeddings().weight.shape[0] == size + 3
    assert max(new) < len(ttok)


# --- dataset loading options ------------------------------------------------------------------------------

def test_data_files_of_a_local_directory(tmp_path: Path) -> None:
    from loft.runtime.prepare.errors import PrepareError
    from loft.runtime.prepare.load import load_options, load_raw, row_dicts

    d = tmp_path / "shards"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "a1"}\n{"text": "a2"}\n', encoding="utf-8")
    (d / "b.jsonl").write_text('{"text": "b1"}\n', encoding="utf-8")
    (tmp_path / "outside.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    assert len(load_raw(str(d), d)) == 3
    only_b = load_raw(str(d), d, **load_options({"data_files": "b.jsonl"}))
    assert [r["text"] for r in row_dicts(only_b[:])] == ["b1"]
    both = load_raw(str(d), d, data_files=["b.jsonl", "a.jsonl"])
    assert [r["text"] for r in row_dicts(both[:])] == ["b1", "a1", "a2"]
    with pytest.raises(PrepareError, match="outside"):
        load_raw(str(d), d, data_files=["../outside.jsonl"])
    with pytest.raises(PrepareError, match="does not exist"):
        load_raw(str(d), d, data_files="c.jsonl")


def test_hub_loading_passes_the_configuration_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from loft.runtime.prepare.load import load_options, load_raw

    seen: dict[str, Any] = {}

    def fake(path: str, name: Any = None, **kw: Any) -> Any:
        seen.update(path=path, name=name, **kw)
        return datasets.Dataset.from_dict({"text": ["t"]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    ds = load_raw("allenai/c4", None, "train", "abc123",
                  **load_options({"config_name": "en", "data_files": ["en/c4-train.00000-of-01024.json.gz"]}))
    assert seen == {"path": "allenai/c4", "name": "en", "data_files": ["en/c4-train.00000-of-01024.json.gz"],
                    "split": "train", "revision": "abc123"}
    assert len(ds) == 1 and "_line" in ds.column_names


def test_prepare_reads_only_the_data_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    """End to end through the prepare stage: a directory dataset with data_files uses those rows only."""
    from bundle_factory import chat_rows, write_jsonl
    from bundle_factory import make_bundle as make_prepare_bundle
    from loft.runtime.plan import load
    from loft.runtime.prepare.stage import run as prepare

    root = tmp_path / "run"
    write_jsonl(root / "data" / "shards" / "a.jsonl", chat_rows(6))
    write_jsonl(root / "data" / "shards" / "b.jsonl", chat_rows(3, start=10))
    make_prepare_bundle(root, tiny_model_dir, [{"name": "shards", "path": "data/shards",
                                                "data_files": ["b.jsonl"]}], sequence={"max_length": 256})
    report = prepare(load(root), log=lambda *a, **k: None)
    assert report["datasets"]["shards"]["rows_raw"] == 3
    shutil.rmtree(root)


@pytest.mark.slow
def test_expert_lora_with_modules_to_save_trains_evals_and_merges(tiny_moe_dir: Path, tmp_path: Path) -> None:
    """The whole chain on the tiny MoE: train LoRA on the fused expert tensors plus a full lm_head, eval,
    then merge; the merged model computes what base + adapter computes, and the router loss override
    survives into merged/config.json."""
    import torch
    from loft.runtime.__main__ import main
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir = make_bundle(tmp_path, tiny_moe_dir, {
        "adapter.target_modules": ["q_proj"], "adapter.target_parameters": ["mlp.experts.down_proj"],
        "adapter.modules_to_save": ["lm_head"], "adapter.dropout": 0.0, "training.max_steps": 3,
        "training.learning_rate": 2e-2, "model.config_overrides": {"output_router_logits": True}})
    assert run(load(run_dir)) == 0
    final = run_dir / "out" / "final"
    adapter_cfg = json.loads((final / "adapter_config.json").read_text())
    assert adapter_cfg["target_parameters"] == ["mlp.experts.down_proj"]
    assert adapter_cfg["modules_to_save"] == ["lm_head"]
    assert main(["eval", str(run_dir)]) == 0
    assert main(["merge", str(run_dir)]) == 0
    merged_dir = run_dir / "out" / "merged"
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir)).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_moe_dir)), str(final)).eval()
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_moe_dir)).eval()
    ids = torch.arange(3, 30).unsqueeze(0)
    with torch.no_grad():
        a, b, c = merged(input_ids=ids).logits, adapted(input_ids=ids).logits, plain(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)
    assert json.loads((merged_dir / "config.json").read_text())["output_router_logits"] is True
