"""Translate an Axolotl config into a loft config: Axolotl's semantics, not just its key names.

`translate(doc)` returns the loft config dict (with `loft: 1`) and the warnings; it raises one
`ConfigError` listing every problem at once: keys loft cannot honour because they change training,
misspelled or unknown keys (with a did-you-mean against Axolotl's own key names), and contradictions.
What each key becomes is data (`keys.json`, checked against Axolotl's pydantic schema); each section of
the config has its module below, run in the order of `SECTIONS`. Where loft differs is in docs/axolotl.md.
Everything is a pure function of the document, except that a `deepspeed:` JSON path is read when the file
exists next to the config (or in an Axolotl checkout above it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import ConfigError, Diagnostic
from ...parse import Document
from . import adapter, data, distributed, keys, model, outputs, training
from .context import Translation

SECTIONS: tuple[Callable[[Translation], None], ...] = (
    keys.check, model.model, model.precision, model.attention, adapter.adapter, data.datasets,
    training.sequence, training.training, training.cadence, distributed.distributed, outputs.kernels,
    outputs.tracking, outputs.outputs,
)


def translate(doc: Document) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Axolotl document -> (loft config dict, warnings). Raises ConfigError with every error at once."""
    cfg, warnings, _ = translate_with_sources(doc)
    return cfg, warnings


def translate_with_sources(doc: Document) -> tuple[dict[str, Any], list[Diagnostic], dict[str, list[str]]]:
    """Like `translate`, plus {loft dotted key: [Axolotl keys it came from]} for `loftc convert` comments."""
    t = Translation(doc)
    t.cfg["loft"] = 1
    for section in SECTIONS:
        section(t)
    if t.errors:
        raise ConfigError(t.errors)
    return t.cfg, t.warnings, t.sources
