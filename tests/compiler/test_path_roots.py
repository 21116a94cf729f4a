"""Only what the user meant enters the bundle: local datasets, models, tokenizers, templates and blocklists
must be regular files/dirs under the config's folder (or data.allow_paths / LOFT_ALLOW_PATHS); symlinks are
resolved first; devices and FIFOs are refused. Each refusal is an exit-1 error at the key's line:col."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loft.compiler import cli

from tests.compiler.project_factory import BASE_CONFIG, make_project


def _build(cfg: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(["build", str(cfg), "-o", str(out)])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(("old", "new", "key"), [
    ("path: data/chat.jsonl", "path: /etc/passwd", "data.datasets[0].path"),
    ("base: ./models/tiny", "base: /", "model.base"),
    ("path: data/chat.jsonl", "path: ../outside.jsonl", "data.datasets[0].path"),
])
def test_paths_outside_the_config_folder_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     old: str, new: str, key: str) -> None:
    (tmp_path / "outside.jsonl").write_text('{"messages": []}\n')
    cfg = make_project(tmp_path / "proj", BASE_CONFIG.replace(old, new))
    rc, err = _build(cfg, tmp_path / "run", capsys)
    assert rc == 1 and f"error: {key}: " in err and "outside the config's folder" in err, err
    assert "allow_paths" in err and not (tmp_path / "run").exists()


def test_allow_paths_lets_a_folder_in_on_purpose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "a"}, '
                                       '{"role": "assistant", "content": "b"}]}\n')
    text = BASE_CONFIG.replace("path: data/chat.jsonl", "path: ../shared/chat.jsonl")
    text = text.replace("data:\n", "data:\n  allow_paths: [../shared]\n")
    cfg = make_project(tmp_path / "proj", text)
    rc, err = _build(cfg, tmp_path / "run", capsys)
    assert rc == 0, err
    assert (tmp_path / "run" / "data" / "chat.jsonl").read_bytes() == (shared / "chat.jsonl").read_bytes()


def test_a_symlink_that_leaves_the_root_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret\n")
    cfg = make_project(tmp_path / "proj")
    (tmp_path / "proj" / "models" / "tiny" / "leak.txt").symlink_to(secret)
    rc, err = _build(cfg, tmp_path / "run", capsys)
    assert rc == 1 and "model.base" in err and "symlinks that leave" in err and "leak.txt" in err, err
    (tmp_path / "proj" / "models" / "tiny" / "leak.txt").unlink()
    (tmp_path / "proj" / "data" / "chat.jsonl").rename(tmp_path / "real.jsonl")
    (tmp_path / "proj" / "data" / "chat.jsonl").symlink_to(tmp_path / "real.jsonl")
    rc, err = _build(cfg, tmp_path / "run", capsys)
    assert rc == 1 and "data.datasets[0].path" in err and "-> " in err, err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_dataset_is_refused_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_project(tmp_path / "proj", BASE_CONFIG.replace("path: data/chat.jsonl", "path: data/pipe.jsonl"))
    os.mkfifo(tmp_path / "proj" / "data" / "pipe.jsonl")
    rc, err = _build(cfg, tmp_path / "run", capsys)  # would block forever in sha256 if opened
    assert rc == 1 and "not a regular file" in err and "cfg.yaml:" in err, err


def test_a_device_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    cfg = make_project(tmp_path / "proj", BASE_CONFIG.replace("path: data/chat.jsonl", "path: /dev/zero")
                       .replace("data:\n", "data:\n  allow_paths: [/dev]\n"))
    rc, err = _build(cfg, tmp_path / "run", capsys)
    assert rc == 1 and "not a regular file" in err, err
