"""Nothing a user had is lost: --force and rebuilds replace only what loft wrote itself (its manifest),
refuse before touching anything when a user's file sits where a bundle file goes, and keep run outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler.bundle import write_bundle
from loft.compiler.errors import ConfigError
from loft.compiler.render import render_bundle

from tests.compiler.plan_fixture import sample_plan


def _files() -> dict[str, bytes]:
    return render_bundle(sample_plan(), {"data/chat.jsonl": b'{"messages": []}\n', "model/config.json": b"{}"})


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mine", ["data/mine.jsonl", "loft/notes.txt", "model/weights.bin", "requirements.lock",
                                  "plan.md", "launch.sh"])
def test_force_into_a_foreign_dir_never_deletes_or_overwrites_the_users_files(tmp_path: Path, mine: str) -> None:
    out = tmp_path / "dir"
    (out / mine).parent.mkdir(parents=True, exist_ok=True)
    (out / mine).write_bytes(b"the user's own\n")
    (out / "unrelated.txt").write_text("keep me\n")
    before = _snapshot(out)
    with pytest.raises(ConfigError) as e:
        write_bundle(out, _files(), force=True)
    d = e.value.diagnostics[0]
    assert d.code == "out-not-owned" and mine in d.message
    assert _snapshot(out) == before  # nothing touched
    assert not list(tmp_path.glob(".dir.loft-*"))  # no temp dirs left behind


def test_force_into_a_foreign_dir_without_clashes_keeps_everything(tmp_path: Path) -> None:
    out = tmp_path / "dir"
    out.mkdir()
    (out / "notes.md").write_text("mine\n")
    (out / "results").mkdir()
    (out / "results" / "x.csv").write_text("1,2\n")
    write_bundle(out, _files(), force=True)
    assert (out / "notes.md").read_text() == "mine\n" and (out / "results" / "x.csv").read_text() == "1,2\n"
    assert (out / "plan.lock").is_file()


def test_a_file_added_inside_a_bundle_folder_stops_the_rebuild(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_bundle(out, _files(), force=False)
    (out / "data" / "extra.jsonl").write_text("user data\n")
    with pytest.raises(ConfigError, match=r"extra\.jsonl"):
        write_bundle(out, _files(), force=False)
    assert (out / "data" / "extra.jsonl").read_text() == "user data\n"


def test_rebuild_replaces_own_files_keeps_outputs_and_pycache(tmp_path: Path) -> None:
    out = tmp_path / "run"
    write_bundle(out, _files(), force=False)
    (out / "out" / "checkpoints").mkdir(parents=True)
    (out / "out" / "checkpoints" / "state.bin").write_bytes(b"ckpt")
    cache = out / "loft" / "runtime" / "__pycache__"
    cache.mkdir()
    (cache / "plan.cpython-311.pyc").write_bytes(b"pyc")  # written by running the bundle
    (out / "launch.sh").write_text("edited by hand\n")  # loft's own file: a rebuild restores it
    files = _files()
    write_bundle(out, files, force=False)
    assert (out / "out" / "checkpoints" / "state.bin").read_bytes() == b"ckpt"
    assert (out / "launch.sh").read_bytes() == files["launch.sh"]
