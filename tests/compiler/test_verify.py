"""verify: one-byte tamper, missing and extra files, runtime copy drift; outputs and caches are not extras."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from loft.compiler.bundle import write_bundle
from loft.compiler.commands import verify as verify_cmd
from loft.compiler.render import render_bundle
from loft.compiler.verify import verify

from tests.compiler.plan_fixture import sample_plan


@pytest.fixture
def run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    write_bundle(out, render_bundle(sample_plan(), {"chat_template.jinja": b"tmpl\n"}), force=False)
    return out


def _errors(run: Path) -> list[str]:
    return [d.message for d in verify(run) if d.severity == "error"]


def test_fresh_bundle_verifies(run: Path) -> None:
    assert _errors(run) == []
    warnings = [d for d in verify(run) if d.severity == "warning"]
    assert [d.code for d in warnings] == ["sources-not-checked"]  # the sample's config is not at hand


def test_one_byte_tamper_names_the_file(run: Path) -> None:
    data = bytearray((run / "launch.sh").read_bytes())
    data[100] ^= 0x01
    (run / "launch.sh").write_bytes(bytes(data))
    diags = [d for d in verify(run) if d.severity == "error"]
    assert len(diags) == 1 and diags[0].code == "changed-file"
    assert diags[0].message.startswith("launch.sh changed") and diags[0].file.endswith("launch.sh")


def test_missing_and_extra_files(run: Path) -> None:
    (run / "plan.md").unlink()
    (run / "data").mkdir()
    (run / "data" / "sneaky.jsonl").write_text("{}\n")
    errs = _errors(run)
    assert "missing file plan.md (listed in MANIFEST.sha256)" in errs
    assert "extra file data/sneaky.jsonl (not in MANIFEST.sha256)" in errs


def test_outputs_and_python_caches_are_not_extra(run: Path) -> None:
    (run / "out" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (run / "out" / "metrics.jsonl").write_text("{}\n")
    cache = run / "loft" / "runtime" / "__pycache__"
    cache.mkdir()
    (cache / "plan.cpython-311.pyc").write_bytes(b"\0")
    (run / "STOP").write_text("")  # save-and-quit sentinel
    assert _errors(run) == []


def test_runtime_copy_that_differs_from_installed(run: Path) -> None:
    target = run / "loft" / "runtime" / "plan.py"
    target.write_bytes(target.read_bytes() + b"# patched\n")
    manifest = run / "MANIFEST.sha256"  # even with a matching manifest, the copy is not this loftc's runtime
    import hashlib

    lines = [ln if not ln.endswith("  loft/runtime/plan.py") else
             f"{hashlib.sha256(target.read_bytes()).hexdigest()}  loft/runtime/plan.py"
             for ln in manifest.read_text().splitlines()]
    manifest.write_text("\n".join(lines) + "\n")
    diags = [d for d in verify(run) if d.severity == "error"]
    assert [d.code for d in diags] == ["runtime-differs"]
    assert "loft/runtime/plan.py differs from the installed loft runtime" in diags[0].message


def test_not_a_bundle_and_bad_manifest(tmp_path: Path, run: Path) -> None:
    assert verify(tmp_path / "nothing")[0].code == "not-a-bundle"
    (tmp_path / "empty").mkdir()
    assert verify(tmp_path / "empty")[0].code == "not-a-bundle"
    (run / "MANIFEST.sha256").write_text("garbage\n")
    assert verify(run)[0].code == "bad-manifest"


def test_command_exit_codes(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(run_dir=run, config=None, format="text")
    assert verify_cmd.run(args) == 0
    assert "ok" in capsys.readouterr().out
    (run / "sweep.jsonl").write_text("")
    assert verify_cmd.run(args) == 1
    assert "sweep.jsonl changed" in capsys.readouterr().err
    assert verify_cmd.run(argparse.Namespace(run_dir=run, config=None, format="json")) == 1
    assert '"changed-file"' in capsys.readouterr().out
