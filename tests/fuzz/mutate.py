"""Config mutations for the fuzzer: hostile values at any key, deleted and misspelt keys, and damaged YAML
text (lines dropped, repeated or re-indented, anchors and tabs inserted), drawn by hypothesis from a seed."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from ruamel.yaml import YAML

NASTY_STRINGS = ["", " ", "\n", "x\ny", "x\rtouch PWNED", "$(touch PWNED)", "`touch PWNED`", "a; touch PWNED",
                 "'\"", "../../../etc/passwd", "/etc/passwd", "/dev/zero", "/", ".", "..", "~", "auto", "none",
                 "null", "cpu", "H100", "all-linear", "org/model", "a" * 300, "é🙂\u2028\u0085", "{{ x }}",
                 "{% raise %}", "%s%n", "-1", "1e999", "0x10", "data/chat.jsonl", "loft", "plan.lock", "out"]
NASTY_NUMBERS = [0, -1, 1, 2, 3, 7, 10**6, 2**31, 2**63, 10**15, -(10**12), 0.5, 1.0, 1e-300, 1e-12, 1e12,
                 1e308, -0.0, 0.999999]
NASTY_SPECIAL = ["nan", "inf", "-inf"]  # written as YAML .nan / .inf / -.inf


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a plain document (containers included)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        node = node[k]
    return node


values = st.one_of(
    st.sampled_from(NASTY_STRINGS), st.sampled_from(NASTY_NUMBERS), st.sampled_from(NASTY_SPECIAL),
    st.sampled_from([None, True, False, [], {}, [1, 2], {"a": 1}, [[[]]], {"x": {"y": None}}]),
    st.integers(min_value=-(10**20), max_value=10**20), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> str:
    """YAML text of `seed` with 1-4 structured mutations and, sometimes, damage to the text itself."""
    doc = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 4))):
        ps = paths(doc)
        if not ps:
            break
        path = draw(st.sampled_from(ps))
        parent = _get(doc, path[:-1])
        key = path[-1]
        action = draw(st.sampled_from(["value", "value", "value", "delete", "rename", "wrap", "sibling"]))
        if action == "value":
            parent[key] = copy.deepcopy(draw(values))  # sampled constants are shared between cases
        elif action == "delete":
            del parent[key]
        elif action == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
        elif action == "rename" and isinstance(parent, dict):
            k = str(key)
            cut = draw(st.integers(0, max(0, len(k) - 1)))
            new = draw(st.sampled_from([k[:cut] + k[cut + 1:], k.upper(), k.replace("_", "-"), k + "s", "_" + k]))
            if new and new not in parent:
                parent[new] = parent.pop(key)
        elif action == "sibling" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["unknown_key", "lora_r", "learning_rate", "base_model", "loft"]))] = copy.deepcopy(draw(values))
    text = dump(doc)
    if draw(st.integers(0, 3)) == 0:
        text = damage(draw, text)
    return text


def dump(doc: Any) -> str:
    buf = io.StringIO()
    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    yaml.dump(_specials(doc), buf)
    return buf.getvalue().replace("'__nan__'", ".nan").replace("'__inf__'", ".inf").replace("'__-inf__'", "-.inf")


def _specials(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _specials(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_specials(v) for v in node]
    if isinstance(node, str) and node in NASTY_SPECIAL:
        return f"__{node}__"
    return node


def damage(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines()
    if not lines:
        return text
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["drop", "repeat", "indent", "dedent", "anchor", "tab", "truncate", "colon"]))
    if how == "drop":
        del lines[i]
    elif how == "repeat":
        lines.insert(i, lines[i])
    elif how == "indent":
        lines[i] = "  " + lines[i]
    elif how == "dedent":
        lines[i] = lines[i].lstrip()
    elif how == "anchor":
        lines[i] = lines[i].replace(": ", ": &a ", 1) + "\nzz_alias: *a"
    elif how == "tab":
        lines[i] = "\t" + lines[i]
    elif how == "truncate":
        lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    else:
        lines[i] = lines[i].replace(":", "", 1)
    return "\n".join(lines) + "\n"


def seeds(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*.y*ml"))
