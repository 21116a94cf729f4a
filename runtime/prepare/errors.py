"""Errors the prepare stage raises for bad input: printed as one clear line, never a traceback."""

from __future__ import annotations


class PrepareError(Exception):
    """The data cannot be prepared (malformed file, bad samples under `bad_samples: fail`, offline hub id)."""


class BadSample(Exception):
    """One sample is unusable; `reason` is the key it is counted under in the report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
