"""The bundle's locks: cut from the committed resolver output by what the plan needs, closed, hashed,
one file per CUDA build that has a lock, the vLLM lock apart, and nothing pinned twice or left out."""

from __future__ import annotations

import json
import re

import pytest
from loft.compiler import locks
from loft.compiler.errors import ConfigError
from loft.compiler.render import render_bundle

from tests.compiler.plan_fixture import sample_plan, set_key

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = _PIN.match(line)
        if m:
            out[locks.normalize(m.group(1))] = m.group(2)
    return out


def _files(plan: dict) -> dict[str, str]:
    return {k: v.decode() for k, v in render_bundle(plan, {}).items() if k.startswith("requirements")}


def test_committed_train_lock_is_whole_and_hashed() -> None:
    lock = locks.load("train-cu130")
    assert lock is not None, "targets/locks/train-cu130.txt missing: run `make lock`"
    names = [e.name for e in lock.entries]
    req = locks.requirements()
    for pkg, version in {**req["packages"], **req["optional"]}.items():
        assert _pins("".join(e.text for e in lock.entries))[locks.normalize(pkg)] == version
    assert all("--hash=sha256:" in e.text for e in lock.entries)
    assert len(names) == len(set(names)) or all(";" in e.text.splitlines()[0] for e in lock.entries)
    # every package the lock names as a parent is pinned in it: the lock is closed
    parents = {v for e in lock.entries for v in e.via if not v.startswith("-r")}
    assert parents <= set(names)
    assert not any("/tmp" in h or "/work" in h for h in lock.header)


def test_closure_follows_via_and_rejects_unknown_roots() -> None:
    lock = locks.parse(
        "--index-url https://pypi.org/simple\n--extra-index-url https://download.pytorch.org/whl/cu128\n"
        "a==1 \\\n    --hash=sha256:aa\n    # via -r x.in\n"
        "b==2 \\\n    --hash=sha256:bb\n    # via\n    #   a\n    #   z\n"
        "c==3 \\\n    --hash=sha256:cc\n    # via b\n"
        "z==9 \\\n    --hash=sha256:zz\n    # via -r x.in\n")
    assert [e.name for e in locks.closure(lock, {"a"})] == ["a", "b", "c"]
    assert [e.name for e in locks.closure(lock, {"z"})] == ["b", "c", "z"]
    text = locks.cut(lock, {"a"}, ["title"])
    assert text.startswith("# title\n--extra-index-url https://download.pytorch.org/whl/cu128\n")  # PyPI: default
    assert "z" not in _pins(text) and "#   z" not in text and "# via a" in text
    with pytest.raises(ValueError, match="no pin for nope"):
        locks.closure(lock, {"nope"})


def test_plain_lora_plan_gets_only_what_it_needs() -> None:
    req = _files(sample_plan())["requirements.lock"]
    pins = _pins(req)
    assert pins["torch"] == "2.13.0" and pins["transformers"] == "5.24.0" and "nvidia-nccl-cu13" in pins
    for absent in ("deepspeed", "bitsandbytes", "wandb", "liger-kernel", "cut-cross-entropy", "flash-attn", "vllm"):
        assert absent not in pins
    assert "--index-url" not in req and "CUDA 13.0" in req  # PyPI is pip's default (a mirror may stand in)


def test_plan_features_add_their_packages() -> None:
    plan = sample_plan()
    cfg = plan["config"]
    cfg["adapter"]["type"] = "qlora"
    cfg["deepspeed"]["stage"] = 2
    cfg["tracking"] = {"wandb": {"project": "p", "mode": "offline"}}
    cfg["training"]["kernels"] = {"liger": True, "cut_cross_entropy": True}
    cfg["model"]["attn_implementation"] = "flash_attention_2"
    files = _files(plan)
    pins = _pins(files["requirements.lock"])
    assert pins["bitsandbytes"] == "0.50.2"  # ships libbitsandbytes_cuda130 (0.45.5 had no CUDA 13 build)
    for pkg in ("deepspeed", "wandb", "liger-kernel", "cut-cross-entropy", "einops", "ninja"):
        assert pkg in pins
    assert "flash-attn" not in pins  # a source build, installed apart with --no-build-isolation
    assert list(_pins(files["requirements/flash-attn.lock"])) == ["flash-attn"]
    index = json.loads(files["requirements/locks.json"])
    assert index["flash_attn"] == "requirements/flash-attn.lock"


def test_vllm_lock_is_apart_and_only_for_gpu_plans_that_may_use_it() -> None:
    plan = sample_plan()
    files = _files(plan)
    vllm = _pins(files["requirements/eval-vllm.lock"])
    train = _pins(files["requirements.lock"])
    assert vllm["vllm"] == "0.33.0" and vllm["torch"] != train["torch"]  # its own torch, never backtracked
    assert "vllm" not in train
    for change in ({"backend": "transformers"}, {"enabled": False}):
        p = sample_plan()
        p["config"]["eval"].update(change)
        assert "requirements/eval-vllm.lock" not in _files(p)
    cpu = sample_plan(launch={**sample_plan()["launch"], "gpus_per_node": 0})
    assert "requirements/eval-vllm.lock" not in _files(cpu)


def test_locks_index_names_every_build_and_what_is_missing() -> None:
    index = json.loads(_files(sample_plan())["requirements/locks.json"])
    builds = index["builds"]
    assert set(builds) == set(locks.requirements()["cuda_builds"])
    assert index["default"] == "cu130" and builds["cu130"]["file"] == "requirements.lock"
    for name, b in builds.items():
        if b["file"] is None:
            assert "make lock" in b["missing"] and name in b["missing"]


def test_target_cuda_pins_one_build() -> None:
    plan = set_key(sample_plan(), "config.target.cuda", "13.0")
    index = json.loads(_files(plan)["requirements/locks.json"])
    assert list(index["builds"]) == ["cu130"] and index["target_cuda"] == "13.0"
    if locks.load("train-cu128") is None:  # not generated where the PyTorch index is unreachable
        with pytest.raises(ConfigError, match=r"no package lock for CUDA 12\.8") as e:
            _files(set_key(sample_plan(), "config.target.cuda", "12.8"))
        assert e.value.diagnostics[0].key == "target.cuda" and "make lock" in str(e.value.diagnostics[0].hint)
