"""The compiler, top to bottom: parse → detect → translate → validate → resolve → estimate → render → write.

Each stage is a plain function of plain data; this module only strings them together so the flow reads
in one screen. Heavy or optional stages (render, estimate, the Axolotl dialect) are imported where they
are used, so `loftc build` starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostic
from .parse import Document, parse

WarningHook = Callable[[list[Diagnostic]], None]


@dataclass(frozen=True)
class Resolved:
    """What resolve returns: the plan.lock content, extra bundle files, and warnings with line:col."""

    plan: dict[str, Any]
    attachments: dict[str, bytes] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)


def load(path: str | Path, dialect: str | None = None) -> tuple[Document, dict[str, Any], str, list[Diagnostic]]:
    """parse → detect → translate → validate: (document, valid loft config, dialect, warnings)."""
    from .dialects import detect
    from .validate import validate

    doc = parse(path)
    name, _reason = detect(doc, dialect)
    warnings: list[Diagnostic] = []
    if name == "axolotl":
        from .dialects.axolotl import translate

        config, warnings = translate(doc)
        config = validate(config, doc=None, file=doc.path)
    else:
        config = validate(doc.data, doc=doc)
    return doc, config, name, list(warnings)


def plan(path: str | Path, out_dir: str | Path | None = None, dialect: str | None = None,
         estimate: bool = True) -> Resolved:
    """load → resolve (→ estimate) → suspicious-combination warnings. Paths are relative to `out_dir`
    (the bundle), or to the config's directory when there is no bundle (check / estimate)."""
    from . import warnings as suspicious
    from .resolve import resolve

    doc, config, name, warnings = load(path, dialect)
    the_plan, attachments, resolve_warnings = resolve(doc, config, dialect=name, out_dir=out_dir)
    if estimate:
        from .estimate import estimate_plan

        the_plan["estimate"] = estimate_plan(the_plan)
    diags = _dedupe([*warnings, *resolve_warnings, *suspicious.collect(the_plan, doc if name == "loft" else None, doc.path)])
    the_plan["warnings"] = [{"code": d.code, "key": d.key, "message": d.message} for d in diags]
    return Resolved(plan=the_plan, attachments=attachments, warnings=diags)


def compile(path: str | Path, out_dir: str | Path, dialect: str | None = None,
            on_warnings: WarningHook | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
    """plan → render: (plan, every bundle file except MANIFEST.sha256). `on_warnings` sees the warnings
    before anything is rendered (the CLI prints them there, and raises in --strict mode)."""
    from .render import render_bundle

    resolved = plan(path, out_dir=out_dir, dialect=dialect)
    if on_warnings is not None:
        on_warnings(resolved.warnings)
    return resolved.plan, render_bundle(resolved.plan, resolved.attachments)


def build(path: str | Path, out_dir: str | Path, force: bool = False, dialect: str | None = None,
          on_warnings: WarningHook | None = None) -> dict[str, Any]:
    """compile → write the bundle atomically; returns the plan."""
    from .bundle import write_bundle

    the_plan, files = compile(path, out_dir, dialect=dialect, on_warnings=on_warnings)
    write_bundle(Path(out_dir), files, force)
    return the_plan


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Drop repeats (same code and key) and order by position, so output is stable."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Diagnostic] = []
    for d in diags:
        k = (d.code, d.key, d.message)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return sorted(out, key=lambda d: (d.file, d.line or 10**9, d.col, d.code, d.key))
