"""validate.py: every schema violation at once, each at file:line:col with an actionable message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loft.compiler.errors import ConfigError, Diagnostic
from loft.compiler.parse import parse, parse_text
from loft.compiler.validate import validate
from project_factory import MINIMAL_CONFIG


def errors(text: str, path: str = "c.yaml") -> list[Diagnostic]:
    doc = parse_text(textwrap.dedent(text), path)
    with pytest.raises(ConfigError) as e:
        validate(doc.data, doc=doc)
    return e.value.diagnostics


def one(text: str, path: str = "c.yaml") -> Diagnostic:
    diags = errors(text, path)
    assert len(diags) == 1, [d.render() for d in diags]
    return diags[0]


OK = MINIMAL_CONFIG


def test_a_minimal_config_is_valid() -> None:
    doc = parse_text(OK)
    assert validate(doc.data, doc=doc)["model"]["base"] == "org/model"


def test_unknown_key_with_did_you_mean_and_position() -> None:
    d = one(OK + "training:\n  lerning_rate: 1.0e-4\n")
    assert d.code == "unknown-key"
    assert d.message == "unknown key 'lerning_rate'"
    assert d.key == "training.lerning_rate"
    assert (d.file, d.line, d.col) == ("c.yaml", 7, 3)
    assert d.hint == "did you mean 'learning_rate'?"
    assert "learning_rate" in d.expected
    assert d.render().startswith("c.yaml:7:3: error: training.lerning_rate: unknown key 'lerning_rate'")


def test_key_at_the_wrong_level_says_where_it_belongs() -> None:
    d = one(OK + "learning_rate: 1.0e-4\n")
    assert d.line == 6 and d.col == 1
    assert "training.learning_rate" in d.hint


def test_unknown_key_inside_a_list_item() -> None:
    d = one("loft: 1\nmodel: {base: a/b}\ndata:\n  datasets:\n    - path: x.jsonl\n      formt: alpaca\n")
    assert d.key == "data.datasets[0].formt" and (d.line, d.col) == (6, 7)
    assert "'format'" in d.hint


def test_wrong_type_says_what_was_expected() -> None:
    d = one(OK + "training:\n  epochs: two\n")
    assert d.code == "wrong-type" and d.key == "training.epochs" and d.line == 7
    assert "got string 'two'" in d.message
    assert d.expected.startswith("a number")


def test_bad_enum_lists_the_choices_and_suggests() -> None:
    d = one(OK + "adapter:\n  type: lroa\n")
    assert d.code == "bad-value" and d.key == "adapter.type"
    assert d.expected == "'none' | 'lora' | 'qlora'"
    assert d.hint == "did you mean 'lora'?"


def test_int_or_auto_reports_the_bound() -> None:
    d = one(OK + "training:\n  micro_batch_size: 0\n")
    assert "must be ≥ 1" in d.message and "'auto'" in d.expected
    d = one(OK + "sequence:\n  max_length: autoo\n")
    assert d.hint == "did you mean 'auto'?"


def test_bounds() -> None:
    d = one(OK + "adapter:\n  dropout: 1.5\n")
    assert "must be < 1" in d.message
    d = one(OK + "training:\n  learning_rate: -1\n")
    assert "must be > 0" in d.message


def test_missing_required_keys() -> None:
    d = one("loft: 1\nmodel: {dtype: bf16}\ndata: {datasets: [{path: a.jsonl}]}\n")
    assert d.code == "missing-key" and "'base'" in d.message and d.line == 2
    diags = errors("loft: 1\nmodel: {base: a/b}\n")
    assert [x.code for x in diags] == ["missing-key"] and "'data'" in diags[0].message


def test_every_error_is_reported_at_once_in_file_order() -> None:
    diags = errors(OK + "training:\n  lerning_rate: 1\n  epochs: x\nadapter:\n  type: big\nfoo: 1\n")
    assert [d.line for d in diags] == sorted(d.line for d in diags)
    assert {d.key for d in diags} == {"training.lerning_rate", "training.epochs", "adapter.type", "foo"}


def test_no_datasets_is_an_error() -> None:
    d = one("loft: 1\nmodel: {base: a/b}\ndata: {eval_split: 0.1}\n")
    assert d.key == "data" and d.code == "missing-key"


def test_duplicate_dataset_names() -> None:
    d = one("loft: 1\nmodel: {base: a/b}\ndata:\n  datasets:\n    - {path: a.jsonl, name: x}\n"
            "    - {path: b.jsonl, name: x}\n")
    assert d.code == "duplicate-name" and d.key == "data.datasets[1].name" and d.line == 6


def test_dataset_name_cannot_escape_the_bundle() -> None:
    d = one("loft: 1\nmodel: {base: a/b}\ndata:\n  datasets:\n    - {path: a.jsonl, name: ../../etc}\n")
    assert d.key == "data.datasets[0].name" and "must match" in d.message


def test_conflicting_parallelism() -> None:
    d = one(OK + "deepspeed: {stage: 3}\nfsdp: {enabled: true}\n")
    assert d.code == "conflict" and d.key == "fsdp.enabled"
    d = one(OK + "deepspeed: {stage: 2, offload_params: true}\n")
    assert d.key == "deepspeed.offload_params"
    d = one(OK + "target: {kind: local, nodes: 2}\n")
    assert d.key == "target.nodes"


def test_unknown_gpu_and_provider_suggest_catalog_names() -> None:
    diags = errors(OK + "target: {gpu: H10O, provider: lambada}\n")
    by_key = {d.key: d for d in diags}
    assert by_key["target.gpu"].hint == "did you mean 'H100'?"
    assert by_key["target.provider"].hint == "did you mean 'lambda'?"
    doc = parse_text(OK + "target: {gpu: h100-sxm}\n")  # catalog aliases, any case
    validate(doc.data, doc=doc)


def test_sweep_keys_and_values_are_checked() -> None:
    d = one(OK + "sweep:\n  params:\n    training.lerning_rate: [1.0e-4]\n")
    assert d.code == "bad-sweep-key" and "training.learning_rate" in d.hint and d.line == 8
    d = one(OK + "sweep:\n  params:\n    adapter.type: [lora, big]\n")
    assert d.key == "sweep.params.adapter.type[1]" and "big" in d.message
    doc = parse_text(OK + "sweep:\n  method: random\n  trials: 4\n  params:\n"
                     "    training.learning_rate: {min: 1.0e-5, max: 1.0e-3, log: true}\n"
                     "    data.datasets[0].weight: [1, 2]\n")
    validate(doc.data, doc=doc)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_data_config_file_is_merged_and_main_keys_win(tmp_path: Path) -> None:
    write(tmp_path / "d" / "data.yaml", "datasets:\n  - path: a.jsonl\neval_split: 0.2\ntemperature: 2.0\n")
    cfg = write(tmp_path / "c.yaml", "loft: 1\nmodel: {base: a/b}\ndata:\n  config: d/data.yaml\n  eval_split: 0.1\n")
    doc = parse(cfg)
    out = validate(doc.data, doc=doc)
    assert out["data"]["datasets"] == [{"path": "a.jsonl"}]
    assert out["data"]["eval_split"] == 0.1 and out["data"]["temperature"] == 2.0


def test_errors_in_the_data_config_file_point_into_that_file(tmp_path: Path) -> None:
    data = write(tmp_path / "data.yaml", "datasets:\n  - path: a.jsonl\n    wieght: 2\n")
    cfg = write(tmp_path / "c.yaml", "loft: 1\nmodel: {base: a/b}\ndata:\n  config: data.yaml\n")
    doc = parse(cfg)
    with pytest.raises(ConfigError) as e:
        validate(doc.data, doc=doc)
    d = e.value.diagnostics[0]
    assert (d.file, d.line, d.col) == (str(data), 3, 5)
    assert d.key == "data.datasets[0].wieght" and d.hint == "did you mean 'weight'?"


def test_a_data_file_may_not_nest_another_data_config(tmp_path: Path) -> None:
    write(tmp_path / "data.yaml", "config: other.yaml\ndatasets: [{path: a.jsonl}]\n")
    cfg = write(tmp_path / "c.yaml", "loft: 1\nmodel: {base: a/b}\ndata: {config: data.yaml}\n")
    doc = parse(cfg)
    with pytest.raises(ConfigError) as e:
        validate(doc.data, doc=doc)
    assert e.value.diagnostics[0].code == "unknown-key"


def test_missing_or_broken_data_config_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "loft: 1\nmodel: {base: a/b}\ndata:\n  config: nope.yaml\n")
    doc = parse(cfg)
    with pytest.raises(ConfigError) as e:
        validate(doc.data, doc=doc)
    d = e.value.diagnostics[0]
    assert d.code == "missing-file" and d.key == "data.config" and (d.line, d.col) == (4, 3)
    write(tmp_path / "nope.yaml", "datasets: [\n")
    with pytest.raises(ConfigError) as e:
        validate(doc.data, doc=doc)
    d = e.value.diagnostics[0]
    assert d.code == "yaml" and d.file.endswith("nope.yaml")


# --- robustness: no input makes validate crash -----------------------------------------------------------

SECTIONS = ["model", "data", "training", "adapter", "sequence", "target", "sweep", "deepspeed", "fsdp", "eval",
            "tracking", "export", "lerning_rate", "name", "output_dir", "template"]
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                   st.text(max_size=12), st.sampled_from(["auto", "lora", "cpu", "H100", "all-linear", "a/b"]))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["base", "datasets", "path", "stage", "kind", "params", "r", "type",
                                     "max_length", "gpu", "nodes", "name", "enabled", "wandb", "x"]), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(SECTIONS), VALUES, max_size=6))
def test_validate_never_crashes(config: dict[str, object]) -> None:
    try:
        out = validate({"loft": 1, **config})
    except ConfigError as e:
        assert e.diagnostics and all(d.message for d in e.diagnostics)
    else:
        assert isinstance(out, dict)


def test_secrets_are_refused() -> None:
    d = one(OK + "export:\n  push_to_hub: org/model\ntracking:\n  wandb:\n    project: p\n"
            "    api_key_env: 0123456789abcdef0123456789abcdef01234567\n")
    assert d.key == "tracking.wandb.api_key_env"
    d = one(OK + "eval:\n  prompts: [hf_abcdefghijklmnopqrstuvwxyz123456]\n")
    assert d.code == "secret" and d.key == "eval.prompts[0]" and d.line == 7
    doc = parse_text(OK + "tracking:\n  wandb: {project: p, api_key_env: MY_WANDB_KEY}\n")
    validate(doc.data, doc=doc)


def test_axolotl_keys_in_a_loft_config_say_where_loft_keeps_them() -> None:
    d = one(OK + "sequence_len: 4096\n")
    assert d.code == "unknown-key" and "Axolotl key" in d.hint and "sequence.max_length" in d.hint
