"""Hostile values stay inert: every rendered script of every target is run with config values that try to
end a comment, a quote or a command (newline, CR, `$(...)`, backticks, `;`, quotes), and a marker command
hidden in them must never run. Also: names and paths that become file names are refused with the key."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from loft.compiler import cli
from loft.compiler.errors import ConfigError
from loft.compiler.render import _targets, render_bundle
from loft.compiler.resources import data_dir
from ruamel.yaml import YAML

from tests.compiler.plan_fixture import sample_plan, with_sweep
from tests.compiler.project_factory import BASE_CONFIG, make_project


def hostile(marker: Path) -> list[str]:
    """Values that would run `touch MARKER` if pasted into shell (or YAML) source carelessly."""
    m = str(marker)
    return [
        f"x\ntouch {m} #", f"x\rtouch {m} #", f"x\r\ntouch {m}", f"$(touch {m})", f"`touch {m}`",
        f"x; touch {m}", f"x' ; touch {m} ; '", f'x" ; touch {m} ; "', f"x\\\ntouch {m}",
        f"x\u2028touch {m}", f"x\x85run: touch {m}", f"x&&touch {m}|", f"${{IFS}}$(touch {m})",
    ]


FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for python: records what the script asked it to run, imports nothing
printf '%s\\n' "$*" >> "$(dirname "$0")/calls.log"
exit 0
"""
FAKE_SRUN = """#!/usr/bin/env bash
while [[ "${1:-}" == --* ]]; do shift; done
SLURM_NODEID=0 exec "$@"
"""


def _tools(root: Path) -> Path:
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, text in (("python3", FAKE_PYTHON), ("srun", FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _plan(target: str, value: str) -> dict:
    nodes = 2 if target in ("multi_node", "slurm", "skypilot") else 1
    launcher = "accelerate" if target == "multi_node" else ("torchrun" if nodes > 1 or target == "multi_gpu" else "python")
    plan = sample_plan(launch={"target": target, "launcher": launcher, "nodes": nodes, "gpus_per_node": 2,
                               "deepspeed_config": None, "accelerate_config": "accelerate.yaml"
                               if launcher == "accelerate" else None})
    cfg = plan["config"]
    cfg["target"].update(kind=target, nodes=nodes, num_gpus=2, skypilot={"cloud": value, "use_spot": False})
    cfg["output_dir"] = value
    cfg["tracking"] = {"wandb": {"project": value, "mode": "online", "api_key_env": "WANDB_API_KEY"}}
    plan["source"]["file"] = value + ".yaml"
    if target != "slurm":  # #SBATCH lines take plain words only: a hostile name is refused (tested below)
        plan["name"] = value
    return with_sweep(plan, [{}, {"training.learning_rate": 1e-4}])


def _write(files: dict[str, bytes], run: Path) -> None:
    for rel, data in files.items():
        if rel.startswith("loft/"):
            continue
        p = run / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.mark.parametrize("target", [t for t in _targets() if t != "common"])
def test_every_script_of_every_target_runs_with_hostile_values_and_the_marker_never_runs(
        target: str, tmp_path: Path) -> None:
    bin_dir = _tools(tmp_path)
    marker = tmp_path / "PWNED"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(bin_dir / "python3"),
           "NODE_RANK": "0", "SKYPILOT_NODE_RANK": "0", "SKYPILOT_NODE_IPS": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WANDB_API_KEY": "k"}
    for i, value in enumerate(hostile(marker)):
        run = tmp_path / f"run{i}"
        files = render_bundle(_plan(target, value), {})
        _write(files, run)
        scripts = [p for p in ("launch.sh", "slurm.sbatch") if p in files]
        for name in scripts:
            syntax = subprocess.run(["bash", "-n", str(run / name)], capture_output=True, text=True)
            assert syntax.returncode == 0, (name, value, syntax.stderr)
        runs = [["bash", "launch.sh", "--help"], ["bash", "launch.sh", "prepare"], ["bash", "launch.sh", "all"]]
        if "slurm.sbatch" in files:
            runs.append(["bash", "slurm.sbatch"])
        if "sky.yaml" in files:
            sky = YAML(typ="safe", pure=True).load(files["sky.yaml"].decode())
            assert set(sky) <= {"name", "workdir", "num_nodes", "resources", "secrets", "setup", "run", "envs", "file_mounts"}
            assert sky["resources"].get("cloud") == value
            runs.append(["bash", "-c", sky["run"]])
        if "accelerate.yaml" in files:
            acc = YAML(typ="safe", pure=True).load(files["accelerate.yaml"].decode())
            assert "touch" not in repr(acc)
        for cmd in runs:
            proc = subprocess.run(cmd, cwd=run, env={**env, "LOFT_RUN_DIR": str(run)}, capture_output=True,
                                  text=True, timeout=30)
            assert proc.returncode == 0, (cmd, value, proc.stderr)
            assert not marker.exists(), (target, cmd, value)
        calls = (bin_dir / "calls.log").read_text()
        assert f"-m loft.runtime prepare {run}" in calls  # the harmless stage really ran
        (bin_dir / "calls.log").unlink()
        for rel in (*scripts, "sky.yaml", "accelerate.yaml", "requirements.lock"):
            if rel in files:
                comments = [ln for ln in files[rel].decode().splitlines() if ln.lstrip().startswith("#")]
                assert not [ln for ln in comments if str(marker) in ln], (rel, value)


def test_comment_lines_of_templates_hold_no_config_value() -> None:
    """A `{{ }}` on a `#` line may only be a checked integer, loft's own word, an env var name or an
    #SBATCH token: never a quoted config value (its newline would end the comment)."""
    allowed = re.compile(r"\{\{[^}]*\|\s*(shint|shtoken|shname|slurm)\s*-?\}\}")
    root = data_dir("targets")
    bad = []
    for path in sorted(Path(str(root)).rglob("*.j2")):
        if path.name == "plan.md.j2":
            continue  # markdown, never executed
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#") and "{{" in line and allowed.sub("", line).count("{{"):
                bad.append(f"{path.relative_to(root)}:{n}: {line}")
    assert not bad, "\n".join(bad)


def test_slurm_refuses_a_value_it_cannot_write_into_an_sbatch_line() -> None:
    plan = _plan("slurm", "x")
    plan["name"] = "job\n#SBATCH --wrap=touch"
    with pytest.raises(ConfigError) as e:
        render_bundle(plan, {})
    assert e.value.diagnostics[0].code == "bad-slurm-value"
    plan = _plan("slurm", "x")
    plan["config"]["target"]["slurm"] = {"partition": "gpu\n", "account": None, "time": "1:00:00"}
    with pytest.raises(ConfigError):
        render_bundle(plan, {})


def test_env_var_name_with_a_trailing_newline_is_refused() -> None:
    plan = _plan("local", "x")
    plan["config"]["tracking"]["wandb"]["api_key_env"] = "WANDB_API_KEY\n"
    with pytest.raises(ConfigError) as e:
        render_bundle(plan, {})
    assert e.value.diagnostics[0].key == "tracking.wandb.api_key_env"


@pytest.mark.parametrize(("extra", "key", "says"), [
    ("output_dir: \"out\\ntouch PWNED #\"\n", "output_dir", "plain names"),
    ("output_dir: \"out$(touch PWNED)\"\n", "output_dir", "plain names"),
    ("output_dir: /abs/out\n", "output_dir", "inside the bundle"),
    ("output_dir: a/../../b\n", "output_dir", "inside the bundle"),
    ("output_dir: loft\n", "output_dir", "the bundle itself uses"),
    ("output_dir: data/x\n", "output_dir", "the bundle itself uses"),
    ("output_dir: model\n", "output_dir", "the bundle itself uses"),
    ("output_dir: plan.lock\n", "output_dir", "the bundle itself uses"),
])
def test_unsafe_file_names_are_clear_errors_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           extra: str, key: str, says: str) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG + extra)
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    text = capsys.readouterr().err
    assert re.search(rf"cfg\.yaml:\d+:\d+: error: {key}: ", text) and says in text, text
    assert not (tmp_path / "run").exists() and not (tmp_path / "PWNED").exists()


def test_run_name_with_a_trailing_newline_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG.replace("name: t", 'name: "t\\n"'))
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "cfg.yaml:2:1" in err and "name" in err


def test_config_file_name_with_a_newline_builds_an_inert_bundle(tmp_path: Path) -> None:
    cfg = make_project(tmp_path, name="c\ntouch PWNED #.yaml")
    run = tmp_path / "run"
    assert cli.main(["build", str(cfg), "-o", str(run)]) == 0
    bin_dir = _tools(tmp_path)
    proc = subprocess.run(["bash", "launch.sh", "prepare"], cwd=run, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHON": str(bin_dir / "python3")})
    assert proc.returncode == 0, proc.stderr
    assert "-m loft.runtime prepare" in (bin_dir / "calls.log").read_text()
    assert not (tmp_path / "PWNED").exists() and not (run / "PWNED").exists()
