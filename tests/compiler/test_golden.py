"""End to end through `loftc build`: golden snapshots of every example's bundle, byte-identical rebuilds
from other places and times, and `loftc verify` catching tampering and stale sources.

Snapshots live in tests/golden/<example>/: `files.txt` (sha256 of every bundle file; model files and the
runtime copy by name only, since they come from examples/tiny.py and from the runtime's authors) and the
full text of plan.lock, launch.sh and plan.md. Regenerate after an intended change with

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/compiler/test_golden.py

and review the diff like any other change.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from loft.compiler import cli
from loft.compiler.bundle import MANIFEST, read_files
from loft.compiler.verify import verify

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
SNAPSHOT_TEXT = ("plan.lock", "launch.sh", "plan.md")
NAME_ONLY = ("loft/runtime/", "loft/schemas/", "model/")  # schemas: data others edit; hashes in MANIFEST
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path) -> Path:
    """The tiny Llama model the quickstart points at (examples/tiny.py, as `make demo` builds it)."""
    return tiny_model_dir


def _project(root: Path, tiny_model: Path) -> Path:
    """A copy of examples/ under `root`, with the tiny model where the quickstart expects it."""
    dest = root / "examples"
    shutil.copytree(EXAMPLES, dest, ignore=shutil.ignore_patterns("models", "__pycache__", "*.py"))
    shutil.copytree(tiny_model, dest / "models" / "tiny-llama")
    return root


def _build(cwd: Path, config: str, out: str, monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if monkeypatch is None:
        return subprocess.run([sys.executable, "-m", "loft.compiler", "build", config, "-o", out], cwd=cwd,
                              capture_output=True, text=True).returncode
    monkeypatch.chdir(cwd)
    return cli.main(["build", config, "-o", out])


def _files_txt(files: dict[str, bytes]) -> str:
    lines = []
    for rel in sorted(files):
        if rel == MANIFEST or rel.startswith("loft/runtime/"):
            continue
        digest = "-" * 64 if rel.startswith(NAME_ONLY) else hashlib.sha256(files[rel]).hexdigest()
        lines.append(f"{digest}  {rel}")
    return "\n".join(lines) + "\n"


def test_every_example_has_a_snapshot() -> None:
    assert EXAMPLE_FILES, "examples/*.yaml is empty"
    if UPDATE:
        for stale in GOLDEN.glob("*/"):
            if f"{stale.name}.yaml" not in EXAMPLE_FILES:
                shutil.rmtree(stale)
        return  # the parametrized test below writes the snapshots
    assert sorted(p.name for p in GOLDEN.glob("*/")) == sorted(Path(e).stem for e in EXAMPLE_FILES), (
        "tests/golden/ does not match examples/*.yaml: run UPDATE_GOLDEN=1 pytest tests/compiler/test_golden.py")


@pytest.mark.parametrize("example", EXAMPLE_FILES)
def test_golden_bundle(example: str, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, tiny_model)
    assert _build(root, f"examples/{example}", "run", monkeypatch) == 0
    files = read_files(root / "run")
    snap = GOLDEN / Path(example).stem
    current = {"files.txt": _files_txt(files), **{n: files[n].decode() for n in SNAPSHOT_TEXT}}
    if UPDATE:
        snap.mkdir(parents=True, exist_ok=True)
        for name, text in current.items():
            (snap / name).write_text(text, encoding="utf-8")
    for name, text in current.items():
        path = snap / name
        assert path.is_file(), f"no snapshot {path}: run UPDATE_GOLDEN=1 pytest {Path(__file__).name}"
        want = path.read_text(encoding="utf-8")
        if text != want:
            diff = "".join(list(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(path),
                                                     f"{example} now"))[:60])
            pytest.fail(f"{example}: {name} differs from its snapshot; if intended, run UPDATE_GOLDEN=1\n{diff}")
    assert [d for d in verify(root / "run") if d.severity == "error"] == []
    assert subprocess.run(["bash", "-n", str(root / "run" / "launch.sh")]).returncode == 0
    for extra in ("slurm.sbatch",):
        if extra in files:
            assert subprocess.run(["bash", "-n", str(root / "run" / extra)]).returncode == 0
    if "ds_config.json" in files:
        json.loads(files["ds_config.json"])


def test_rebuilds_are_byte_identical_from_anywhere(tmp_path: Path, tiny_model: Path) -> None:
    """Same config and data in two places, built from different working directories with relative and
    absolute paths, with different file times: every byte of the two bundles is the same."""
    a = _project(tmp_path / "one", tiny_model)
    b = _project(tmp_path / "two" / "deeper", tiny_model)
    for p in (b / "examples").rglob("*"):
        os.utime(p, (1_000_000_000, 1_000_000_000))
    assert _build(a, "examples/quickstart.yaml", "run") == 0
    assert _build(tmp_path, str(b / "examples" / "quickstart.yaml"), str(b / "run")) == 0
    first, second = read_files(a / "run"), read_files(b / "run")
    assert first == second
    assert str(tmp_path).encode() not in b"".join(first.values())
    # and a rebuild over the first bundle changes nothing, keeping its outputs
    (a / "run" / "out").mkdir()
    (a / "run" / "out" / "metrics.jsonl").write_text("{}\n")
    assert _build(a / "examples", "quickstart.yaml", "../run") == 0
    assert read_files(a / "run") == first and (a / "run" / "out" / "metrics.jsonl").is_file()


def test_the_output_folder_and_cwd_leave_no_trace(tmp_path: Path, tiny_model: Path) -> None:
    """One config built into run/ and into a/b/run/, from different working directories: identical bytes
    (the source config is recorded by name and sha256, never by a path relative to the bundle)."""
    root = _project(tmp_path / "p", tiny_model)
    assert _build(root, "examples/quickstart.yaml", "run") == 0
    (root / "a" / "b").mkdir(parents=True)
    assert _build(root / "a", "../examples/quickstart.yaml", "b/run") == 0
    near, far = read_files(root / "run"), read_files(root / "a" / "b" / "run")
    assert sorted(near) == sorted(far)
    assert [rel for rel in near if near[rel] != far[rel]] == []
    source = json.loads(near["plan.lock"])["source"]
    assert source["file"] == "quickstart.yaml"
    assert source["sha256"] == hashlib.sha256((root / "examples" / "quickstart.yaml").read_bytes()).hexdigest()


@pytest.fixture
def built(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = _project(tmp_path, tiny_model)
    assert _build(root, "examples/quickstart.yaml", "run", monkeypatch) == 0
    return root


def _errors(run: Path, config: Path | None = None) -> list[str]:
    return [d.message for d in verify(run, config) if d.severity == "error"]


def test_fresh_build_verifies_through_cli(built: Path) -> None:
    assert cli.main(["verify", str(built / "run")]) == 0
    assert _errors(built / "run") == []


def test_one_byte_tamper(built: Path) -> None:
    plan = built / "run" / "plan.lock"
    data = bytearray(plan.read_bytes())
    data[len(data) // 2] ^= 0x20
    plan.write_bytes(bytes(data))
    errors = _errors(built / "run")
    assert any(e.startswith("plan.lock changed since the build") for e in errors)
    assert cli.main(["verify", str(built / "run")]) == 1


def test_missing_and_extra_file(built: Path) -> None:
    (built / "run" / "requirements.lock").unlink()
    (built / "run" / "loft" / "runtime" / "evil.py").write_text("import os\n")
    errors = _errors(built / "run")
    assert "missing file requirements.lock (listed in MANIFEST.sha256)" in errors
    assert "extra file loft/runtime/evil.py (not in MANIFEST.sha256)" in errors


def test_stale_data_is_named(built: Path) -> None:
    data = built / "examples" / "data" / "chat.jsonl"
    with data.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "hello"}]}) + "\n")
    errors = _errors(built / "run", built / "examples" / "quickstart.yaml")
    stale = [e for e in errors if e.startswith("plan.lock no longer matches quickstart.yaml")]
    assert stale and "data file data/chat.jsonl changed (sha256" in stale[0]
    assert any(e.startswith("data/chat.jsonl no longer matches") for e in errors)


def test_changed_config_is_named_and_config_flag(built: Path, tmp_path: Path) -> None:
    cfg = built / "examples" / "quickstart.yaml"
    moved = tmp_path / "elsewhere.yaml"
    shutil.copy(cfg, moved)
    cfg.write_text(re.sub(r"learning_rate: \S+", "learning_rate: 5.0e-5", cfg.read_text(), count=1))
    errors = _errors(built / "run", cfg)
    assert any(e.startswith("plan.lock no longer matches quickstart.yaml: quickstart.yaml changed") for e in errors)
    # --config points at another copy of the original: paths resolve from there, so the data is missing
    diags = verify(built / "run", built / "examples" / "nope.yaml")
    assert [d.code for d in diags] == ["config-not-found"]


def test_bad_stage_exits_2(built: Path) -> None:
    r = subprocess.run(["bash", str(built / "run" / "launch.sh"), "badstage"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage: bash launch.sh" in r.stderr


def test_build_refuses_foreign_dir_and_failed_build_keeps_bundle(built: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(built)
    foreign = built / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine\n")
    assert cli.main(["build", "examples/quickstart.yaml", "-o", "notes"]) == 1
    assert "not a loft bundle" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["todo.txt"]
    assert cli.main(["build", "examples/quickstart.yaml", "-o", "notes", "--force"]) == 0
    assert (foreign / "todo.txt").read_text() == "mine\n" and (foreign / "plan.lock").is_file()

    before = read_files(built / "run")
    cfg = built / "examples" / "quickstart.yaml"
    cfg.write_text(re.sub(r"max_steps: \d+", "max_steps: -3", cfg.read_text(), count=1))
    assert cli.main(["build", "examples/quickstart.yaml", "-o", "run"]) == 1
    assert read_files(built / "run") == before
    assert sorted(p.name for p in built.iterdir() if p.name.startswith(".")) == []
