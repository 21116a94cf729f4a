"""`loftc build cfg.yaml --set training.learning_rate=1e-4 --set data.datasets[0].weight=2`: per-key
overrides of the loft config, as Axolotl (`--key=value`) and LLaMA-Factory (`key=value`) users expect.

Values are parsed as YAML scalars/flow collections (`1e-4`, `true`, `null`, `[q_proj, v_proj]`); keys are
loft config paths (list items by index), applied after an Axolotl config is translated and before
validation, so a wrong key or value gets validate's usual error and did-you-mean. plan.lock records them
under `source.overrides`, exactly as given, beside the untouched source config.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from loft.runtime.sweep.space import split_key

from .errors import UsageError


def parse(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings → {key: value} (later ones win); UsageError (exit 2) when malformed."""
    from ruamel.yaml import YAML, YAMLError

    yaml = YAML(typ="safe", pure=True)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set training.learning_rate=1e-4")
        try:
            split_key(key)
        except ValueError:
            raise UsageError(f"--set {item!r}: {key!r} is not a config key path (e.g. data.datasets[0].weight)") from None
        if len(text) > 4096:
            raise UsageError(f"--set {key}: the value is longer than 4096 characters")
        try:
            value = yaml.load(text) if text.strip() else ""
        except YAMLError as e:
            raise UsageError(f"--set {key}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
        out[key] = value
    return out


def apply(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of `config` with each override set (missing mappings created; validate judges the result)."""
    if not overrides:
        return config
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        parts = split_key(key)
        node = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    raise UsageError(f"--set {key}: there is no item {part} there (the list has "
                                     f"{len(node) if isinstance(node, list) else 0})")
            elif not isinstance(node, dict):
                raise UsageError(f"--set {key}: {'.'.join(str(p) for p in parts[:i])} is not a section")
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
    return out
