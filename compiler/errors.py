"""One diagnostic type for everything a user can get wrong, so every stage reports the same way.

A stage that finds bad input raises `ConfigError` with one or more `Diagnostic`s (collect them and raise
once, so a user sees every problem in one run). The CLI prints them as `file:line:col: error: ...` and
exits 1; nothing else in the compiler prints to the user.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from loft.runtime.jsonout import UsageExit

Severity = Literal["error", "warning", "note"]  # note: informational (a skipped preview)


@dataclass(frozen=True)
class Diagnostic:
    message: str
    key: str = ""  # dotted key path, e.g. "training.learning_rate" or "data.datasets[0].path"
    file: str = ""
    line: int = 0  # 1-based; 0 when unknown
    col: int = 0  # 1-based; 0 when unknown
    expected: str = ""
    hint: str = ""
    severity: Severity = "error"
    code: str = ""  # short stable id, e.g. "unknown-key", "warmup-longer-than-run"

    def where(self) -> str:
        if not self.file:
            return ""
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file

    def render(self) -> str:
        head = self.where()
        parts = [f"{head}: " if head else "", f"{self.severity}: "]
        if self.key:
            parts.append(f"{self.key}: ")
        parts.append(self.message)
        out = "".join(parts)
        if self.expected:
            out += f"\n    expected: {self.expected}"
        if self.hint:
            out += f"\n    hint: {self.hint}"
        return out

    def as_json(self) -> dict[str, object]:
        """The one error shape of every `--json` (loft.runtime.jsonout)."""
        from loft.runtime.jsonout import error_object

        return error_object(self.message, self.code, col=self.col, expected=self.expected, file=self.file,
                            hint=self.hint, key=self.key, line=self.line, severity=self.severity)


@dataclass
class ConfigError(Exception):
    """Bad input: exit code 1, never a traceback."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)

    @classmethod
    def one(cls, message: str, **kw: object) -> ConfigError:
        return cls([Diagnostic(message, **kw)])  # type: ignore[arg-type]


class UsageError(UsageExit):
    """Bad command line: exit code 2 (the runtime's UsageExit, which the shared argparse Parser raises)."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str:
    """'did you mean X?' text, or '' when nothing is close enough."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        # also catch case and separator slips: learningRate, learning-rate
        norm = {c.lower().replace("-", "_"): c for c in choices}
        key = word.lower().replace("-", "_")
        if key in norm:
            close = [norm[key]]
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


def key_path(parts: Sequence[object]) -> str:
    """('data', 'datasets', 0, 'path') -> 'data.datasets[0].path'."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out
