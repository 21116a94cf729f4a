"""Row-level parity with Axolotl, offline: loft's prepared rows equal the rows the real `axolotl preprocess`
produced for the same config, model and data (stored by `benchmarks/axolotl_parity.py --write`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "tests" / "axolotl" / "parity"


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("axolotl_parity", ROOT / "benchmarks" / "axolotl_parity.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["axolotl_parity"] = mod
    spec.loader.exec_module(mod)
    return mod


CASES = sorted(json.loads((PARITY / "cases.json").read_text("utf-8")))


def test_every_case_has_axolotls_rows() -> None:
    assert len(CASES) >= 12
    missing = [c for c in CASES if not (PARITY / "expected" / f"{c}.json").is_file()]
    assert missing == [], "run benchmarks/axolotl_parity.py --write (needs an Axolotl install)"


@pytest.mark.parametrize("name", CASES)
def test_loft_prepares_exactly_axolotls_rows(name: str, tmp_path: Path) -> None:
    h = harness()
    case = h.cases()[name]
    expected = json.loads((PARITY / "expected" / f"{name}.json").read_text("utf-8"))["rows"]
    got = h.loft_rows(h.stage(case, tmp_path / "case"))
    result = h.compare(expected, got)
    assert result["parity"], result
