"""Expand `sweep:` into numbered trials, each a set of dotted-key overrides of the resolved config.

Grid: the cartesian product of every parameter's list, keys in sorted order, values in the order given
(so trial numbers are stable when a config is reformatted). Random: `trials` points drawn with a
`random.Random(seed)` from lists (uniform choice) or `{min, max, log}` ranges; sampled floats are rounded
to 6 significant digits so plan.lock stays readable and identical across platforms.

The runtime applies a trial's overrides itself (`--trial N`); the compiler only numbers and checks them.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Iterator
from typing import Any

from .errors import ConfigError, Diagnostic, did_you_mean

_INDEX = re.compile(r"^(?P<key>[^\[\]]+)((\[\d+\])*)$")


def expand(config: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"trial": i, "overrides": {dotted key: value}}]; a single empty trial when there is no sweep."""
    sweep = config.get("sweep")
    if not sweep:
        return [{"trial": 0, "overrides": {}}]
    params: dict[str, Any] = sweep.get("params") or {}
    diags: list[Diagnostic] = []
    if not params:
        diags.append(Diagnostic("a sweep needs at least one parameter", key="sweep.params",
                                expected='{"training.learning_rate": [1.0e-4, 2.0e-4]}', code="sweep-empty"))
    known = sorted(_leaf_paths(config))
    for name in sorted(params):
        if name.startswith("sweep") or not _exists(config, name):
            hint = did_you_mean(name, known)
            diags.append(Diagnostic(f"sweep parameter {name!r} is not a key of the config",
                                    key=f"sweep.params.{name}", expected="a dotted key path such as "
                                    "'training.learning_rate'", hint=hint, code="sweep-unknown-key"))
    method = sweep.get("method", "grid")
    for name in sorted(params):
        spec = params[name]
        if isinstance(spec, list):
            if not spec:
                diags.append(Diagnostic("an empty list of values", key=f"sweep.params.{name}",
                                        expected="at least one value", code="sweep-empty-values"))
        elif isinstance(spec, dict) and "min" in spec and "max" in spec:
            if method == "grid":
                diags.append(Diagnostic("a {min, max} range cannot be enumerated by a grid sweep",
                                        key=f"sweep.params.{name}", expected="a list of values",
                                        hint="list the values, or use method: random", code="sweep-range-in-grid"))
            elif not _range_ok(spec):
                diags.append(Diagnostic(f"bad range {spec!r}", key=f"sweep.params.{name}",
                                        expected="numbers with min <= max (min > 0 when log: true)",
                                        code="sweep-bad-range"))
        else:
            diags.append(Diagnostic(f"bad sweep values {spec!r}", key=f"sweep.params.{name}",
                                    expected="a list of values or {min, max, log}", code="sweep-bad-values"))
    if diags:
        raise ConfigError(diags)
    names = sorted(params)
    if method == "random":
        rng = random.Random(int(sweep.get("seed", 0) or 0))
        trials = int(sweep.get("trials") or 1)
        points = [{n: _sample(rng, params[n]) for n in names} for _ in range(trials)]
    else:
        points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(params[n] for n in names))]
    return [{"trial": i, "overrides": p} for i, p in enumerate(points)]


def apply(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` with one trial's overrides set (for validating each trial)."""
    out = copy.deepcopy(config)
    for name, value in overrides.items():
        *parents, last = _split(name)
        node: Any = out
        for part in parents:
            node = node[part]
        node[last] = value
    return out


def _split(name: str) -> list[str | int]:
    """'data.datasets[0].weight' -> ['data', 'datasets', 0, 'weight']; ValueError when malformed."""
    parts: list[str | int] = []
    for piece in name.split("."):
        m = _INDEX.match(piece)
        if not m:
            raise ValueError(name)
        parts.append(m.group("key"))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", piece))
    return parts


def _exists(config: dict[str, Any], name: str) -> bool:
    try:
        parts = _split(name)
    except ValueError:
        return False
    node: Any = config
    for part in parts:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path of the config (maps walked, lists indexed), for did-you-mean."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path
            yield from _leaf_paths(v, path)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, dict):
                yield from _leaf_paths(v, f"{prefix}[{i}]")


def _range_ok(spec: dict[str, Any]) -> bool:
    lo, hi = spec["min"], spec["max"]
    if isinstance(lo, bool) or isinstance(hi, bool):
        return False
    if not isinstance(lo, int | float) or not isinstance(hi, int | float) or lo > hi:
        return False
    return not (spec.get("log") and lo <= 0)


def _sample(rng: random.Random, spec: Any) -> Any:
    if isinstance(spec, list):
        return spec[rng.randrange(len(spec))]
    lo, hi, log = spec["min"], spec["max"], bool(spec.get("log", False))
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
    if isinstance(lo, int) and isinstance(hi, int):
        return min(hi, max(lo, round(x)))
    return float(f"{x:.6g}")
