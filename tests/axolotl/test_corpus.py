"""Every config of Axolotl's example corpus builds, or exits 1 naming every unsupported feature.

Never a traceback, never a hang: the in-process pipeline runs each config under a SIGALRM time guard. The
coverage table in docs/axolotl.md must be the one benchmarks/axolotl_coverage.py computes.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest
from loft.compiler import cli
from loft.compiler.errors import ConfigError
from loft.compiler.pipeline import plan

ROOT = Path(__file__).resolve().parents[2]
PER_CONFIG_S = 20.0
MIN_BUILDING = 43  # a floor: supporting more of the corpus is the feature; losing some is a regression


def corpus(shared_dir: Path) -> list[Path]:
    files = sorted([*(shared_dir / "corpus/axolotl/examples").glob("*.yml"),
                    *(shared_dir / "corpus/axolotl/examples").glob("*.yaml")])
    assert files, "the corpus is empty"
    return files


def coverage_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("axolotl_coverage", ROOT / "benchmarks/axolotl_coverage.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["axolotl_coverage"] = mod
    spec.loader.exec_module(mod)
    return mod


def _plan_one(path: Path) -> tuple[str, list[str]]:
    """'ok', 'offline' (refused only because the model's template files are not cached) or 'refused' with
    the error keys; any other exception propagates (a bug)."""
    try:
        plan(path)
        return "ok", []
    except ConfigError as e:
        errors = [d for d in e.diagnostics if d.severity == "error"]
        if errors and all(d.code == "template-unavailable" for d in errors):
            return "offline", [d.key for d in errors]
        assert errors, f"{path.name}: ConfigError without an error diagnostic"
        for d in errors:
            assert d.file and d.message, f"{path.name}: diagnostic without file/message: {d}"
            assert d.key or d.line == 0, f"{path.name}: {d.render()}"
        return "refused", [d.key for d in errors]


class _Hang(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Hang


def test_every_config_plans_or_is_refused_with_the_keys_named(shared_dir: Path) -> None:
    """In-process, one config at a time under a SIGALRM guard (the pipeline is pure Python, so the alarm
    interrupts a hang where a thread pool could only abandon it)."""
    files = corpus(shared_dir)
    results: dict[str, tuple[str, list[str]]] = {}
    old = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for f in files:
            signal.setitimer(signal.ITIMER_REAL, PER_CONFIG_S)
            try:
                results[f.name] = _plan_one(f)
            except _Hang:
                pytest.fail(f"{f.name}: no answer within {PER_CONFIG_S}s (a hang)")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    building = [n for n, (r, _) in results.items() if r in ("ok", "offline")]
    assert len(building) >= MIN_BUILDING, f"only {len(building)} of {len(files)} build (online)"
    for name, (r, keys) in results.items():
        if r == "refused":
            assert keys, f"{name}: refused without naming a key"


REFUSED = {
    "examples__qwen2__dpo.yaml": "rl",
    "examples__pixtral__lora-12b.yml": "processor_type",
    "examples__archived__cerebras__btlm-ft.yml": "adam_eps",
}
BUILDS = ["examples__llama-2__qlora-fsdp.yml", "examples__qwen3__8b-lora-fused-attn-compile.yaml"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_cli_exits_1_naming_the_feature(shared_dir: Path, tmp_path: Path, name: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["build", str(shared_dir / "corpus/axolotl/examples" / name), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f": error: {REFUSED[name]}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", BUILDS)
def test_cli_builds_a_bundle(shared_dir: Path, tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    assert cli.main(["build", str(shared_dir / "corpus/axolotl/examples" / name), "-o", str(run), "-q"]) == 0
    assert (run / "plan.lock").is_file() and (run / "launch.sh").is_file()


def test_strict_turns_translation_warnings_into_errors(shared_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_dir / "corpus/axolotl/examples/examples__llama-2__qlora-fsdp.yml"
    assert cli.main(["build", str(src), "-o", str(tmp_path / "run"), "--strict"]) == 1
    assert "error: dataset_prepared_path" in capsys.readouterr().err


@pytest.mark.slow
def test_every_building_config_writes_a_bundle_through_the_cli(shared_dir: Path, tmp_path: Path) -> None:
    for i, f in enumerate(corpus(shared_dir)):
        run = tmp_path / f"run{i}"
        rc = cli.main(["build", str(f), "-o", str(run), "-q"])
        assert rc in (0, 1), f"{f.name}: exit {rc}"
        assert (rc == 0) == (run / "plan.lock").is_file(), f.name


def test_docs_coverage_table_is_current(shared_dir: Path) -> None:
    cov = coverage_module()
    block = cov.table(cov.run(shared_dir / "corpus/axolotl/examples"))
    doc = (ROOT / "docs/axolotl.md").read_text(encoding="utf-8")
    assert cov.keys_table() in doc, "docs/axolotl.md's key table is stale"
    assert block in doc, "docs/axolotl.md is stale: run .venv/bin/python benchmarks/axolotl_coverage.py --write docs/axolotl.md"
