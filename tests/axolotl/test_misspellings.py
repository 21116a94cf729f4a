"""Misspelled and unknown keys: always an error, with a did-you-mean against Axolotl's own key names."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loft.compiler.dialects.axolotl import keys as K
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse

from tests.axolotl.helpers import errors_of, tr


@pytest.mark.parametrize(("typo", "meant"), [
    ("adam_eps", "adam_epsilon"),  # from the corpus
    ("micro_batchsize", "micro_batch_size"),
    ("lora_alfa", "lora_alpha"),
    ("gradient_acumulation_steps", "gradient_accumulation_steps"),
    ("num_epoch", "num_epochs"),
    ("Learning_Rate", "learning_rate"),
    ("sample_pack", "sample_packing"),
])
def test_top_level_typos_get_a_did_you_mean(typo: str, meant: str) -> None:
    diags = errors_of(f"{typo}: 1\n")
    assert [d.code for d in diags] == ["unknown-key"]
    assert diags[0].key == typo and repr(meant) in diags[0].hint
    assert diags[0].line > 0 and diags[0].file == "axo.yml"


def test_eta_min_explains_what_axolotl_has_instead() -> None:
    diags = errors_of("eta_min: 7e-7\n")
    assert "cosine_min_lr_ratio" in diags[0].hint


def test_dataset_and_fsdp_typos() -> None:
    diags = errors_of("datasets:\n  - path: a/b\n    type: chat_template\n    feild_messages: conversations\n")
    assert diags[0].key == "datasets[0].feild_messages" and "'field_messages'" in diags[0].hint
    diags = errors_of("fsdp_config:\n  fsdp_ofload_params: true\n")
    assert diags[0].key == "fsdp_config.fsdp_ofload_params" and "'offload_params'" in diags[0].hint


def test_all_problems_are_reported_together() -> None:
    diags = errors_of("adam_eps: 1e-8\nlora_alfa: 16\nrl: dpo\n")
    assert sorted(d.key for d in diags) == ["adam_eps", "lora_alfa", "rl"]


def test_axolotl_ignored_key_is_a_warning_that_says_so() -> None:
    _, warns = tr("torch_dtype: bfloat16\n")
    assert [(w.key, w.code) for w in warns] == [("torch_dtype", "axolotl-ignored")]


_KNOWN = set(K.all_keys()) | set(K.table_data()["ignored"])


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9_]{2,24}", fullmatch=True).filter(lambda k: k not in _KNOWN))
def test_unknown_keys_are_never_silently_dropped(key: str) -> None:
    with pytest.raises(ConfigError) as e:
        tr(f"{key}: 1\n")
    assert any(d.key == key for d in e.value.diagnostics)


def test_corpus_misspellings_are_named_with_file_line_and_hint(shared_dir: Path) -> None:
    f = shared_dir / "corpus/axolotl/examples/examples__archived__cerebras__btlm-ft.yml"
    with pytest.raises(ConfigError) as e:
        from loft.compiler.dialects.axolotl import translate

        translate(parse(f))
    d = next(d for d in e.value.diagnostics if d.key == "adam_eps")
    assert d.file.endswith("btlm-ft.yml") and d.line > 0 and "'adam_epsilon'" in d.hint
    assert f"{d.file}:{d.line}:{d.col}: error: adam_eps" in e.value.render()


def test_a_misplaced_token_string_is_an_unknown_key_not_a_secret() -> None:
    diags = errors_of("pad_token: '<|pad|>'\n")
    assert [d.code for d in diags] == ["unknown-key"]
    assert "special_tokens" in diags[0].hint
