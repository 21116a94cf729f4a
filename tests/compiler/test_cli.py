"""loftc: exit codes, diagnostics on stderr, --strict, --debug, `loftc schema`, `python -m`, cold imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loft.compiler.cli import main
from loft.compiler.errors import ConfigError
from project_factory import BASE_CONFIG, make_project

ROOT = Path(__file__).resolve().parents[2]


def test_build_ok_writes_a_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path)
    assert main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "plan.lock").read_text())["name"] == "t"
    out, err = capsys.readouterr()
    assert "launch.sh" in out and err == ""


def test_invalid_config_exits_1_with_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG + "adapter:\n  typ: lora\nsequence:\n  max_length: big\n")
    assert main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:15:3: error: adapter.typ: unknown key 'typ'" in err
    assert "did you mean 'type'?" in err
    assert f"{cfg}:17:3: error: sequence.max_length" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,needle", [
    ("loft: 1\nmodel:\n  base: a\n  base: b\n", "duplicate key"),
    ("loft: 1\nmodel: [\n", "invalid YAML"),
    ("", "the file is empty"),
])
def test_bad_yaml_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    assert needle in capsys.readouterr().err


def test_missing_files_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path / "nope.yaml")]) == 1
    assert "no such file" in capsys.readouterr().err
    cfg = make_project(tmp_path, BASE_CONFIG.replace("data/chat.jsonl", "data/gone.jsonl"))
    assert main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:7:7: error: data.datasets[0].path: data file 'data/gone.jsonl' not found" in err


@pytest.mark.parametrize("argv", [[], ["build"], ["frobnicate"], ["build", "x.yaml", "--dialect", "yaml"],
                                  ["build", "x.yaml", "--nope"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("build", "schema"):
        assert cmd in out


def test_warnings_are_printed_and_strict_makes_them_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path, BASE_CONFIG + "adapter:\n  r: 64\n  alpha: 8\n")
    assert main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"{cfg}:16:3: warning: adapter.alpha: LoRA alpha/r" in err
    assert main(["build", str(cfg), "-o", str(tmp_path / "run2"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:16:3: error: adapter.alpha" in err and "--strict" in err
    assert not (tmp_path / "run2").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loft: 1\nmodel: {}\n")
    with pytest.raises(ConfigError):
        main(["--debug", "build", str(cfg)])
    with pytest.raises(ConfigError):
        main(["build", str(cfg), "--debug"])


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path)
    out = tmp_path / "notabundle"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["build", str(cfg), "-o", str(out)]) == 1
    assert (out / "precious.txt").read_text() == "keep me"
    capsys.readouterr()


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].endswith("2020-12/schema") and "training" in schema["properties"]
    assert main(["schema", "--plan"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "loft plan.lock"
    assert main(["schema", "--table"]) == 0
    assert "| `training.learning_rate` | number (> 0, ≤ 1) | `0.0002` |" in capsys.readouterr().out
    assert main(["schema", "--plan", "--table"]) == 2


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_python_dash_m_and_no_training_library_imports(tmp_path: Path) -> None:
    make_project(tmp_path)
    code = ("import sys; from loft.compiler.cli import main; rc = main(['build', 'cfg.yaml', '-o', 'run', '-q']); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'peft', 'deepspeed', 'accelerate', "
            "'numpy') if m in sys.modules); print(rc, heavy)")
    r = run_cli("-c", code, cwd=tmp_path)
    assert r.stdout.strip() == "0 []", r.stderr
    r = run_cli("-m", "loft.compiler", "schema", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["title"] == "loft config"
    r = run_cli("-m", "loft.compiler", "build", "missing.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "missing.yaml: error: no such file" in r.stderr


def test_examples_build(tmp_path: Path) -> None:
    """Every hub-id example compiles offline (quickstart needs the demo's tiny model, built elsewhere)."""
    for name in ("full-ft-zero3-8gpu", "qlora", "sweep", "multinode"):
        assert main(["build", str(ROOT / "examples" / f"{name}.yaml"), "-o", str(tmp_path / name), "-q"]) == 0, name
    plan = json.loads((tmp_path / "sweep" / "plan.lock").read_text())
    assert len(plan["sweep"]["trials"]) == 6
    plan = json.loads((tmp_path / "multinode" / "plan.lock").read_text())
    assert plan["derived"]["world_size"] == 16 and plan["derived"]["gradient_accumulation_steps"] == 8
    plan = json.loads((tmp_path / "full-ft-zero3-8gpu" / "plan.lock").read_text())
    assert plan["launch"]["deepspeed_config"] == "ds_config.json" and plan["derived"]["gradient_accumulation_steps"] == 4
    assert plan["template"]["name"] == "llama3.1"


def test_every_command_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    from loft.compiler.cli import COMMANDS

    for cmd in COMMANDS:
        assert main([cmd, "--help"]) == 0, cmd
        assert f"loftc {cmd}" in capsys.readouterr().out
