"""A mutation fuzzer over the example configs and the Axolotl corpus: every mutated config either builds
or fails with ConfigError diagnostics that carry file:line:col (never an internal error: exit 3), each
case within a time bound, the whole run within a memory bound.

`make test` runs a few hundred derandomized cases (the same ones every run); `make fuzz` runs 10,000
random ones (`-m fuzz`, LOFT_FUZZ_CASES to change the number)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse
from loft.compiler.pipeline import compile as compile_bundle

from tests.compiler.project_factory import TINY_MODEL_CONFIG
from tests.fuzz.mutate import mutated, seeds

ROOT = Path(__file__).resolve().parents[2]
CASE_SECONDS = 10.0
MAX_RSS_MIB = 3072
QUICK = 150  # per seed set, in `make test`
LONG = int(os.environ.get("LOFT_FUZZ_CASES", "10000"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ (configs, data, a tiny model's config.json) in a scratch folder the cases are written to."""
    root = tmp_path_factory.mktemp("fuzz")
    for p in seeds(ROOT / "examples"):
        shutil.copy(p, root / p.name)
    shutil.copytree(ROOT / "examples" / "data", root / "data")
    model = root / "models" / "tiny-llama"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG))
    return root


def _seed_docs(paths: list[Path]) -> list[dict[str, Any]]:
    return [parse(p).data for p in paths]


def check_case(root: Path, text: str) -> None:
    """Build one mutated config; anything but success or a located ConfigError fails the test."""
    cfg = root / "case.yaml"
    cfg.write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    try:
        compile_bundle(cfg, root / "run")
    except ConfigError as e:
        unlocated = [d for d in e.diagnostics if d.severity == "error" and not (d.file and d.line and d.col)]
        assert not unlocated, (f"error without file:line:col: {unlocated[0].render()}\n{e.render()}"
                               f"\n--- config ---\n{text}")
    except Exception as e:  # what the CLI reports as an internal error (exit 3) or as exit 1 without a position
        raise AssertionError(f"{type(e).__name__}: {e}\n--- config ---\n{text}") from e
    took = time.perf_counter() - t0
    assert took < CASE_SECONDS, f"took {took:.1f} s\n--- config ---\n{text}"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < MAX_RSS_MIB * 1024


def _run(root: Path, docs: list[dict[str, Any]], n: int, derandomize: bool) -> None:
    @settings(max_examples=n, deadline=None, derandomize=derandomize, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(docs).flatmap(mutated))
    def case(text: str) -> None:
        check_case(root, text)

    case()


def _corpus(shared_dir: Path, root: Path) -> list[dict[str, Any]]:
    src = sorted((shared_dir / "corpus" / "axolotl" / "examples").glob("*.y*ml"))
    return _seed_docs(src)


def test_fuzz_examples(project: Path) -> None:
    _run(project, _seed_docs(seeds(ROOT / "examples")), QUICK, derandomize=True)


def test_fuzz_axolotl_corpus(project: Path, shared_dir: Path) -> None:
    _run(project, _corpus(shared_dir, project), QUICK, derandomize=True)


@pytest.mark.fuzz
def test_fuzz_long(project: Path) -> None:
    docs = _seed_docs(seeds(ROOT / "examples"))
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        docs += _corpus(shared, project)
    _run(project, docs, LONG, derandomize=False)
