"""Small helpers shared by the Axolotl dialect tests."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from loft.compiler.dialects.axolotl import translate
from loft.compiler.errors import ConfigError, Diagnostic
from loft.compiler.parse import parse_text

BASE = """\
base_model: meta-llama/Llama-3.2-1B
datasets:
  - path: mlabonne/FineTome-100k
    type: chat_template
sequence_len: 1024
micro_batch_size: 2
gradient_accumulation_steps: 4
num_epochs: 1
learning_rate: 2e-5
"""


def tr(extra: str = "", base: str = BASE, path: str = "axo.yml") -> tuple[dict[str, Any], list[Diagnostic]]:
    """Translate BASE plus `extra` YAML (later keys replace earlier ones)."""
    return translate(parse_text(merge(base, extra), path))


def merge(base: str, extra: str) -> str:
    extra = textwrap.dedent(extra)
    keys = {line.split(":")[0] for line in extra.splitlines() if line and not line[0].isspace()}
    kept: list[str] = []
    skipping = False
    for line in base.splitlines():
        if line and not line[0].isspace():
            skipping = line.split(":")[0] in keys
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n" + extra


def errors_of(extra: str, base: str = BASE) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as e:
        tr(extra, base)
    return e.value.diagnostics


def codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def keys(diags: list[Diagnostic]) -> list[str]:
    return [d.key for d in diags]
