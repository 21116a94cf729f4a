"""parse.py: positions for every key, safe loading, and each way a file can be unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse, parse_text


def test_positions_of_nested_keys_and_list_items() -> None:
    doc = parse_text("loft: 1\nmodel:\n  base: x\ndata:\n  datasets:\n    - path: a\n    - path: b\n", "c.yaml")
    assert doc.pos(["model", "base"]) == (3, 3)
    assert doc.pos(["data", "datasets", 1, "path"]) == (7, 7)
    # a missing key falls back to its deepest existing parent
    assert doc.pos(["model", "dtype"]) == (2, 1)
    assert doc.pos(["nothing"]) == (0, 0)


def test_scientific_notation_without_dot_is_a_number() -> None:
    doc = parse_text("training:\n  learning_rate: 2e-5\n  name: '2e-5x'\n")
    assert doc.data["training"]["learning_rate"] == pytest.approx(2e-5)
    assert doc.data["training"]["name"] == "2e-5x"


def test_duplicate_key_is_an_error_with_position() -> None:
    with pytest.raises(ConfigError) as e:
        parse_text("model:\n  base: a\n  base: b\n", "d.yaml")
    d = e.value.diagnostics[0]
    assert d.code == "yaml" and "duplicate key" in d.message
    assert (d.file, d.line) == ("d.yaml", 3)


def test_invalid_yaml_points_at_the_problem() -> None:
    with pytest.raises(ConfigError) as e:
        parse_text("model:\n  base: [a, b\ndata: 1\n", "i.yaml")
    d = e.value.diagnostics[0]
    assert d.code == "yaml" and d.line >= 2 and d.message.startswith("invalid YAML")


@pytest.mark.parametrize("text,code", [("", "empty"), ("# only a comment\n", "empty"),
                                       ("- a\n- b\n", "not-a-mapping"), ("just text\n", "not-a-mapping")])
def test_not_a_config(text: str, code: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_text(text, "x.yaml")
    assert e.value.diagnostics[0].code == code


def test_python_tags_are_not_constructed() -> None:
    # the round-trip loader keeps unknown tags as plain data; nothing is executed or imported
    doc = parse_text("a: !!python/object/apply:os.system ['echo hi']\n")
    assert "echo hi" in str(doc.data["a"])


def test_missing_directory_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        parse(tmp_path / "nope.yaml")
    assert e.value.diagnostics[0].code == "missing-file"
    with pytest.raises(ConfigError) as e:
        parse(tmp_path)
    assert e.value.diagnostics[0].code == "missing-file"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        parse(bad)
    assert e.value.diagnostics[0].code == "encoding"
