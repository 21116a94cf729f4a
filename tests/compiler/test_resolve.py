"""resolve (compiler/resolve/) + pipeline.plan: defaults, model facts, data hashes, derived numbers, launch, relocatable paths."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loft.compiler import models, pipeline
from loft.compiler.errors import ConfigError
from loft.compiler.validate import load_schema
from project_factory import BASE_CONFIG, TINY_MODEL_CONFIG, make_project, with_keys


def plan_of(cfg: Path, out: Path | None = None) -> pipeline.Resolved:
    return pipeline.plan(cfg, out_dir=out)


def codes(r: pipeline.Resolved) -> set[str]:
    return {w.code for w in r.warnings}


def schema_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, sub in node.get("properties", {}).items():
        p = f"{prefix}.{k}" if prefix else k
        out.add(p)
        if sub.get("type") == "object" or sub.get("type") == ["object", "null"]:
            out |= schema_paths(sub, p)
    return out


def present(config: dict[str, Any], path: str) -> bool:
    node: Any = config
    for part in path.split("."):
        if node is None:  # a nullable section (sweep, wandb) that is off
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_every_schema_key_is_in_the_resolved_config(tmp_path: Path) -> None:
    r = plan_of(make_project(tmp_path))
    cfg = r.plan["config"]
    missing = [p for p in schema_paths(load_schema()) if not present(cfg, p)]
    assert missing == []
    # defaults come from the schema
    assert cfg["training"]["learning_rate"] == load_schema()["properties"]["training"]["properties"][
        "learning_rate"]["default"]
    ds = cfg["data"]["datasets"][0]
    assert ds["format"] == "messages" and ds["roles_to_train"] == ["assistant"]


def test_plan_matches_plan_schema(tmp_path: Path) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    r = plan_of(make_project(tmp_path), tmp_path / "run")
    cs, ps = load_schema("config"), load_schema("plan")
    reg = Registry().with_resources([(cs["$id"], Resource.from_contents(cs)), (ps["$id"], Resource.from_contents(ps))])
    errs = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(ps, registry=reg).iter_errors(r.plan)]
    assert errs == []


def test_local_model_facts_from_config_json_written_here(tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    moe = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 64,
           "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
           "vocab_size": 300, "num_local_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 512}
    (tmp_path / "models" / "tiny" / "config.json").write_text(json.dumps(moe))
    m = plan_of(cfg).plan["model"]
    assert m["source"] == "config.json" and m["architecture"] == "MixtralForCausalLM"
    assert (m["num_experts"], m["num_experts_per_tok"]) == (8, 2)
    assert m["head_dim"] == 16  # hidden / heads when config.json has none
    assert m["tie_word_embeddings"] is False and m["id"] is None


@pytest.mark.parametrize("name,hub_id", [("llama3.2-1b", "meta-llama/Llama-3.2-1B-Instruct"),
                                         ("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct")])
def test_shared_calibration_configs_and_catalog_agree(shared_dir: Path, name: str, hub_id: str) -> None:
    cfg_json = json.loads((shared_dir / "calibration" / "models" / name / "config.json").read_text())
    local, problem = models.local_facts(shared_dir / "calibration" / "models" / name)
    assert problem is None
    cat = models.lookup(hub_id)
    assert cat is not None
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                "intermediate_size", "vocab_size", "tie_word_embeddings", "model_type"):
        assert local[key] == cfg_json[key] == cat[key], key
    assert local["architecture"] == cfg_json["architectures"][0] == cat["architecture"]


def test_plan_from_a_shared_local_model_dir(shared_dir: Path, tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    shutil.copy(shared_dir / "calibration" / "models" / "qwen2.5-0.5b" / "config.json",
                tmp_path / "models" / "tiny" / "config.json")
    m = plan_of(cfg).plan["model"]
    assert (m["model_type"], m["hidden_size"], m["num_key_value_heads"], m["vocab_size"]) == ("qwen2", 896, 2, 151936)


def test_catalog_entries_are_complete() -> None:
    cat = models.catalog()
    assert len(cat) >= 40
    families = {p.stem for p in (Path(models.__file__).resolve().parent.parent / "chat_templates").glob("*.jinja")}
    for hub_id, facts in cat.items():
        assert "/" in hub_id
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "intermediate_size", "vocab_size", "max_position_embeddings"):
            assert isinstance(facts[k], int) and facts[k] > 0, (hub_id, k)
        assert facts["num_attention_heads"] % facts["num_key_value_heads"] == 0, hub_id
        assert facts["chat_template_family"] is None or facts["chat_template_family"] in families, hub_id
    moe = cat["Qwen/Qwen3-30B-A3B"]
    assert (moe["num_experts"], moe["num_experts_per_tok"]) == (128, 8)


def test_hub_model_from_catalog_and_case_insensitive_lookup(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("base: ./models/tiny", "base: meta-llama/llama-3.1-8b-instruct\n  revision: 0e9e39f")
    r = plan_of(make_project(tmp_path, text))
    m = r.plan["model"]
    assert m["source"] == "catalog" and m["hidden_size"] == 4096 and m["num_hidden_layers"] == 32
    assert m["id"] == "meta-llama/llama-3.1-8b-instruct" and m["path"] is None and m["revision"] == "0e9e39f"
    assert m["params"] is not None and 7.5e9 < m["params"] < 8.5e9
    assert "unpinned-revision" not in codes(r)


def test_unknown_architecture_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("base: ./models/tiny", "base: someone/brand-new-model")
    r = plan_of(make_project(tmp_path, text))
    m = r.plan["model"]
    assert m["source"] == "unknown" and m["hidden_size"] is None and m["params"] is None
    assert {"unknown-architecture", "unpinned-revision"} <= codes(r)
    w = next(w for w in r.warnings if w.code == "unknown-architecture")
    assert (w.line, w.col, w.key) == (4, 3, "model.base")


def test_branch_revision_is_flagged(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("base: ./models/tiny", "base: Qwen/Qwen2.5-0.5B\n  revision: main")
    w = [w for w in plan_of(make_project(tmp_path, text)).warnings if w.code == "unpinned-revision"]
    assert len(w) == 1 and w[0].key == "model.revision" and "branch or tag" in w[0].message


def test_data_hash_rows_and_bundling(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, rows=12)
    r = plan_of(cfg, tmp_path / "run")
    ds = r.plan["data"]["datasets"][0]
    raw = (tmp_path / "data" / "chat.jsonl").read_bytes()
    assert ds == {"name": "chat", "source": "local", "path": "data/chat.jsonl", "bundled": True,
                  "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "rows": 12, "revision": None}
    assert r.attachments["data/chat.jsonl"] == raw
    assert r.plan["config"]["data"]["datasets"][0]["path"] == "data/chat.jsonl"
    # the small local model travels too
    assert r.plan["model"]["path"] == "model" and "model/config.json" in r.attachments
    assert r.plan["config"]["model"]["base"] == "model"


def test_unbundled_data_keeps_a_bundle_relative_path_and_warns(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n  bundle: never\n")
    r = plan_of(make_project(tmp_path, text), tmp_path / "out" / "run")
    ds = r.plan["data"]["datasets"][0]
    assert ds["bundled"] is False and ds["path"] == "../../data/chat.jsonl"
    assert not any(k.startswith("data/") for k in r.attachments)


def test_directory_dataset_hash_covers_names_and_contents(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("path: data/chat.jsonl", "path: shards/")
    cfg = make_project(tmp_path, text)
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.jsonl").write_text("{}\n")
    (tmp_path / "shards" / "b.jsonl").write_text("{}\n")
    h1 = plan_of(cfg).plan["data"]["datasets"][0]["sha256"]
    (tmp_path / "shards" / "b.jsonl").rename(tmp_path / "shards" / "c.jsonl")
    h2 = plan_of(cfg).plan["data"]["datasets"][0]["sha256"]
    (tmp_path / "shards" / "c.jsonl").write_text("{} \n")
    h3 = plan_of(cfg).plan["data"]["datasets"][0]["sha256"]
    assert len({h1, h2, h3}) == 3
    r = plan_of(cfg, tmp_path / "run")
    assert r.plan["data"]["datasets"][0]["path"] == "data/shards"
    assert set(r.attachments) >= {"data/shards/a.jsonl", "data/shards/c.jsonl"}


def test_dataset_names_are_sanitized_and_unique(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("    - path: data/chat.jsonl\n",
                               "    - path: data/chat.jsonl\n    - path: other/chat.jsonl\n"
                               "    - path: 'odd dir/my data!.v2.jsonl'\n    - path: org/hub-set\n      revision: abc1234\n")
    cfg = make_project(tmp_path, text)
    for p in ("other/chat.jsonl", "odd dir/my data!.v2.jsonl"):
        (tmp_path / p).parent.mkdir(exist_ok=True)
        (tmp_path / p).write_text("{}\n")
    r = plan_of(cfg, tmp_path / "run")
    got = [(d["name"], d["path"]) for d in r.plan["data"]["datasets"]]
    assert got == [("chat", "data/chat.jsonl"), ("chat-2", "data/chat-2.jsonl"),
                   ("my_data", "data/my_data.jsonl"), ("hub-set", "org/hub-set")]
    assert all(not k.startswith(("/", "..")) and ".." not in k.split("/") for k in r.attachments)


def test_missing_data_and_model_are_errors_at_their_keys(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("path: data/chat.jsonl", "path: data/missing.jsonl")
    text = text.replace("base: ./models/tiny", "base: ./models/nothing")
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, text))
    by_key = {d.key: d for d in e.value.diagnostics}
    assert by_key["data.datasets[0].path"].code == "missing-file"
    assert (by_key["data.datasets[0].path"].line, by_key["data.datasets[0].path"].col) == (7, 7)
    assert by_key["model.base"].code == "missing-file" and by_key["model.base"].line == 4


def test_output_dir_cannot_escape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, BASE_CONFIG + "output_dir: ../elsewhere\n"))
    assert e.value.diagnostics[0].key == "output_dir" and e.value.diagnostics[0].code == "path-escape"


def test_data_config_file_is_recorded(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("  datasets:\n    - path: data/chat.jsonl\n", "  config: data/mix.yaml\n")
    cfg = make_project(tmp_path, text)
    (tmp_path / "data" / "mix.yaml").write_text("datasets:\n  - path: data/chat.jsonl\n    weight: 2\n")
    r = plan_of(cfg, tmp_path / "run")
    assert r.plan["config"]["data"]["config"] is None
    assert r.plan["config"]["data"]["datasets"][0]["weight"] == 2
    src = r.plan["source"]["data_config"]
    assert src["file"] == "mix.yaml"  # a name: the bundle does not depend on where it is built
    assert src["sha256"] == hashlib.sha256((tmp_path / "data" / "mix.yaml").read_bytes()).hexdigest()


def derived(tmp_path: Path, extra: str, base: str = BASE_CONFIG, rows: int = 100) -> dict[str, Any]:
    return plan_of(make_project(tmp_path, with_keys(extra, base), rows=rows)).plan["derived"]


GPU_BASE = BASE_CONFIG.replace("target:\n  gpu: cpu\n", "").replace("training:\n  precision: fp32\n  optimizer: adamw_torch\n", "")


def test_accumulation_from_global_batch(tmp_path: Path) -> None:
    d = derived(tmp_path, "training: {micro_batch_size: 2, global_batch_size: 64}\n"
                "target: {kind: multi_gpu, num_gpus: 8}\nsequence: {max_length: 1024}\n", GPU_BASE)
    assert (d["world_size"], d["gradient_accumulation_steps"], d["global_batch_size"]) == (8, 4, 64)
    assert d["tokens_per_step"] == 64 * 1024


def test_inconsistent_batch_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        derived(tmp_path, "training: {micro_batch_size: 3, global_batch_size: 64}\n"
                "target: {kind: multi_gpu, num_gpus: 8}\n", GPU_BASE)
    assert e.value.diagnostics[0].key == "training.global_batch_size"
    with pytest.raises(ConfigError):
        derived(tmp_path, "training: {micro_batch_size: 2, gradient_accumulation_steps: 2, global_batch_size: 8}\n",
                GPU_BASE)


def test_steps_without_packing_and_warmup(tmp_path: Path) -> None:
    base = BASE_CONFIG.replace("  precision: fp32\n", "  precision: fp32\n  micro_batch_size: 4\n"
                               "  epochs: 2\n  warmup_ratio: 0.1\n")
    d = derived(tmp_path, "sequence: {packing: false, max_length: 128}\n",
                base.replace("    - path: data/chat.jsonl\n", "    - path: data/chat.jsonl\n  eval_split: 0.1\n"))
    # 100 rows, 10 held out → 90 rows × 2 epochs / 4 per step = 45 steps; warmup ceil(4.5) = 5
    assert (d["rows"], d["total_steps"], d["warmup_steps"]) == (90, 45, 5)
    assert d["total_tokens"] == 45 * 4 * 128


def test_steps_with_packing_are_left_to_prepare(tmp_path: Path) -> None:
    d = derived(tmp_path, "")
    assert d["total_steps"] is None and d["warmup_steps"] is None and d["rows"] == 100
    d = derived(tmp_path, "sequence: {max_length: 256}\n",
                BASE_CONFIG.replace("  precision: fp32\n", "  precision: fp32\n  max_steps: 30\n  warmup_steps: 3\n"))
    assert (d["total_steps"], d["warmup_steps"], d["total_tokens"]) == (30, 3, 30 * 256)


@pytest.mark.parametrize("extra,launcher,ds,acc", [
    ("", "python", None, None),
    ("target: {kind: multi_gpu, num_gpus: 4}\n", "torchrun", None, None),
    ("deepspeed: {stage: 3}\ntarget: {kind: multi_gpu, num_gpus: 8}\n", "torchrun", "ds_config.json", None),
    ("fsdp: {enabled: true}\ntarget: {kind: multi_gpu, num_gpus: 8}\n", "accelerate", None, "accelerate.yaml"),
    ("target: {kind: multi_node, num_gpus: 8, nodes: 2}\n", "torchrun", None, None),
])
def test_launcher(tmp_path: Path, extra: str, launcher: str, ds: str | None, acc: str | None) -> None:
    r = plan_of(make_project(tmp_path, with_keys(extra, GPU_BASE)))
    launch = r.plan["launch"]
    assert (launch["launcher"], launch["deepspeed_config"], launch["accelerate_config"]) == (launcher, ds, acc)
    assert ("deepspeed" in r.plan["versions"]) == (ds is not None)


def test_cpu_launch(tmp_path: Path) -> None:
    p = plan_of(make_project(tmp_path)).plan
    assert p["launch"] == {"target": "local", "launcher": "python", "nodes": 1, "gpus_per_node": 0,
                           "deepspeed_config": None, "accelerate_config": None}
    assert p["derived"]["world_size"] == 1
    assert p["versions"]["torch"] == "2.13.0" and p["versions"]["python"].startswith(">=")


def test_source_records_config_as_given(tmp_path: Path) -> None:
    cfg = make_project(tmp_path)
    src = plan_of(cfg, tmp_path / "run").plan["source"]
    assert src["file"] == "cfg.yaml" and src["dialect"] == "loft"
    assert src["sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
    assert src["config"]["model"] == {"base": "./models/tiny"}
    assert plan_of(cfg).plan["source"]["file"] == "cfg.yaml"


def test_plan_is_identical_from_other_cwd_location_and_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a" / "proj"
    b = tmp_path / "elsewhere" / "deeper" / "proj"
    make_project(a)
    shutil.copytree(a, b)
    monkeypatch.chdir(tmp_path)
    pa = pipeline.build(a / "cfg.yaml", a / "run")
    monkeypatch.chdir(b / "data")
    pb = pipeline.build("../cfg.yaml", "../run")
    assert pa == pb
    from loft.compiler.bundle import read_files

    fa, fb = read_files(a / "run"), read_files(b / "run")
    assert fa == fb and "plan.lock" in fa
    # and again later, over the existing bundle
    pipeline.build(a / "cfg.yaml", a / "run")
    assert read_files(a / "run") == fa


def test_axolotl_config_goes_through_the_same_resolve(tmp_path: Path) -> None:
    pytest.importorskip("loft.compiler.dialects.axolotl")
    make_project(tmp_path)
    cfg = tmp_path / "ax.yml"
    cfg.write_text("base_model: ./models/tiny\nchat_template: llama3\ndatasets:\n  - path: data/chat.jsonl\n"
                   "    type: chat_template\nmicro_batch_size: 2\nnum_epochs: 1\nlearning_rate: 0.0002\n"
                   "adapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\nsequence_len: 256\n"
                   "output_dir: ./outputs\n")
    r = plan_of(cfg, tmp_path / "run")
    assert r.plan["source"]["dialect"] == "axolotl"
    assert r.plan["config"]["adapter"]["r"] == 8 and r.plan["data"]["datasets"][0]["rows"] == 10


def test_tiny_model_config_fixture_is_sane() -> None:
    assert TINY_MODEL_CONFIG["hidden_size"] // TINY_MODEL_CONFIG["num_attention_heads"] == TINY_MODEL_CONFIG["head_dim"]


def test_template_errors_point_at_the_template_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, BASE_CONFIG.replace("template: llama3.2", "template: lama3.2")))
    d = e.value.diagnostics[0]
    assert d.key.startswith("template") and (d.line, d.col) == (8, 1) and d.file.endswith("cfg.yaml")


def test_template_file_is_bundled_under_its_fixed_name(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("template: llama3.2", "template: ../shared_tpl/t.jinja")
    text = text.replace("data:\n", "data:\n  allow_paths: [../shared_tpl]\n")  # outside the config's folder
    cfg = make_project(tmp_path / "proj", text)
    src = Path(models.__file__).resolve().parent.parent / "chat_templates" / "llama3.2.jinja"
    (tmp_path / "shared_tpl").mkdir()
    shutil.copy(src, tmp_path / "shared_tpl" / "t.jinja")
    r = plan_of(cfg, tmp_path / "proj" / "run")
    assert r.plan["template"]["source"] == "file" and r.plan["config"]["template"] == "chat_template.jinja"
    assert r.attachments["chat_template.jinja"] == src.read_bytes()


def test_tokenizer_in_the_model_directory_is_not_copied_twice(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  tokenizer: ./models/tiny\n")
    r = plan_of(make_project(tmp_path, text), tmp_path / "run")
    assert r.plan["config"]["model"]["tokenizer"] == "model"
    assert not any(k.startswith("tokenizer/") for k in r.attachments)


def test_a_typo_in_a_local_path_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    # `models/` exists next to the config, so `models/tinyy` is a missing directory, not hub org "models"
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, BASE_CONFIG.replace("base: ./models/tiny", "base: models/tinyy")))
    assert e.value.diagnostics[0].code == "missing-file" and e.value.diagnostics[0].key == "model.base"
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, BASE_CONFIG.replace("path: data/chat.jsonl", "path: data/chat")))
    assert e.value.diagnostics[0].key == "data.datasets[0].path"


def test_revision_of_a_local_model_is_dropped_with_a_warning(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("  base: ./models/tiny\n", "  base: ./models/tiny\n  revision: abc1234\n")
    r = plan_of(make_project(tmp_path, text))
    assert r.plan["model"]["revision"] is None and r.plan["config"]["model"]["revision"] is None
    assert "revision-ignored" in codes(r)


def test_axolotl_diagnostics_point_at_the_axolotl_keys(tmp_path: Path) -> None:
    pytest.importorskip("loft.compiler.dialects.axolotl")
    make_project(tmp_path)
    ax = ("base_model: ./models/tiny\nchat_template: llama3\ndatasets:\n  - path: data/chat.jsonl\n"
          "    type: chat_template\nmicro_batch_size: 2\nnum_epochs: 1\nlearning_rate: 0.0002\nadapter: lora\n"
          "lora_r: 8\nlora_alpha: 200\nlora_target_linear: true\nsequence_len: 256\n")
    cfg = tmp_path / "ax.yml"
    cfg.write_text(ax)
    w = next(w for w in plan_of(cfg).warnings if w.code == "lora-alpha-ratio")
    assert (w.file, w.line, w.col) == (str(cfg), 11, 1)
    cfg.write_text(ax.replace("sequence_len: 256", "sequence_len: 8"))
    with pytest.raises(ConfigError) as e:
        plan_of(cfg)
    d = e.value.diagnostics[0]
    assert d.key == "sequence.max_length" and (d.line, d.col) == (13, 1)
    cfg.write_text(ax.replace("data/chat.jsonl", "data/gone.jsonl"))
    with pytest.raises(ConfigError) as e:
        plan_of(cfg)
    assert (e.value.diagnostics[0].line, e.value.diagnostics[0].col) == (4, 5)


def test_evals_and_saves_per_epoch_become_steps_when_known(tmp_path: Path) -> None:
    base = BASE_CONFIG.replace("  precision: fp32\n", "  precision: fp32\n  micro_batch_size: 4\n  evals_per_epoch: 4\n"
                               "  saves_per_epoch: 2\n  epochs: 3\n")
    cfg = make_project(tmp_path, base + "sequence: {packing: false}\n", rows=100)
    t = plan_of(cfg).plan["config"]["training"]
    assert (t["eval_steps"], t["save_steps"]) == (25 // 4, 25 // 2)  # 100 rows / 4 = 25 steps per epoch
    cfg = make_project(tmp_path / "packed", base, rows=100)  # packing: epoch length known only after prepare
    t = plan_of(cfg).plan["config"]["training"]
    assert (t["eval_steps"], t["save_steps"]) == (None, None)


def test_paths_in_a_data_file_are_relative_to_it(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("  datasets:\n    - path: data/chat.jsonl\n", "  config: data/mix.yaml\n")
    cfg = make_project(tmp_path, text, rows=7)
    (tmp_path / "data" / "mix.yaml").write_text("datasets:\n  - path: chat.jsonl\n  - path: org/hub-data\n"
                                                "    revision: 0123abc\n")
    r = plan_of(cfg, tmp_path / "run")
    got = [(d["source"], d["path"], d["rows"]) for d in r.plan["data"]["datasets"]]
    assert got == [("local", "data/chat.jsonl", 7), ("hub", "org/hub-data", None)]


@pytest.mark.parametrize("weights,epochs,temperature,subset,eval_split", [
    ((1.0, 1.0), (1, 1), 1.0, None, 0.0),
    ((3.0, 1.0), (2, 1), 1.0, None, 0.1),
    ((1.0, 0.5), (1, 0.5), 4.0, 30, 3),
])
def test_derived_rows_follow_the_runtime_blend(tmp_path: Path, weights: tuple[float, float],
                                               epochs: tuple[float, float], temperature: float,
                                               subset: int | None, eval_split: float | int) -> None:
    from loft.runtime import blend_counts

    text = BASE_CONFIG.replace("    - path: data/chat.jsonl\n", (
        f"    - path: data/chat.jsonl\n      weight: {weights[0]}\n      epochs: {epochs[0]}\n"
        + (f"      subset: {subset}\n" if subset is not None else "")
        + f"    - path: data/small.jsonl\n      weight: {weights[1]}\n      epochs: {epochs[1]}\n"
        f"  eval_split: {eval_split}\n  temperature: {temperature}\n"))
    cfg = make_project(tmp_path, text, rows=100)
    (tmp_path / "data" / "small.jsonl").write_text((tmp_path / "data" / "chat.jsonl").read_text().split("\n", 40)[-1])
    rows = plan_of(cfg).plan["derived"]["rows"]
    n0 = min(100, subset) if subset is not None else 100
    n1 = 60
    take = (lambda n: round(n * eval_split)) if isinstance(eval_split, float) else (lambda n: min(n, eval_split))
    sizes = {"chat": n0 - take(n0), "small": n1 - take(n1)}
    expected = blend_counts.counts(sizes, {"chat": weights[0], "small": weights[1]},
                            {"chat": epochs[0], "small": epochs[1]}, temperature)
    assert rows == sum(expected.values())


# published parameter counts (model cards), in billions; Gemma 3 4B+ without the ~0.4B vision tower
PUBLISHED = {
    "Qwen/Qwen2.5-0.5B": 0.49, "Qwen/Qwen2.5-7B": 7.61, "Qwen/Qwen2.5-72B": 72.7, "Qwen/Qwen3-0.6B": 0.6,
    "Qwen/Qwen3-8B": 8.2, "Qwen/Qwen3-32B": 32.8, "Qwen/Qwen3-30B-A3B": 30.5, "meta-llama/Llama-3.2-1B": 1.24,
    "meta-llama/Llama-3.2-3B": 3.21, "meta-llama/Llama-3.1-8B": 8.03, "meta-llama/Llama-3.1-70B": 70.6,
    "meta-llama/Llama-3.1-405B": 405.9, "mistralai/Mistral-7B-v0.3": 7.25, "mistralai/Mistral-Nemo-Base-2407": 12.2,
    "google/gemma-2-2b": 2.61, "google/gemma-2-9b": 9.24, "google/gemma-2-27b": 27.2, "google/gemma-3-1b-pt": 1.0,
    "google/gemma-3-27b-pt": 27.0, "microsoft/Phi-3.5-mini-instruct": 3.82, "microsoft/phi-4": 14.7,
    "HuggingFaceTB/SmolLM2-135M": 0.135, "HuggingFaceTB/SmolLM2-1.7B": 1.71, "HuggingFaceTB/SmolLM3-3B": 3.08,
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": 1.1,
}


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_catalog_facts_give_the_published_parameter_count(hub_id: str) -> None:
    from loft.compiler.estimate.params import count_params

    facts = models.lookup(hub_id)
    assert facts is not None
    n = count_params(facts)
    assert n is not None and abs(n / 1e9 - PUBLISHED[hub_id]) / PUBLISHED[hub_id] < 0.03, (hub_id, n)


# --- robustness: valid settings in any combination resolve, and the batch arithmetic holds -------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(adapter=st.sampled_from(["none", "lora", "qlora"]), packing=st.booleans(),
       micro=st.sampled_from([1, 2, 8, "auto"]), glob=st.sampled_from([None, 16, 64]),
       gpus=st.sampled_from([1, 2, 8]), nodes=st.sampled_from([1, 2]), stage=st.sampled_from([0, 2, 3]),
       max_steps=st.sampled_from([None, 5]), max_length=st.sampled_from([128, "auto"]))
def test_any_valid_combination_resolves(tmp_path_factory: pytest.TempPathFactory, adapter: str, packing: bool,
                                        micro: int | str, glob: int | None, gpus: int, nodes: int, stage: int,
                                        max_steps: int | None, max_length: int | str) -> None:
    kind = "multi_node" if nodes > 1 else "multi_gpu" if gpus > 1 else "local"
    text = GPU_BASE + (
        f"adapter: {{type: {adapter}}}\nsequence: {{packing: {str(packing).lower()}, max_length: {max_length}}}\n"
        f"training: {{micro_batch_size: {micro}, global_batch_size: {glob if glob else 'null'}, "
        f"max_steps: {max_steps or 'null'}, learning_rate: 1.0e-5}}\n"
        f"deepspeed: {{stage: {stage}}}\ntarget: {{kind: {kind}, num_gpus: {gpus}, nodes: {nodes}}}\n")
    cfg = make_project(tmp_path_factory.mktemp("combo"), text, rows=50)
    try:
        p = plan_of(cfg).plan
    except ConfigError as e:  # only the batch arithmetic may refuse a combination
        assert {d.code for d in e.diagnostics} == {"batch"}
        return
    d = p["derived"]
    assert d["world_size"] == gpus * nodes
    if isinstance(micro, int) and glob is not None:
        assert d["global_batch_size"] == glob == micro * d["gradient_accumulation_steps"] * gpus * nodes
    if max_steps:
        assert d["total_steps"] == max_steps
    assert p["launch"]["launcher"] == ("python" if gpus * nodes == 1 and stage == 0 else "torchrun")


def test_a_bundle_inside_a_dataset_folder_is_not_part_of_the_data(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG.replace("path: data/chat.jsonl", "path: data/"))
    first = pipeline.build(cfg, tmp_path / "data" / "run")
    assert pipeline.build(cfg, tmp_path / "data" / "run") == first  # the first bundle did not become data
    assert sorted(k for k in plan_of(cfg, tmp_path / "data" / "run").attachments if k.startswith("data/")) == [
        "data/data/chat.jsonl"]


def test_several_missing_datasets_are_all_reported(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("    - path: data/chat.jsonl\n", "    - path: data/a.jsonl\n    - path: data/chat.jsonl\n"
                               "    - path: data/b.jsonl\n")
    with pytest.raises(ConfigError) as e:
        plan_of(make_project(tmp_path, text), tmp_path / "run")
    assert [d.key for d in e.value.diagnostics] == ["data.datasets[0].path", "data.datasets[2].path"]


def test_global_batch_not_a_multiple_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        derived(tmp_path, "training: {micro_batch_size: 3, global_batch_size: 64}\n", GPU_BASE)
    assert len(e.value.diagnostics) == 1 and "not a multiple of" in e.value.diagnostics[0].message


def _leaf_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, sub in node.get("properties", {}).items():
            p = f"{prefix}.{k}" if prefix else k
            if "properties" in sub and sub.get("type") == "object":
                walk(sub, p)
            elif not p.startswith(("data.", "model.base", "model.tokenizer", "sweep", "tracking", "template",
                                   "name", "output_dir", "loft", "model.special_tokens", "export.push_to_hub",
                                   "fsdp.transformer_layer_cls")):
                out[p] = sub

    walk(load_schema(), "")
    return out


LEAVES = _leaf_schemas()


def _value(sub: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "enum" in sub:
        return st.sampled_from(sub["enum"])
    if "anyOf" in sub:
        return st.one_of(*[_value(b) for b in sub["anyOf"]])
    if "const" in sub:
        return st.just(sub["const"])
    types = sub.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    options: list[st.SearchStrategy[Any]] = []
    lo = sub.get("minimum", sub.get("exclusiveMinimum", 0))
    hi = sub.get("maximum", sub.get("exclusiveMaximum", 1000))
    if "integer" in types:
        options.append(st.integers(int(lo) + ("exclusiveMinimum" in sub), min(int(hi), int(lo) + 64)))
    elif "number" in types:
        options.append(st.floats(float(lo), float(hi), exclude_min="exclusiveMinimum" in sub,
                                 exclude_max="exclusiveMaximum" in sub, allow_nan=False))
    if "boolean" in types:
        options.append(st.booleans())
    if "null" in types:
        options.append(st.none())
    if "array" in types and sub.get("items", {}).get("enum"):
        options.append(st.lists(st.sampled_from(sub["items"]["enum"]), min_size=1, max_size=2, unique=True))
    return st.one_of(*options) if options else st.just(sub.get("default"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_schema_valid_setting_compiles_or_is_refused_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                                                 data: st.DataObject) -> None:
    import yaml

    root = tmp_path_factory.mktemp("fuzz")
    cfg_dict = yaml.safe_load(BASE_CONFIG)
    for key in data.draw(st.lists(st.sampled_from(sorted(LEAVES)), min_size=1, max_size=6, unique=True)):
        node = cfg_dict
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = data.draw(_value(LEAVES[key]), label=key)
    cfg = make_project(root, yaml.safe_dump(cfg_dict, sort_keys=False), rows=20)
    try:
        the_plan, files = pipeline.compile(cfg, root / "run")
    except ConfigError as e:
        assert all(d.message for d in e.diagnostics)
        return
    assert "plan.lock" in files and json.loads(files["plan.lock"]) == json.loads(json.dumps(the_plan))


def test_cosine_with_min_lr_locks_its_floor(tmp_path: Path) -> None:
    """The runtime reads min_lr_ratio strictly: the compiler writes the 0.1 floor when the config gives none."""
    cfg = BASE_CONFIG.replace("  optimizer: adamw_torch\n", "  optimizer: adamw_torch\n  lr_scheduler: cosine_with_min_lr\n")
    r = plan_of(make_project(tmp_path, cfg))
    assert r.plan["config"]["training"]["min_lr_ratio"] == 0.1
