"""plan.lock's schema, as the runtime enforces it before any stage runs.

The schema files travel with the runtime: `loft/schemas/` sits beside `loft/runtime/` in a checkout, in an
install and in every bundle (render copies both), so a bundle is checked against the schema it was
compiled for. The plan's `config` must be the *resolved* config: every key that resolve's `fill_defaults`
writes is required here (`resolved_config_schema`), so a plan missing a key the runtime reads stops at load
with the key's path, never runs on a fallback. Pure (json + jsonschema only): the compiler's tests use it too.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
PLAN_SCHEMA = "plan.schema.json"
CONFIG_SCHEMA = "config.schema.json"


def load_schema(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return out


def resolved_config_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The config schema with every property required along the `properties`/`items` chain that
    fill_defaults walks (the branches of anyOf/oneOf are user shapes, left as they are)."""
    out = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        props = node.get("properties")
        if isinstance(props, dict):
            node["required"] = sorted(props)
            for sub in props.values():
                if isinstance(sub, dict):
                    walk(sub)
        items = node.get("items")
        if isinstance(items, dict):
            walk(items)

    walk(out)
    return out


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    config = resolved_config_schema(load_schema(CONFIG_SCHEMA))
    plan = load_schema(PLAN_SCHEMA)
    registry: Registry[Any] = Registry().with_resources([
        (config["$id"], Resource.from_contents(config)),
        (plan["$id"], Resource.from_contents(plan)),
    ])
    return Draft202012Validator(plan, registry=registry)


def key_path(path: Any) -> str:
    """`config.data.datasets[0].path` from a jsonschema error path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def plan_errors(plan: Any) -> list[str]:
    """Every schema violation of a plan, one line each: `key.path: what is wrong`; [] when valid."""
    return [f"{where}: {message}" for where, message, _ in plan_problems(plan)]


def plan_problems(plan: Any) -> list[tuple[str, str, str]]:
    """Every schema violation of a plan as (where, what is wrong, the offending key's path), sorted by key
    path; [] when valid. For a missing key, `where` is the object that lacks it and the key path names the
    key itself (`config.training.seed`)."""
    errors = sorted(_validator().iter_errors(plan), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    out = []
    for e in errors:
        where = key_path(e.absolute_path)
        if e.validator == "required":
            missing = re.fullmatch(r"'([^']+)' is a required property", e.message)
            key = key_path([*e.absolute_path, missing.group(1)]) if missing else where
            out.append((where, e.message, key))
        elif e.validator == "additionalProperties":
            out.append((where, e.message, where))
        else:
            out.append((where, _short(e.message), where))
    return out


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[:limit] + "…"
