"""Prepare stage: datasets → tokenized, masked, fitted, blended, packed training data (see stage.py)."""

from __future__ import annotations

from typing import Any

from loft.runtime.plan import Bundle
from loft.runtime.prepare.errors import BadSample, PrepareError

__all__ = ["BadSample", "PrepareError", "run"]


def run(bundle: Bundle, log: Any = print) -> dict[str, Any]:
    """Prepare `bundle`'s data under bundle.out; returns the report (see docs/architecture.md)."""
    from loft.runtime.prepare.stage import run as _run

    return _run(bundle, log=log)
