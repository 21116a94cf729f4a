"""The key table is data checked against Axolotl's schema: every key known, defaults silent, types checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.compiler.dialects.axolotl import keys as K

from tests.axolotl.helpers import codes, errors_of, keys, tr

KINDS = {"translated", "no-effect", "unsupported"}


def test_every_key_has_a_kind_and_a_reason() -> None:
    data = K.table_data()
    assert data["axolotl_version"]
    for section in ("top", "dataset", "fsdp_config"):
        for key, e in data[section].items():
            assert e["kind"] in KINDS, (section, key)
            if section == "top":
                assert e["why"].strip(), key


def test_schema_keys_of_axolotl_are_all_classified() -> None:
    """Every key of the recorded Axolotl schema (plus its plugins') is in the table: the sync script refuses
    to record facts for an unclassified key, so a table entry with `schema` is exactly a schema key."""
    top = K.table_data()["top"]
    with_schema = [k for k, e in top.items() if "schema" in e]
    assert len(with_schema) >= 450  # Axolotl 0.21.0: 413 top-level keys + the plugins' arguments
    for real in ("fp8", "tiled_mlp", "rope_scaling", "chat_template_kwargs", "evaluation_strategy",
                 "use_otel_metrics", "reinit_weights", "tensor_parallel_size", "pretrain_multipack_attn"):
        assert real in with_schema, real


def test_sync_script_reports_nothing_missing(tmp_path: Path) -> None:
    """The facts stored in keys.json, dumped back in the facts format, are in sync (the script's own check)."""
    import subprocess
    import sys

    top = K.table_data()["top"]
    facts = {"version": K.table_data()["axolotl_version"],
             "top": {k: e["schema"] for k, e in top.items() if "schema" in e and not e.get("plugin")},
             "plugins": {k: e["schema"] for k, e in top.items() if "schema" in e and e.get("plugin")},
             "dataset": {k: e["schema"] for k, e in K.table_data()["dataset"].items() if "schema" in e},
             "fsdp_config": {k: e["schema"] for k, e in K.table_data()["fsdp_config"].items() if "schema" in e}}
    facts["top"]["a_new_axolotl_key"] = {"types": ["null", "boolean"], "default": None}
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts))
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "axolotl_keys_sync.py"
    r = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert "NOT CLASSIFIED (add kind + why to keys.json): top.a_new_axolotl_key" in r.stdout
    assert "0 changed" in r.stdout


@pytest.mark.parametrize("extra", ["tensor_parallel_size: 1\n", "pretrain_multipack_attn: true\n", "debug:\n",
                                   "sample_packing_bin_size: 200\n", "shuffle_merged_datasets: true\n",
                                   "qgalore_update_proj_gap: 200\n", "context_parallel_size: 1\n"])
def test_default_valued_keys_are_accepted_silently(extra: str) -> None:
    _, warns = tr(extra)
    assert [w for w in warns if w.key == extra.split(":")[0]] == []


def test_real_keys_are_known_refused_with_a_reason_or_warned() -> None:
    errs = errors_of("fp8: true\nreinit_weights: true\n")
    assert keys(errs) == ["fp8", "reinit_weights"]
    assert "FP8 training is not supported" in errs[0].message
    _, warns = tr("tiled_mlp: true\nuse_otel_metrics: true\nevaluation_strategy: steps\neval_steps: 5\n"
                  "val_set_size: 0.1\n")
    assert {"tiled_mlp", "use_otel_metrics"} <= set(keys(warns))


def test_values_are_checked_against_axolotl_types_and_choices() -> None:
    errs = errors_of("micro_batch_size: two\nexcess_length_strategy: chop\nlora_dropout: [0.1]\n")
    assert codes(errs) == ["type", "type", "type"]
    assert "expected integer (Axolotl's schema), got 'two'" in errs[0].message
    assert "expected one of drop, raise, truncate" in errs[1].message


def test_rope_scaling_becomes_a_config_override() -> None:
    cfg, _ = tr("rope_scaling:\n  type: linear\n  factor: 2.0\n")
    assert cfg["model"]["config_overrides"] == {"rope_scaling": {"type": "linear", "factor": 2.0}}


def test_save_total_limit_follows_axolotls_default() -> None:
    cfg, _ = tr("")
    assert cfg["training"]["save_total_limit"] == 4  # Axolotl's trainer keeps 4 when unset or 0
    cfg, _ = tr("save_total_limit: 0\n")
    assert cfg["training"]["save_total_limit"] == 4
    cfg, _ = tr("save_total_limit: 2\n")
    assert cfg["training"]["save_total_limit"] == 2


def test_false_for_a_number_is_off_as_in_pydantic() -> None:
    _, warns = tr("jagged_restart_anneal_steps: false\n")
    assert "jagged_restart_anneal_steps" not in keys(warns)


def test_quantize_moe_experts_with_8bit_lora_warns() -> None:
    _, warns = tr("adapter: lora\nload_in_8bit: true\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
                  "quantize_moe_experts: true\n")
    assert "quantize_moe_experts" in keys(warns)


def test_family_templates_outside_the_library_use_the_models_own() -> None:
    for name in ("gemma4_unified", "deepseek_v2"):
        cfg, warns = tr(f"chat_template: {name}\n")
        assert cfg["template"] == "auto" and "chat_template" in keys(warns)
