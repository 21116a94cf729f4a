"""The state one translation carries: the Axolotl mapping, the loft config being built, diagnostics,
and where each loft key came from. Every section module (model, adapter, data, ...) writes through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import Diagnostic
from ...parse import Document


@dataclass
class Translation:
    doc: Document
    d: dict[str, Any] = field(init=False)
    cfg: dict[str, Any] = field(default_factory=dict)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.d = self.doc.data

    def err(self, keys: tuple[object, ...] | list[object], msg: str, code: str = "axolotl-unsupported",
            hint: str = "", expected: str = "") -> None:
        """Record an error; the first one about a key wins (the schema's type check runs first, so a
        section module never repeats it)."""
        diag = self.doc.diag(msg, list(keys), code=code, hint=hint, expected=expected)
        if not (keys and any(e.key == diag.key for e in self.errors)):
            self.errors.append(diag)

    def warn(self, keys: tuple[object, ...] | list[object], msg: str, code: str = "axolotl-no-effect",
             hint: str = "") -> None:
        self.warnings.append(self.doc.diag(msg, list(keys), code=code, hint=hint, severity="warning"))

    def put(self, dotted: str, value: Any, *src: str) -> None:
        """Set a loft key; `src` names the Axolotl keys it came from (diagnostics point back at them)."""
        node = self.cfg
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        if src:
            self.sources.setdefault(dotted, []).extend(s for s in src if s not in self.sources.get(dotted, []))

    def get(self, key: str, default: Any = None) -> Any:
        v = self.d.get(key, default)
        return default if v is None else v

    def given(self, *keys: str) -> list[str]:
        """The keys of `keys` the config sets (for `put`'s sources)."""
        return [k for k in keys if k in self.d]


def off(v: Any) -> bool:
    """Unset, or set to Axolotl's 'off' value: such keys change nothing."""
    return v is None or v is False or v == "" or v == [] or v == {} or (isinstance(v, (int, float)) and
                                                                        not isinstance(v, bool) and v == 0)


def num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None
