"""Dump the facts loft's Axolotl key table is checked against, from an installed Axolotl.

    AXOLOTL_DO_NOT_TRACK=1 /path/to/axolotl-venv/bin/python benchmarks/axolotl_schema_facts.py > facts.json

Runs inside Axolotl's own environment (it imports axolotl's pydantic config models) and prints JSON:
{"version", "top": {key: fact}, "dataset": {...}, "pretraining_dataset": {...}, "fsdp_config": {...},
"plugins": {key: fact}} where a fact is {"types": [JSON types], "enum": [...]?, "minimum": n?,
"exclusive_minimum": n?, "default": value?}. `benchmarks/axolotl_keys_sync.py` merges these into
compiler/dialects/axolotl/keys.json (loft's classification of each key stays loft's own data).
"""

from __future__ import annotations

import contextlib
import enum
import json
import sys
import types
import typing
from typing import Any


def json_types(ann: Any, out: dict[str, Any]) -> None:
    """Collect the JSON types (and string enum values) an annotation admits."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    ts: set[str] = out.setdefault("types", set())
    if ann is Any or ann is object:
        ts.add("any")
    elif origin is typing.Annotated:
        json_types(args[0], out)
        for meta in args[1:]:
            for attr, key in (("ge", "minimum"), ("gt", "exclusive_minimum")):
                if getattr(meta, attr, None) is not None:
                    out[key] = getattr(meta, attr)
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            json_types(a, out)
    elif origin is typing.Literal:
        for v in args:
            if v is None:
                ts.add("null")
            elif isinstance(v, bool):
                ts.add("boolean")
            elif isinstance(v, str):
                ts.add("string")
                out.setdefault("enum", []).append(v)
            elif isinstance(v, int):
                ts.add("integer")
            else:
                ts.add("any")
    elif ann is type(None):
        ts.add("null")
    elif ann is bool:
        ts.add("boolean")
    elif ann is int:
        ts.add("integer")
    elif ann is float:
        ts.update(("number", "integer"))
    elif ann is str:
        ts.add("string")
        out["free_string"] = True
    elif isinstance(ann, type) and issubclass(ann, enum.Enum):
        vals = [m.value for m in ann]
        if all(isinstance(v, str) for v in vals):
            ts.add("string")
            out.setdefault("enum", []).extend(vals)
        else:
            ts.add("any")
    elif origin in (list, set, tuple, frozenset) or ann in (list, set, tuple):
        ts.add("array")
    elif origin is dict or ann is dict or (isinstance(ann, type) and hasattr(ann, "model_fields")):
        ts.add("object")
    else:
        ts.add("any")


def plain(v: Any) -> Any:
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    raise TypeError


def facts(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        fact: dict[str, Any] = {}
        json_types(f.annotation, fact)
        for meta in f.metadata:
            for attr, key in (("ge", "minimum"), ("gt", "exclusive_minimum")):
                if getattr(meta, attr, None) is not None:
                    fact[key] = getattr(meta, attr)
        fact["types"] = sorted(fact["types"])
        if "enum" in fact:
            fact["enum"] = sorted(set(fact["enum"]))
        if fact.pop("free_string", False):
            fact.pop("enum", None)
        if "any" in fact["types"]:
            fact = {"types": ["any"], **{k: v for k, v in fact.items() if k in ("minimum", "exclusive_minimum")}}
        if not f.is_required() and f.default_factory is None:
            with contextlib.suppress(TypeError):
                fact["default"] = plain(f.default)
        elif f.default_factory is not None:
            with contextlib.suppress(Exception):
                fact["default"] = plain(f.default_factory())
        out[f.alias or name] = fact
    return dict(sorted(out.items()))


def plugin_models() -> dict[str, Any]:
    """The argument models of the plugins loft reads (their keys sit at the top level of a config)."""
    found: dict[str, Any] = {}
    for mod, cls in (("axolotl.integrations.liger.args", "LigerArgs"),
                     ("axolotl.integrations.cut_cross_entropy.args", "CutCrossEntropyArgs"),
                     ("axolotl.integrations.kernels.args", "KernelsArgs"),
                     ("axolotl.integrations.lm_eval.args", "LMEvalArgs"),
                     ("axolotl.integrations.swanlab.args", "SwanLabConfig")):
        try:
            found[cls] = getattr(__import__(mod, fromlist=[cls]), cls)
        except Exception:
            found[cls] = None
    return found


def main() -> int:
    import axolotl
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.datasets import PretrainingDataset, SFTDataset
    from axolotl.utils.schemas.fsdp import FSDPConfig

    plugins: dict[str, Any] = {}
    missing: list[str] = []
    for cls, model in plugin_models().items():
        if model is None:
            missing.append(cls)
            continue
        for k, v in facts(model).items():
            plugins[k] = {**v, "plugin": cls}
    dump = {"version": axolotl.__version__, "top": facts(AxolotlInputConfig), "dataset": facts(SFTDataset),
            "pretraining_dataset": facts(PretrainingDataset), "fsdp_config": facts(FSDPConfig),
            "plugins": dict(sorted(plugins.items())), "plugins_not_imported": missing}
    json.dump(dump, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
