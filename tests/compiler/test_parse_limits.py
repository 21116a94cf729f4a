"""parse.py bounds the work a hostile config can cause: alias bombs, deep nesting, huge numbers, huge
files and files that are not files are clear errors with line:col, each in well under a second."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.parse import MAX_BYTES, MAX_DEPTH, parse, parse_text


def _laughs(levels: int = 9, width: int = 10) -> str:
    lines = ["loft: 1", "a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _refused(text: str) -> tuple[str, int, int, float]:
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        assert parse_text(text, "c.yaml").data is None
    d = e.value.diagnostics[0]
    return d.message, d.line, d.col, time.perf_counter() - t0


def test_billion_laughs_is_refused_before_expansion_in_under_a_second() -> None:
    message, line, col, took = _refused(_laughs())
    assert "expands to more than" in message and line >= 2 and col > 0
    assert took < 1.0


def test_a_few_honest_aliases_still_work() -> None:
    doc = parse_text("loft: 1\nbase: &b {r: 8}\nadapter: *b\nmore: {<<: *b, alpha: 16}\n")
    assert doc.data["adapter"] == {"r": 8} and doc.data["more"] == {"r": 8, "alpha": 16}


@pytest.mark.parametrize("text", [
    "loft: 1\nx: " + "[" * 1000 + "]" * 1000 + "\n",
    "loft: 1\nx: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n",
    "loft: 1\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)) + "  " * 200 + "v: 1\n",
    "loft: 1\nx: " + "[" * 60000 + "\n",
])
def test_deep_nesting_is_refused_with_position(text: str) -> None:
    message, line, col, took = _refused(text)
    assert f"more than {MAX_DEPTH} deep" in message and line >= 2 and col > 0, message
    assert took < 1.0


def test_nesting_inside_a_quoted_string_is_not_counted() -> None:
    doc = parse_text("loft: 1\neval: {prompts: ['" + "[" * 200 + "']}\n")
    assert doc.data["eval"]["prompts"] == ["[" * 200]


def test_a_5000_digit_integer_is_a_clear_error() -> None:
    message, line, col, _ = _refused("loft: 1\ntraining:\n  max_steps: " + "9" * 5000 + "\n")
    assert "5000 digits" in message and (line, col) == (3, 14)
    assert parse_text("loft: 1\nx: '" + "9" * 5000 + "'\n").data["x"] == "9" * 5000  # a string is fine


def test_a_config_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("loft: 1\n" + "# pad\n" * (MAX_BYTES // 6 + 10))
    with pytest.raises(ConfigError) as e:
        parse(big)
    assert "limited to" in e.value.diagnostics[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_device_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as e:
        parse(fifo)  # would block forever if opened
    assert e.value.diagnostics[0].code == "not-a-file"
    if Path("/dev/zero").exists():
        with pytest.raises(ConfigError):
            parse("/dev/zero")
