"""write_bundle: manifest, modes, atomic replace, refusing foreign directories, keeping run outputs."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
from loft.compiler import bundle
from loft.compiler.bundle import MANIFEST, parse_manifest, write_bundle
from loft.compiler.errors import ConfigError
from loft.compiler.render import render_bundle

from tests.compiler.plan_fixture import sample_plan, with_sweep


def _files() -> dict[str, bytes]:
    return render_bundle(sample_plan(), {"chat_template.jinja": b"tmpl", "data/chat.jsonl": b'{"a": 1}\n'})


def test_manifest_covers_every_file_sorted(tmp_path: Path) -> None:
    files = _files()
    run = tmp_path / "run"
    write_bundle(run, files, force=False)
    text = (run / MANIFEST).read_text()
    lines = text.splitlines()
    assert [ln.split("  ", 1)[1] for ln in lines] == sorted(files)
    for rel, digest in parse_manifest(text).items():
        assert hashlib.sha256((run / rel).read_bytes()).hexdigest() == digest
    assert MANIFEST not in parse_manifest(text)
    assert stat.S_IMODE((run / "launch.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((run / "plan.lock").stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.loft-")]


def test_same_files_give_identical_bytes_anywhere(tmp_path: Path) -> None:
    write_bundle(tmp_path / "a" / "run", _files(), force=False)
    write_bundle(tmp_path / "b" / "deeper" / "run2", _files(), force=False)
    a, b = bundle.read_files(tmp_path / "a" / "run"), bundle.read_files(tmp_path / "b" / "deeper" / "run2")
    assert a == b and MANIFEST in a


def test_refuses_foreign_directory_unless_forced(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as e:
        write_bundle(run, _files(), force=False)
    assert "not a loft bundle" in e.value.render() and "--force" in e.value.render()
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    write_bundle(run, _files(), force=True)
    assert (run / "notes.txt").read_text() == "mine" and (run / "plan.lock").is_file()


def test_empty_directory_is_fine(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    write_bundle(tmp_path / "run", _files(), force=False)
    assert bundle.is_bundle(tmp_path / "run")


def test_rebuild_keeps_outputs_and_drops_stale_bundle_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    files = _files()
    files["ds_config.json"] = b"{}\n"
    write_bundle(run, files, force=False)
    ckpt = run / "out" / "checkpoints" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (run / "nohup.out").write_text("log")
    write_bundle(run, _files(), force=False)
    assert (ckpt / "model.safetensors").read_bytes() == b"weights"
    assert (run / "nohup.out").read_text() == "log"
    assert not (run / "ds_config.json").exists()  # written by the old bundle, not by this one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_write_leaves_existing_bundle_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    write_bundle(run, _files(), force=False)
    (run / "out").mkdir()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    real = bundle._write_file
    calls = {"n": 0}

    def flaky(path: Path, data: bytes, mode: int) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        real(path, data, mode)

    monkeypatch.setattr(bundle, "_write_file", flaky)
    changed = _files()
    changed["plan.md"] = b"new\n"
    with pytest.raises(OSError):
        write_bundle(run, changed, force=False)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before and (run / "out").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_failed_swap_restores_old_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    write_bundle(run, _files(), force=False)
    (run / "out").mkdir()
    (run / "out" / "metrics.jsonl").write_text("{}\n")
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(dst)) == run and ".loft-new-" in str(src):
            raise OSError(16, "Device or resource busy")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle.os, "rename", rename)
    with pytest.raises(OSError):
        write_bundle(run, _files(), force=False)
    assert (run / "out" / "metrics.jsonl").read_text() == "{}\n" and bundle.is_bundle(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_out_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        write_bundle(tmp_path / "run", _files(), force=False)


def test_launch_sh_usage_and_bad_stage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_bundle(run, _files(), force=False)
    assert subprocess.run(["bash", "-n", str(run / "launch.sh")]).returncode == 0
    bad = subprocess.run(["bash", str(run / "launch.sh"), "badstage"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown stage 'badstage'" in bad.stderr and "usage:" in bad.stderr
    two = subprocess.run(["bash", str(run / "launch.sh"), "train", "eval"], capture_output=True, text=True)
    assert two.returncode == 2
    env = {**os.environ, "LOFT_TRIAL": "3"}
    trial = subprocess.run(["bash", str(run / "launch.sh"), "prepare"], capture_output=True, text=True, env=env)
    assert trial.returncode == 2 and "LOFT_TRIAL=3" in trial.stderr


def test_launch_sh_preflight_names_requirements(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_bundle(run, _files(), force=False)
    fake = tmp_path / "python3"
    fake.write_text("#!/usr/bin/env bash\necho 'torch peft'\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    r = subprocess.run(["bash", str(run / "launch.sh"), "prepare"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "torch peft" in r.stderr and "requirements.lock" in r.stderr


def test_launch_sh_runs_stages_from_any_cwd(tmp_path: Path) -> None:
    """A fake interpreter records each call: all = the plan's stages, in order, with the bundle's path."""
    run = tmp_path / "run"
    write_bundle(run, _files(), force=False)
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    os.rename(run, moved)  # like scp -r run/ box:
    log = tmp_path / "calls.log"
    fake = tmp_path / "py"
    fake.write_text(f'#!/usr/bin/env bash\nif [[ "$1" == - ]]; then cat >/dev/null; exit 0; fi\n'
                    f'echo "$PYTHONPATH|$*" >> {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "PYTHONPATH": "", "LOFT_EVAL_VENV": str(tmp_path / "vllm-env")}
    r = subprocess.run(["bash", "elsewhere/copy/launch.sh"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    calls = [c for c in log.read_text().splitlines() if "-m venv" not in c]  # (vLLM's own env, for eval)
    real = str(moved.resolve())
    assert calls == [f"{real}|-m loft.runtime.check {real} --stage all"] + [
        f"{real}|-m loft.runtime {s} {real}" for s in ("prepare", "train", "eval", "merge", "export")]
    env["LOFT_TRIAL"] = "0"
    log.unlink()
    subprocess.run(["bash", str(moved / "launch.sh"), "train"], env=env, check=True, capture_output=True)
    assert log.read_text().splitlines() == [f"{real}|-m loft.runtime.check {real} --stage train",
                                            f"{real}|-m loft.runtime train {real} --trial 0"]


def test_launch_sh_says_train_resumes(tmp_path: Path) -> None:
    plan = with_sweep(sample_plan(), [{"adapter.r": 16}, {"adapter.r": 8}])
    run = tmp_path / "run"
    write_bundle(run, render_bundle(plan, {}), force=False)
    fake = tmp_path / "py"
    fake.write_text('#!/usr/bin/env bash\nif [[ "$1" == - ]]; then cat >/dev/null; fi\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    fresh = subprocess.run(["bash", str(run / "launch.sh"), "train"], capture_output=True, text=True, env=env)
    assert fresh.returncode == 0 and "resumes" not in fresh.stderr and "sweep of 2 trials" in fresh.stderr
    (run / "out" / "trial-1" / "checkpoints" / "checkpoint-20").mkdir(parents=True)
    r = subprocess.run(["bash", str(run / "launch.sh"), "train"], capture_output=True, text=True,
                       env={**env, "LOFT_TRIAL": "1"})
    assert r.returncode == 0 and "resumes from the newest complete checkpoint" in r.stderr
    assert "out/trial-1/checkpoints" in r.stderr


def test_symlinked_out_dir_and_bad_paths(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_bundle(real, _files(), force=False)
    (real / "out").mkdir()
    (real / "out" / "keep").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(real)
    write_bundle(link, _files(), force=False)
    assert link.is_symlink() and (real / "out" / "keep").read_text() == "x" and bundle.is_bundle(real)
    with pytest.raises(ValueError, match="plain relative path"):
        write_bundle(tmp_path / "x", {"../escape": b""}, force=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape").exists()
