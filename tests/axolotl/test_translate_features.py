"""Axolotl features that real configs lean on, translated to loft keys (and the honest refusals around them)."""

from __future__ import annotations

import re

import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.validate import validate

from tests.axolotl.helpers import BASE, errors_of, keys, tr

LORA = "adapter: lora\nlora_r: 8\nlora_alpha: 16\n"


def valid(cfg: dict) -> dict:
    return validate(cfg, doc=None, file="axo.yml")


def test_model_config_becomes_config_overrides() -> None:
    cfg, _ = tr("model_config:\n  output_router_logits: true\n  router_aux_loss_coef: 0.02\n")
    assert cfg["model"]["config_overrides"] == {"output_router_logits": True, "router_aux_loss_coef": 0.02}
    valid(cfg)
    cfg, _ = tr("overrides_of_model_config:\n  rope_theta: 500000\n")
    assert cfg["model"]["config_overrides"] == {"rope_theta": 500000}
    assert keys(errors_of("model_config: [output_router_logits]\n")) == ["model_config"]


def test_tokens_list_becomes_added_tokens_and_a_mapping_is_a_mistake() -> None:
    cfg, _ = tr("tokens: ['<tool_call>', '</tool_call>', '<tool_call>']\n")
    assert cfg["model"]["added_tokens"] == ["<tool_call>", "</tool_call>"]  # duplicates dropped, order kept
    valid(cfg)
    cfg, _ = tr("tokens:\n")
    assert "added_tokens" not in cfg["model"]
    diags = errors_of("tokens:\n  pad_token: '<|padding|>'\n")
    assert keys(diags) == ["tokens"] and diags[0].code == "type" and "special_tokens" in diags[0].hint


def test_dataset_name_and_data_files_go_to_load_dataset() -> None:
    cfg, _ = tr("datasets:\n  - path: org/repo\n    name: en\n    data_files: [a.jsonl, b.jsonl]\n"
                "    type: completion\n")
    ds = cfg["data"]["datasets"][0]
    assert (ds["config_name"], ds["data_files"], ds["format"]) == ("en", ["a.jsonl", "b.jsonl"], "completion")
    valid(cfg)
    cfg, _ = tr("datasets:\n  - path: org/repo\n    data_files: train.json\n    type: alpaca\n")
    assert cfg["data"]["datasets"][0]["data_files"] == "train.json"
    assert keys(errors_of("datasets:\n  - path: org/repo\n    data_files: {train: a.json}\n    type: alpaca\n")) \
        == ["datasets[0].data_files"]


def test_pretraining_dataset_with_a_hub_configuration() -> None:
    base = BASE.replace("datasets:\n  - path: mlabonne/FineTome-100k\n    type: chat_template\n", "max_steps: 10\n")
    cfg, warns = tr("pretraining_dataset:\n  - path: allenai/c4\n    name: en\n    type: pretrain\n", base=base)
    ds = cfg["data"]["datasets"][0]
    assert (ds["path"], ds["config_name"], ds["format"]) == ("allenai/c4", "en", "completion")
    assert cfg["sequence"]["strategy"] == "split"
    assert any("streams" in w.message for w in warns)  # the difference is said
    valid(cfg)


def test_early_stopping_patience() -> None:
    cfg, _ = tr("early_stopping_patience: 3\nval_set_size: 0.05\n")
    assert cfg["training"]["early_stopping_patience"] == 3
    valid(cfg)
    with pytest.raises(ConfigError) as e:  # no eval split: nothing to watch
        valid(tr("early_stopping_patience: 3\n")[0])
    assert [d.key for d in e.value.diagnostics] == ["training.early_stopping_patience"]
    assert keys(errors_of("early_stopping_patience: 1.5\nval_set_size: 0.05\n")) == ["early_stopping_patience"]


def test_unfrozen_parameters_escape_periods_like_axolotl() -> None:
    cfg, _ = tr("unfrozen_parameters:\n  - ^lm_head.weight$\n  - model.layers.2[0-9]+.mlp\n")
    pats = cfg["training"]["unfrozen_parameters"]
    assert pats == [r"^lm_head\.weight$", r"model\.layers\.2[0-9]+\.mlp"]
    assert re.search(pats[1], "model.layers.21.mlp.down_proj.weight")
    assert not re.search(pats[0], "lm_headXweight")  # a period is a period, as in Axolotl
    valid(cfg)


def test_unfrozen_parameters_refusals() -> None:
    diags = errors_of(LORA + "lora_target_linear: true\nunfrozen_parameters: ['^lm_head.*']\n")
    assert keys(diags) == ["unfrozen_parameters"] and "full fine-tune" in diags[0].message
    diags = errors_of("unfrozen_parameters: ['^model.embed_tokens.weight$[:32000]']\n")
    assert keys(diags) == ["unfrozen_parameters[0]"] and "range" in diags[0].message
    cfg, _ = tr("unfrozen_parameters:\n#  - ^lm_head\n")  # all commented out (the Mixtral example)
    assert "unfrozen_parameters" not in cfg["training"]


def test_lora_target_parameters_and_modules_to_save() -> None:
    cfg, _ = tr(LORA + "lora_target_parameters: [mlp.experts.gate_up_proj, mlp.experts.down_proj]\n")
    a = cfg["adapter"]
    assert a["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    assert a["target_modules"] == []  # only the expert tensors, as in Axolotl
    valid(cfg)
    cfg, _ = tr(LORA + "lora_target_linear: true\nlora_target_parameters: [experts.down_proj]\n"
                "lora_modules_to_save: [embed_tokens, lm_head]\n")
    assert cfg["adapter"]["target_modules"] == "all-linear"
    assert cfg["adapter"]["modules_to_save"] == ["embed_tokens", "lm_head"]
    valid(cfg)
    cfg, warns = tr("lora_modules_to_save: [lm_head]\n")  # no adapter: a full fine-tune already trains it
    assert cfg["adapter"]["type"] == "none" and "modules_to_save" not in cfg["adapter"]
    assert any("lora_modules_to_save" in w.message for w in warns)


def test_cosine_min_lr_ratio_is_cosine_with_min_lr() -> None:
    cfg, _ = tr("cosine_min_lr_ratio: 0.1\n")
    assert cfg["training"]["lr_scheduler"] == "cosine_with_min_lr" and cfg["training"]["min_lr_ratio"] == 0.1
    valid(cfg)
    cfg, warns = tr("lr_scheduler: linear\ncosine_min_lr_ratio: 0.1\n")  # Axolotl applies it to cosine only
    assert cfg["training"]["lr_scheduler"] == "linear" and "min_lr_ratio" not in cfg["training"]
    assert [w.key for w in warns] == ["cosine_min_lr_ratio"]
    assert keys(errors_of("cosine_min_lr_ratio: 2\n")) == ["cosine_min_lr_ratio"]


def test_eta_min_stays_a_mistake_with_the_ratio_in_the_hint() -> None:
    diags = errors_of("eta_min: 2e-6\n")  # learning_rate 2e-5 in BASE
    assert keys(diags) == ["eta_min"] and diags[0].code == "unknown-key"
    assert "cosine_min_lr_ratio: 0.1" in diags[0].hint
