"""Axolotl's config keys and what loft does with each, read from `keys.json` (data, not code).

Every key is in one class:

- translated: a section module (model, adapter, data, ...) maps it to loft keys (`why` says where);
- no-effect: it does not change what is trained (speed, logging, caching, loading): a warning when set;
- unsupported: it changes training and loft cannot do it: an error when set.

A key set to Axolotl's own default (its pydantic schema's, recorded under `schema`) or to an off value is
accepted silently whatever its class. Values are checked against the JSON types and string choices of
Axolotl's schema, so the section modules check only what the schema cannot say. Anything not listed is
unknown: an error with a did-you-mean against every name here.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

from ...errors import did_you_mean
from .context import Translation, num, off

Kind = Literal["translated", "no-effect", "unsupported"]
_SECTIONS = ("top", "dataset", "fsdp_config")


@functools.cache
def table_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(__file__).parent / "keys.json").read_text("utf-8"))
    return data


def entry(key: str, section: str = "top") -> dict[str, Any] | None:
    e = table_data()[section].get(key)
    return e if isinstance(e, dict) else None


def kind_of(key: str, section: str = "top") -> Kind | None:
    """Which class an Axolotl key is in; None when Axolotl has no such key."""
    if section == "top" and key in table_data()["ignored"]:
        return "no-effect"
    e = entry(key, section)
    return e["kind"] if e else None


def why(key: str, section: str = "top") -> str:
    e = entry(key, section)
    return str(e.get("why", "")) if e else str(table_data()["ignored"].get(key, ""))


def all_keys(section: str = "top") -> list[str]:
    """Every key name of a section loft knows, for did-you-mean."""
    return sorted(table_data()[section])


def hint(key: str) -> str:
    return str(table_data()["hints"].get(key, ""))


def table() -> list[tuple[str, Kind, str]]:
    """(key, kind, what loft does) for every known top-level key, sorted; used by docs/axolotl.md."""
    return [(k, e["kind"], e.get("why", "")) for k, e in sorted(table_data()["top"].items())]


def is_default(key: str, value: Any, section: str = "top") -> bool:
    """The value Axolotl's schema defaults the key to (setting it changes nothing)."""
    e = entry(key, section)
    schema = (e or {}).get("schema") or {}
    return "default" in schema and value == schema["default"] and type(value) is type(schema["default"])


_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
              type(None): "null"}


def type_problem(key: str, value: Any, section: str = "top") -> str:
    """What is wrong with `value` by Axolotl's schema for `key` (JSON types, string choices, minimum); ''."""
    schema = (entry(key, section) or {}).get("schema")
    if not schema or "any" in schema["types"]:
        return ""
    got = next((name for t, name in _JSON_TYPE.items() if type(value) is t), "any")
    if got == "any":  # ruamel's mappings/sequences and other subclasses
        got = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else \
            "string" if isinstance(value, str) else "any"
    types = schema["types"]
    if got == "boolean" and value is False and ("integer" in types or "number" in types):
        return ""  # pydantic's lax mode reads false as 0 (off) for a number
    if got not in types and not (got == "integer" and "number" in types):
        shown = " or ".join(t for t in types if t != "null") or "null"
        return f"expected {shown} (Axolotl's schema), got {value!r}"
    if got == "string" and schema.get("enum") and value not in schema["enum"]:
        return f"expected one of {', '.join(schema['enum'])}, got {value!r}" + (
            f" ({did_you_mean(value, schema['enum'])})" if did_you_mean(value, schema["enum"]) else "")
    v = num(value) if got in ("integer", "number") else None
    if v is not None and "minimum" in schema and v < schema["minimum"]:
        return f"expected at least {schema['minimum']}, got {value!r}"
    if v is not None and "exclusive_minimum" in schema and v <= schema["exclusive_minimum"]:
        return f"expected more than {schema['exclusive_minimum']}, got {value!r}"
    return ""


# What a value of the wrong type usually meant.
_TYPE_HINTS = {
    "warmup_steps": "did you mean warmup_ratio: {value}?",
    "tokens": "bos/eos/pad/unk go under special_tokens: {{pad_token: ...}}; tokens is a list of new entries",
}
_SECRET_KEY = re.compile(r"(api_key|secret|password|access_token|auth_token|hf_token|hub_token)$")
_SECRET_OK = {"hf_use_auth_token"}
# Values that mean "off" for keys whose off value is not falsy (one-way parallelism).
_NEUTRAL: dict[str, Any] = {"tensor_parallel_size": 1, "context_parallel_size": 1, "expert_parallel_size": 1,
                            "sequence_parallel_degree": 1, "dp_replicate_size": 1, "dp_shard_size": 1}
# Unsupported keys that only matter together with another key (Axolotl ignores them otherwise).
_ONLY_WITH = {"vllm": "rl", "trl": "rl", "loraplus_lr_embedding": "loraplus_lr_ratio"}


def check(t: Translation) -> None:
    """Every top-level key is known and well typed; unsupported ones that are on are errors; no-effect
    ones warn. Secrets are refused before anything else looks at them."""
    names = all_keys()
    for key, value in t.d.items():
        key = str(key)
        if _SECRET_KEY.search(key) and key not in _SECRET_OK and isinstance(value, str) and value.strip():
            t.err([key], "holds a secret value; loft never copies secrets into a config or a bundle",
                  code="secret", hint="delete it and export it in the environment instead "
                                      "(loft records only the variable's NAME)")
            continue
        kind = kind_of(key)
        if kind is None:
            h = hint(key) or did_you_mean(key, names)
            eta, lr = num(value), num(t.d.get("learning_rate"))
            if key == "eta_min" and eta is not None and lr:
                h += f": here cosine_min_lr_ratio: {eta / lr:.4g} with lr_scheduler: cosine"
            t.err([key], "is not an Axolotl config key, so loft cannot tell what it should do",
                  code="unknown-key", hint=h or "see docs/axolotl.md for the keys loft reads")
            continue
        problem = type_problem(key, value) if value is not None else ""
        if problem:
            t.err([key], problem, code="type", hint=_TYPE_HINTS.get(key, "").format(value=value))
            continue
        if off(value) or is_default(key, value) or _NEUTRAL.get(key, object()) == value:
            continue
        if kind == "unsupported":
            if key in _ONLY_WITH and not t.d.get(_ONLY_WITH[key]):
                continue
            t.err([key], f"is not supported: {why(key)}", expected="remove it, or keep using Axolotl for this "
                  "config")
        elif kind == "no-effect":
            if key in table_data()["ignored"]:
                t.warn([key], table_data()["ignored"][key] + "; loft ignores it too", code="axolotl-ignored")
            else:
                t.warn([key], f"has no effect on the trained model in loft ({why(key)}); ignored")
