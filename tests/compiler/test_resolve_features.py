"""resolve (compiler/resolve/) for the dataset loading options and model overrides: recorded in the plan, checked when local."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler import pipeline
from loft.compiler.errors import ConfigError
from project_factory import BASE_CONFIG, make_project

DIR_DATA = "data:\n  datasets:\n    - path: data/shards\n      data_files: [b.jsonl]\n"


def config(data: str = "", model: str = "") -> str:
    """BASE_CONFIG with its data (and model) section replaced."""
    text = BASE_CONFIG.replace("data:\n  datasets:\n    - path: data/chat.jsonl\n", data or
                               "data:\n  datasets:\n    - path: data/chat.jsonl\n")
    return text.replace("model:\n  base: ./models/tiny\n", model or "model:\n  base: ./models/tiny\n")


def _shards(cfg: Path) -> None:
    shards = cfg.parent / "data" / "shards"
    shards.mkdir(parents=True)
    src = (cfg.parent / "data" / "chat.jsonl").read_text(encoding="utf-8")
    (shards / "a.jsonl").write_text(src, encoding="utf-8")
    (shards / "b.jsonl").write_text(src, encoding="utf-8")


def test_data_files_of_a_local_directory_are_recorded_and_bundled(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, config(DIR_DATA))
    _shards(cfg)
    r = pipeline.plan(cfg, out_dir=tmp_path / "run")
    ds = r.plan["config"]["data"]["datasets"][0]
    assert ds["data_files"] == ["b.jsonl"] and ds["config_name"] is None
    assert ds["path"] == "data/shards"
    assert "data/shards/b.jsonl" in r.attachments  # the directory travels with the bundle


@pytest.mark.parametrize(("files", "code"), [("[c.jsonl]", "missing-file"), ("[../chat.jsonl]", "path-traversal")])
def test_bad_data_files_are_errors(tmp_path: Path, files: str, code: str) -> None:
    cfg = make_project(tmp_path, config(DIR_DATA.replace("[b.jsonl]", files)))
    _shards(cfg)
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert [(d.code, d.key) for d in e.value.diagnostics] == [(code, "data.datasets[0].data_files")]


def test_data_files_on_a_single_file_is_a_conflict(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, config("data:\n  datasets:\n    - {path: data/chat.jsonl, data_files: x.jsonl}\n"))
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert [d.code for d in e.value.diagnostics] == ["conflict"]


def test_config_overrides_and_added_tokens_are_in_the_plan(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, config(model="model:\n  base: ./models/tiny\n  config_overrides: {rope_theta: 1000.0}\n"
                                              "  added_tokens: ['<tool_call>']\n"))
    r = pipeline.plan(cfg)
    assert r.plan["config"]["model"]["config_overrides"] == {"rope_theta": 1000.0}
    assert r.plan["config"]["model"]["added_tokens"] == ["<tool_call>"]


def test_config_overrides_update_the_facts_the_estimate_reads(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, config(model="model:\n  base: ./models/tiny\n"
                                              "  config_overrides: {max_position_embeddings: 512, rope_theta: 1.0}\n"))
    assert pipeline.plan(cfg).plan["model"]["max_position_embeddings"] == 512


def test_shape_overrides_need_random_init(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, config(model="model:\n  base: ./models/tiny\n  config_overrides: {hidden_size: 128}\n"))
    with pytest.raises(ConfigError) as e:
        pipeline.plan(cfg)
    assert [(d.code, d.key) for d in e.value.diagnostics] == [("conflict", "model.config_overrides.hidden_size")]
    cfg = make_project(tmp_path / "r", config(model="model:\n  base: ./models/tiny\n  init: random\n"
                                                    "  config_overrides: {hidden_size: 128}\n"))
    r = pipeline.plan(cfg)
    assert r.plan["model"]["hidden_size"] == 128 and r.plan["model"]["params"] > 0
