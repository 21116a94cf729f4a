"""validate.py: the keys that only make sense together (partial fine-tuning, adapter extras, the cosine floor,
early stopping), each refused at its line with what to set instead."""

from __future__ import annotations

import textwrap

import pytest
from loft.compiler.errors import ConfigError, Diagnostic
from loft.compiler.parse import parse_text
from loft.compiler.validate import validate
from project_factory import MINIMAL_CONFIG

OK = MINIMAL_CONFIG


def check(extra: str, base: str = OK) -> list[Diagnostic]:
    doc = parse_text(base + textwrap.dedent(extra), "c.yaml")
    try:
        validate(doc.data, doc=doc)
    except ConfigError as e:
        return e.diagnostics
    return []


def test_the_new_keys_validate_when_consistent() -> None:
    with_eval = OK.replace("    - path: data.jsonl\n", "    - path: data.jsonl\n  eval_split: 0.1\n")
    assert check("""\
        adapter: {type: none}
        training: {unfrozen_parameters: ['^lm_head', 'layers\\.1\\.'], lr_scheduler: cosine_with_min_lr,
                   min_lr_ratio: 0.25, early_stopping_patience: 2}
        """, base=with_eval) == []
    model = OK.replace("model: {base: org/model}",
                       "model: {base: org/model, added_tokens: ['<x>'], config_overrides: {output_router_logits: true}}")
    assert check("""\
        adapter: {type: lora, target_modules: [], target_parameters: [mlp.experts.down_proj],
                  modules_to_save: [lm_head], dropout: 0.0}
        """, base=model) == []


def test_unfrozen_parameters_need_a_full_finetune_and_valid_regexes() -> None:
    diags = check("training: {unfrozen_parameters: ['^lm_head']}\n")  # adapter defaults to lora
    assert [(d.key, d.code, d.line) for d in diags] == [("training.unfrozen_parameters", "conflict", 6)]
    diags = check("adapter: {type: none}\ntraining: {unfrozen_parameters: ['(unclosed']}\n")
    assert [d.key for d in diags] == ["training.unfrozen_parameters[0]"]


@pytest.mark.parametrize("key", ["target_parameters", "modules_to_save"])
def test_adapter_extras_need_an_adapter(key: str) -> None:
    diags = check(f"adapter: {{type: none, {key}: [lm_head]}}\n")
    assert [(d.key, d.code) for d in diags] == [(f"adapter.{key}", "conflict")]


def test_target_parameters_need_no_dropout() -> None:
    diags = check("adapter: {type: lora, target_parameters: [mlp.experts.down_proj]}\n")  # dropout 0.05
    assert [(d.key, d.code) for d in diags] == [("adapter.dropout", "conflict")]


def test_no_lora_targets_at_all() -> None:
    diags = check("adapter: {type: lora, target_modules: []}\n")
    assert [(d.key, d.code) for d in diags] == [("adapter.target_modules", "missing-key")]


def test_min_lr_ratio_needs_cosine_with_min_lr() -> None:
    diags = check("training: {min_lr_ratio: 0.1}\n")  # lr_scheduler defaults to cosine
    assert [(d.key, d.code) for d in diags] == [("training.min_lr_ratio", "conflict")]
    assert "cosine_with_min_lr" in diags[0].expected
    assert check("training: {lr_scheduler: cosine_with_min_lr, min_lr_ratio: 0.1}\n") == []
    assert [d.key for d in check("training: {lr_scheduler: cosine_with_min_lr, min_lr_ratio: 1.5}\n")] == [
        "training.min_lr_ratio"]


def test_early_stopping_needs_an_eval_split() -> None:
    diags = check("training: {early_stopping_patience: 2}\n")
    assert [(d.key, d.code) for d in diags] == [("training.early_stopping_patience", "conflict")]
    ok = OK.replace("    - path: data.jsonl\n", "    - path: data.jsonl\n  eval_split: 0.1\n")
    doc = parse_text(ok + "training: {early_stopping_patience: 2}\n", "c.yaml")
    assert validate(doc.data, doc=doc)["training"]["early_stopping_patience"] == 2
    per_dataset = OK.replace("    - path: data.jsonl\n", "    - path: data.jsonl\n      eval_split: 20\n")
    doc = parse_text(per_dataset + "training: {early_stopping_patience: 2}\n", "c.yaml")
    validate(doc.data, doc=doc)


def test_data_files_shapes() -> None:
    def ds(entry: str) -> list[Diagnostic]:
        return check("", base=OK.replace("    - path: data.jsonl", f"    - {entry}"))

    assert ds("{path: org/repo, data_files: a.jsonl, config_name: en}") == []
    assert ds("{path: org/repo, data_files: [a.jsonl, b.jsonl]}") == []
    assert [d.key for d in ds("{path: org/repo, data_files: []}")] == ["data.datasets[0].data_files"]
