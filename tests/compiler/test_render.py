"""render_bundle: the files each target gets, shell quoting, DeepSpeed/accelerate configs, determinism."""

from __future__ import annotations

import json
import subprocess

import jinja2
import pytest
from loft.compiler import render
from loft.compiler.errors import ConfigError
from loft.compiler.render import canonical_json, ds_config, render_bundle, runtime_files
from loft.compiler.resources import data_dir

from tests.compiler.plan_fixture import sample_plan, set_key, with_sweep


def _launch(target: str, launcher: str, nodes: int, gpus: int, **kw: object) -> dict:
    return {"target": target, "launcher": launcher, "nodes": nodes, "gpus_per_node": gpus,
            "deepspeed_config": kw.get("ds"), "accelerate_config": kw.get("acc")}


def _plan(target: str = "local", launcher: str = "python", nodes: int = 1, gpus: int = 1, **kw: object) -> dict:
    plan = sample_plan(launch=_launch(target, launcher, nodes, gpus, **kw))
    plan["config"]["target"].update(kind=target, nodes=nodes, num_gpus=gpus)
    return plan


def test_local_bundle_files_and_plan_lock_is_canonical() -> None:
    plan = sample_plan()
    files = render_bundle(plan, {"chat_template.jinja": b"{{ x }}", "data/chat.jsonl": b"{}\n"})
    top = sorted(p for p in files if not p.startswith("loft/"))
    assert top == ["chat_template.jinja", "data/chat.jsonl", "launch.sh", "plan.lock", "plan.md",
                   "requirements.lock", "requirements/eval-vllm.lock", "requirements/locks.json", "sweep.jsonl"]
    assert files["plan.lock"] == (json.dumps(plan, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    assert list(files) == sorted(files)
    line = json.loads(files["sweep.jsonl"])  # one line without a sweep: the run itself, fully resolved
    assert (line["trial"], line["overrides"], line["config"], line["derived"]) == (0, {}, plan["config"],
                                                                               plan["derived"])
    assert "MANIFEST.sha256" not in files


def test_runtime_copy_is_the_installed_package() -> None:
    files = render_bundle(sample_plan(), {})
    rt = runtime_files()
    assert "loft/runtime/__init__.py" in rt and "loft/runtime/plan.py" in rt
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in rt)
    src = data_dir("runtime") / "plan.py"
    assert rt["loft/runtime/plan.py"] == src.read_bytes()
    assert {p: files[p] for p in rt} == rt


def test_render_is_deterministic() -> None:
    a = render_bundle(sample_plan(), {"chat_template.jinja": b"t"})
    b = render_bundle(sample_plan(), {"chat_template.jinja": b"t"})
    assert a == b
    for name in ("launch.sh", "plan.md", "requirements.lock"):
        text = a[name].decode()
        assert "/work/" not in text and "/tmp/" not in text


def test_shell_values_are_quoted() -> None:
    plan = set_key(sample_plan(), "name", "x'; rm -rf / #")
    plan["config"]["output_dir"] = "out dir/$(touch pwned)"
    text = render_bundle(plan, {})["launch.sh"].decode()
    assert "OUTPUT_DIR='out dir/$(touch pwned)'" in text
    assert "rm -rf / #" not in text.replace("'x'\"'\"'; rm -rf / #'", "")
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_unquoted_value_in_a_shell_template_fails() -> None:
    env = render._environment(shell=True)
    with pytest.raises(jinja2.TemplateError, match="shquote"):
        env.from_string("echo {{ name }}").render(name="x")
    assert env.from_string("echo {{ name | shquote }}").render(name="a b") == "echo 'a b'"


def test_sandbox_blocks_attribute_escape() -> None:
    env = render._environment(shell=False)
    with pytest.raises(jinja2.exceptions.SecurityError):
        env.from_string("{{ x.__class__.__mro__ }}").render(x="")


def test_deepspeed_zero3_config() -> None:
    plan = set_key(_plan("multi_gpu", "torchrun", 1, 8, ds="ds_config.json"), "config.deepspeed",
                   {"stage": 3, "offload_optimizer": True, "offload_params": True})
    files = render_bundle(plan, {})
    ds = json.loads(files["ds_config.json"])
    assert files["ds_config.json"].decode() == canonical_json(ds)
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
    assert ds["bf16"] == {"enabled": True} and ds["fp16"]["enabled"] is False
    z = ds["zero_optimization"]
    assert z["stage"] == 3 and z["stage3_gather_16bit_weights_on_model_save"] is True
    assert z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert ds["optimizer"]["type"] == "AdamW"  # ZeRO-Offload needs DeepSpeed's CPU Adam
    assert "deepspeed==" in files["requirements.lock"].decode()
    launch = files["launch.sh"].decode()
    assert "--nproc-per-node 8" in launch and "torch.distributed.run" in launch


def test_zero2_has_no_param_offload_and_fp16() -> None:
    plan = set_key(sample_plan(), "config.deepspeed", {"stage": 2, "offload_optimizer": False,
                                                         "offload_params": False})
    plan["config"]["training"]["precision"] = "fp16"
    ds = ds_config(plan)
    assert "offload_param" not in ds["zero_optimization"] and ds["fp16"]["enabled"] is True
    assert "optimizer" not in ds


def test_no_deepspeed_no_ds_config_and_no_deepspeed_requirement() -> None:
    files = render_bundle(sample_plan(), {})
    assert "ds_config.json" not in files
    req = files["requirements.lock"].decode()
    assert "deepspeed" not in req and "bitsandbytes" not in req and "wandb" not in req
    pins = [ln for ln in req.splitlines() if ln and not ln[0].isspace() and not ln.startswith(("#", "-"))]
    assert any(p.startswith("torch==2.13.0 ") for p in pins) and "+cpu" not in req
    names = [p.split("==")[0] for p in pins]
    assert names == sorted(names) and len(pins) > 40  # every transitive package, not 12 tops
    assert req.count("--hash=sha256:") >= len(pins)


def test_fsdp_accelerate_config_and_launch() -> None:
    plan = set_key(_plan("multi_node", "accelerate", 2, 8, acc="accelerate.yaml"), "config.fsdp",
                   {"enabled": True, "sharding": "full_shard", "offload_params": False, "version": 2,
                    "state_dict_type": "sharded", "transformer_layer_cls": ["LlamaDecoderLayer"]})
    files = render_bundle(plan, {})
    acc = files["accelerate.yaml"].decode()
    assert "distributed_type: FSDP" in acc and "fsdp_version: 2" in acc
    assert 'fsdp_state_dict_type: "SHARDED_STATE_DICT"' in acc and "LlamaDecoderLayer" in acc
    assert "num_machines: 2" in acc and "num_processes: 16" in acc
    launch = files["launch.sh"].decode()
    assert "accelerate.commands.launch --config_file \"$RUN_DIR/\"accelerate.yaml" in launch
    assert '--machine_rank "$NODE_RANK"' in launch


def test_multi_node_torchrun_needs_rank_env() -> None:
    launch = render_bundle(_plan("multi_node", "torchrun", 4, 8), {})["launch.sh"].decode()
    assert '--nnodes 4 --node-rank "$NODE_RANK" --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"' in launch
    assert "${NODE_RANK:?" in launch and "${MASTER_ADDR:?" in launch


def test_slurm_and_skypilot_extra_files() -> None:
    files = render_bundle(_plan("slurm", "torchrun", 2, 8), {})
    sb = files["slurm.sbatch"].decode()
    assert "#SBATCH --nodes=2" in sb and "#SBATCH --gpus-per-node=8" in sb and "srun --nodes=2" in sb
    assert subprocess.run(["bash", "-n"], input=sb, text=True).returncode == 0
    plan = _plan("slurm", "torchrun", 1, 8)
    plan["config"]["target"]["slurm"]["partition"] = "gpu\n#SBATCH --uid=0"
    with pytest.raises(ConfigError, match="SBATCH"):
        render_bundle(plan, {})
    sky = render_bundle(_plan("skypilot", "torchrun", 2, 8), {})["sky.yaml"].decode()
    assert 'accelerators: "H100:8"' in sky and "num_nodes: 2" in sky and "SKYPILOT_NODE_RANK" in sky


def test_wandb_online_checks_env_var_name_only() -> None:
    plan = set_key(sample_plan(), "config.tracking.wandb", {"project": "p", "entity": None, "mode": "online",
                                                            "api_key_env": "MY_WANDB_KEY"})
    launch = render_bundle(plan, {})["launch.sh"].decode()
    assert '"${MY_WANDB_KEY:-}"' in launch and "wandb" in launch
    plan["config"]["tracking"]["wandb"]["api_key_env"] = "X; rm -rf ~"
    with pytest.raises(ConfigError, match="environment variable name"):
        render_bundle(plan, {})


def test_stages_follow_the_plan() -> None:
    plan = sample_plan()
    plan["config"]["eval"]["enabled"] = False
    plan["config"]["adapter"]["type"] = "none"
    plan["config"]["export"].update(formats=[], push_to_hub=None)
    assert render.enabled_stages(plan) == ["prepare", "train"]
    launch = render_bundle(plan, {})["launch.sh"].decode()
    assert "    eval) return 0 ;;" not in launch and "    train) return 0 ;;" in launch


def test_unknown_target_and_escaping_attachment() -> None:
    with pytest.raises(ConfigError, match="did you mean"):
        render_bundle(_plan("slurmm"), {})
    with pytest.raises(ConfigError, match="escapes"):
        render_bundle(sample_plan(), {"../evil": b""})


def test_plan_md_has_what_a_reviewer_needs() -> None:
    plan = with_sweep(sample_plan(warnings=[{"code": "unpinned-revision", "key": "model.revision",
                                             "message": "pin it"}]),
                      [{"training.learning_rate": 1e-4}, {"training.learning_rate": 2e-4}])
    md = render_bundle(plan, {})["plan.md"].decode()
    for needle in ("LlamaForCausalLM", "`data/chat.jsonl`", "2,026", "`bbbbbbbbbbbb`", "llama3",
                   "r=16, alpha=32", "0.0002", "1 micro × 8 accumulation × 1 GPU(s) = **8**", "253 steps",
                   "## Estimate", "## Sweep: `bash launch.sh sweep`",
                   "| **total** | 2 trials | | 30.0 min |", "`unpinned-revision`", "pin it"):
        assert needle in md, needle
    assert md.endswith("\n") and "\n\n\n" not in md


@pytest.mark.parametrize("target,launcher,nodes,gpus,fsdp,trials", [
    ("skypilot", "torchrun", 2, 8, False, 3), ("skypilot", "python", 1, 1, False, 1),
    ("multi_gpu", "accelerate", 1, 8, True, 1), ("multi_node", "accelerate", 2, 8, True, 1),
    ("slurm", "torchrun", 4, 8, False, 2),
])
def test_yaml_files_parse_and_scripts_pass_bash_n(target: str, launcher: str, nodes: int, gpus: int,
                                                   fsdp: bool, trials: int) -> None:
    from ruamel.yaml import YAML

    plan = _plan(target, launcher, nodes, gpus, acc="accelerate.yaml" if fsdp else None)
    plan["config"]["fsdp"]["enabled"] = fsdp
    plan = with_sweep(plan, [{"adapter.r": 8 * (i + 1)} for i in range(trials)])
    files = render_bundle(plan, {})
    for name in ("sky.yaml", "accelerate.yaml"):
        if name in files:
            data = YAML(typ="safe").load(files[name].decode())
            assert isinstance(data, dict)
            if name == "sky.yaml":
                assert data["num_nodes"] == nodes and data["resources"]["accelerators"] == f"H100:{gpus}"
            else:
                assert data["num_machines"] == nodes and data["num_processes"] == nodes * gpus
    for name in ("launch.sh", "slurm.sbatch"):
        if name in files:
            assert subprocess.run(["bash", "-n"], input=files[name].decode(), text=True).returncode == 0
