"""schemas/*.json are complete, strict and in step with docs/config.md (both ways)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from loft.compiler.parse import parse_text
from loft.compiler.validate import load_schema, validate

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
RESOLVE = tuple(sorted(p.relative_to(ROOT / "compiler").as_posix() for p in (ROOT / "compiler" / "resolve").glob("*.py")))

# objects that are maps by design (free keys, typed values)
MAPS = {"data.datasets[].roles", "sweep.params", "model.config_overrides"}
# objects with fixed keys plus free extra entries of a fixed type (documented in their description)
OPEN = {"data.datasets[].message_fields"}


def schema_keys(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k, sub in node.get("properties", {}).items():
        p = f"{prefix}.{k}" if prefix else k
        out[p] = sub
        out.update(schema_keys(sub, p))
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            out.update(schema_keys(items, p + "[]"))
    return out


KEYS = schema_keys(load_schema())


def required_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
    out = {f"{prefix}.{k}" if prefix else k for k in node.get("required", [])}
    for k, sub in node.get("properties", {}).items():
        p = f"{prefix}.{k}" if prefix else k
        out |= required_keys(sub, p)
        if isinstance(sub.get("items"), dict):
            out |= required_keys(sub["items"], p + "[]")
    return out


# keys the user must give: no default (plus data.datasets, required unless data.config is used)
REQUIRED = required_keys(load_schema()) | {"data.datasets"}


def test_schemas_are_valid_2020_12() -> None:
    for name in ("config", "plan"):
        s = load_schema(name)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(s)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_config_key_has_description_type_default(key: str) -> None:
    sub = KEYS[key]
    assert sub.get("description"), key
    assert "type" in sub, key
    assert ("default" in sub) == (key not in REQUIRED), key
    types = [sub["type"]] if isinstance(sub["type"], str) else sub["type"]
    if "object" in types and key not in MAPS:
        expected = {"type": "string", "minLength": 1} if key in OPEN else False
        assert sub.get("additionalProperties") == expected, key
    if {"integer", "number"} & set(types) and "enum" not in sub and "anyOf" not in sub:
        assert any(b in sub for b in ("minimum", "exclusiveMinimum")), f"{key}: numbers need bounds"
    if "default" in sub and sub["default"] is not None:  # the default itself is valid
        assert not list(Draft202012Validator(sub).iter_errors(sub["default"])), key


def test_every_plan_object_is_closed() -> None:
    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("object", ["object", "null"]) and "properties" in node and path not in (
                    "versions", "estimate.warnings[]"):
                assert node.get("additionalProperties") is False, path
                assert node.get("description"), path
            for k, v in node.get("properties", {}).items():
                walk(v, f"{path}.{k}" if path else k)
            if isinstance(node.get("items"), dict):
                walk(node["items"], path + "[]")

    walk(load_schema("plan"), "")


def documented_keys() -> set[str]:
    table = DOC[DOC.index("## Every key"):]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.M))


def test_docs_table_lists_exactly_the_schema_keys() -> None:
    documented = documented_keys()
    assert sorted(set(KEYS) - documented) == [], "in the schema, missing from docs/config.md"
    assert sorted(documented - set(KEYS)) == [], "in docs/config.md, not in the schema"


def test_docs_table_is_what_loftc_schema_table_prints() -> None:
    from loft.compiler.commands.schema import markdown_table

    assert DOC[DOC.index("| key | type | default | what |"):] == markdown_table(load_schema()), (
        "regenerate the table: loftc schema --table")


def test_docs_table_defaults_and_descriptions_match() -> None:
    import json

    table = DOC[DOC.index("## Every key"):]
    for key, default, desc in re.findall(r"^\| `([^`]+)` \| [^\n]*? \| (`[^\n]*?`|—) \| ([^\n]*) \|$", table,
                                         flags=re.M):
        sub = KEYS[key]
        if default == "—":
            assert "default" not in sub, key
        else:
            assert json.loads(default.strip("`")) == sub["default"], key
        assert desc.replace("\\|", "|") == sub["description"], key


def annotated_example() -> str:
    section = DOC[DOC.index("## A full annotated example"):]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_annotated_example_is_valid_and_covers_the_schema() -> None:
    doc = parse_text(annotated_example(), "docs/config.md")
    cfg = validate(doc.data, doc=doc)

    def flat(node: Any, prefix: str) -> set[str]:
        out: set[str] = set()
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{prefix}.{k}" if prefix else k
                out.add(p)
                if p not in MAPS:
                    out |= flat(v, p)
        elif isinstance(node, list):
            for item in node:
                out |= flat(item, prefix + "[]")
        return out

    shown = flat(cfg, "")
    # sweep is off in the example (null); its keys are shown in examples/sweep.yaml
    missing = sorted(k for k in KEYS if k not in shown and not k.startswith(("sweep.", "data.config")))
    # maps of optional names, shown empty in the example
    missing = [k for k in missing if not k.startswith(("model.special_tokens.", "data.datasets[].fields."))]
    assert missing == []
    assert "# config: data.yaml" in annotated_example()  # data.config is shown as a comment


def test_docs_show_the_yaml_language_server_line() -> None:
    assert "# yaml-language-server: $schema=" in DOC
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        first = example.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/config.schema.json", example.name


@pytest.mark.parametrize("example", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")))
def test_examples_validate(example: str) -> None:
    path = ROOT / "examples" / example
    doc = parse_text(path.read_text(encoding="utf-8"), str(path))
    validate(doc.data, doc=doc)


def test_warning_codes_in_docs_exist_in_code() -> None:
    src = "".join((ROOT / "compiler" / f).read_text() for f in ("warnings.py", *RESOLVE, "estimate/__init__.py"))
    table = DOC[DOC.index("## Errors and warnings"):DOC.index("## Every key")]
    for code in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", table):
        assert f'"{code}"' in src, code


def test_every_warning_code_in_code_is_documented() -> None:
    import ast

    table = DOC[DOC.index("## Errors and warnings"):DOC.index("## Every key")]
    documented = set(re.findall(r"`([a-z]+(?:-[a-z]+)+)`", table))
    found: set[str] = set()
    for f in ("warnings.py", *RESOLVE):
        tree = ast.parse((ROOT / "compiler" / f).read_text())
        for node in ast.walk(tree):
            # warn("code", ...) in resolve/; ("code", keys, message, hint) tuples in warnings.py
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "warn" and node.args:
                first = node.args[0]
            elif f == "warnings.py" and isinstance(node, ast.Yield) and isinstance(node.value, ast.Tuple):
                first = node.value.elts[0]
            else:
                continue
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    assert found and sorted(found - documented) == []
