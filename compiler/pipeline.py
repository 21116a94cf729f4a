"""The compiler, top to bottom: parse → detect → translate → validate → resolve → estimate → render → write.

Each stage is a plain function of plain data; this module only strings them together so the flow reads
in one screen, resolve's sub-stages (compiler/resolve/) included. Heavy or optional stages (render, estimate, the Axolotl dialect) are imported where they
are used, so `loftc build` starts fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, Diagnostic
from .parse import Document, parse

WarningHook = Callable[[list[Diagnostic]], None]
Locate = Callable[[Diagnostic], Diagnostic]


@dataclass(frozen=True)
class Resolved:
    """What resolve returns: the plan.lock content, extra bundle files, and warnings with line:col."""

    plan: dict[str, Any]
    attachments: dict[str, bytes] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)


def load(path: str | Path, dialect: str | None = None, overrides: dict[str, Any] | None = None
         ) -> tuple[Document, dict[str, Any], str, list[Diagnostic]]:
    """parse → detect → translate → (--set overrides) → validate: (document, valid loft config, dialect, warnings)."""
    doc, config, name, warnings, _locate = _load(path, dialect, overrides)
    return doc, config, name, warnings


def _load(path: str | Path, dialect: str | None, overrides: dict[str, Any] | None = None
          ) -> tuple[Document, dict[str, Any], str, list[Diagnostic], Locate]:
    from .dialects import detect
    from .overrides import apply
    from .validate import validate

    doc = parse(path)
    name, _reason = detect(doc, dialect)
    if name != "axolotl":
        return doc, validate(apply(doc.data, overrides or {}), doc=doc), name, [], lambda d: d
    from .dialects.axolotl import translate_with_sources
    from .validate import document_errors

    bad = document_errors(doc)  # before translating: source.config keeps every key as given
    if bad:
        raise ConfigError(bad)
    config, warnings, sources = translate_with_sources(doc)
    locate = _axolotl_locator(doc, sources)
    try:
        config = validate(apply(config, overrides or {}), doc=None, file=doc.path)
    except ConfigError as e:
        raise ConfigError([locate(d) for d in e.diagnostics]) from None
    return doc, config, name, [locate(d) for d in warnings], locate


def _axolotl_locator(doc: Document, sources: dict[str, list[str]]) -> Locate:
    """Point a diagnostic about a translated loft key at the Axolotl key it came from."""

    def locate(d: Diagnostic) -> Diagnostic:
        if d.line:
            return d
        if not d.key:
            return replace(d, file=d.file or doc.path, line=1, col=1)
        key = d.key
        while key:
            if sources.get(key):
                path: list[object] = [sources[key][0]]
                index = re.match(r"^\[(\d+)\]", d.key[len(key):])
                if index:
                    path.append(int(index.group(1)))
                line, col = doc.pos(path)
                return replace(d, file=d.file or doc.path, line=line, col=col) if line else d
            key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
        return replace(d, file=d.file or doc.path, line=1, col=1)  # no Axolotl key gave it: the top of the file

    return locate


def resolve(doc: Document, config: dict[str, Any], dialect: str = "loft",
            out_dir: str | Path | None = None) -> Resolved:
    """Stage 5: a valid config → the plan. One sub-stage per concern (compiler/resolve/<module>.py), each
    recording its decisions; a sub-stage that needs an earlier one's result runs only when that one found
    no errors."""
    from .resolve import Context, batch, data, defaults, launch, model, runnable, source, template, versions

    ctx = Context.create(doc, config, dialect, out_dir)
    defaults.settle(ctx)
    runnable.audit(ctx)
    the_model, model_dir = model.resolve_model(ctx)
    datasets = data.resolve_data(ctx)
    blocklist = data.resolve_blocklist(ctx, datasets)
    ctx.check()
    the_template = template.resolve_template(ctx, the_model, model_dir)
    ctx.check()
    derived = batch.resolve_derived(ctx, datasets)
    the_plan: dict[str, Any] = {
        "format": versions.PLAN_FORMAT,
        "loft_version": versions.LOFT_VERSION,
        "name": ctx.cfg["name"],
        "source": source.resolve_source(ctx),
        "config": ctx.cfg,
        "model": the_model,
        "data": {"datasets": datasets, **({"blocklist": blocklist} if blocklist else {})},
        "template": the_template,
        "derived": derived,
        "launch": launch.resolve_launch(ctx),
        "estimate": None,
        "versions": versions.resolve_versions(ctx),
        "sweep": None,  # every trial resolved and estimated like the run, after it (`_sweep`)
        "warnings": [],
    }
    ctx.check()
    return Resolved(plan=the_plan, attachments=dict(sorted(ctx.attachments.items())), warnings=ctx.warnings)


def plan(path: str | Path, out_dir: str | Path | None = None, dialect: str | None = None,
         estimate: bool = True, overrides: dict[str, Any] | None = None) -> Resolved:
    """load → resolve (→ estimate) → suspicious-combination warnings. Paths are relative to `out_dir`
    (the bundle), or to the config's directory when there is no bundle (check / estimate)."""
    from . import sweep as sweeps
    from . import warnings as suspicious

    doc, config, name, warnings, locate = _load(path, dialect, overrides)
    try:
        resolved = resolve(doc, config, dialect=name, out_dir=out_dir)
    except ConfigError as e:
        raise ConfigError([locate(d) for d in e.diagnostics]) from None
    the_plan = resolved.plan
    if overrides:
        the_plan["source"]["overrides"] = dict(sorted(overrides.items()))
    if estimate:
        from .estimate import estimate_plan

        the_plan["estimate"] = estimate_plan(the_plan)
    the_plan["sweep"] = _sweep(doc, config, name, out_dir, the_plan, estimate, locate)
    found = [*resolved.warnings, *suspicious.collect(the_plan, doc if name == "loft" else None, doc.path)]
    found += sweeps.trial_warnings(the_plan["sweep"], doc.pos, doc.path)
    diags = _dedupe([*warnings, *(locate(d) for d in found)], main_file=doc.path)
    the_plan["warnings"] = [{"code": d.code, "key": d.key, "message": d.message} for d in diags]
    return Resolved(plan=the_plan, attachments=resolved.attachments, warnings=diags)


def _sweep(doc: Document, config: dict[str, Any], dialect: str, out_dir: str | Path | None,
           base: dict[str, Any], estimate: bool, locate: Locate) -> dict[str, Any] | None:
    """plan.sweep: every grid/random trial through validate → resolve → estimate, like the run itself."""
    from . import sweep as sweeps
    from .validate import validate

    def resolve_trial(trial_config: dict[str, Any]) -> dict[str, Any]:
        valid = validate(trial_config, doc=None, file=doc.path)
        trial_plan = resolve(doc, valid, dialect=dialect, out_dir=out_dir).plan
        if estimate:
            from .estimate import estimate_plan

            trial_plan["estimate"] = estimate_plan(trial_plan)
        return trial_plan

    try:
        return sweeps.resolve_trials(config, base, resolve_trial, doc.pos, doc.path)
    except ConfigError as e:
        raise ConfigError([locate(d) for d in e.diagnostics]) from None


def compile(path: str | Path, out_dir: str | Path, dialect: str | None = None,
            on_warnings: WarningHook | None = None, overrides: dict[str, Any] | None = None
            ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """plan → render: (plan, every bundle file except MANIFEST.sha256). `on_warnings` sees the warnings
    before anything is rendered (the CLI prints them there, and raises in --strict mode)."""
    from .render import render_bundle

    resolved = plan(path, out_dir=out_dir, dialect=dialect, overrides=overrides)
    if on_warnings is not None:
        on_warnings(resolved.warnings)
    return resolved.plan, render_bundle(resolved.plan, resolved.attachments)


def build(path: str | Path, out_dir: str | Path, force: bool = False, dialect: str | None = None,
          on_warnings: WarningHook | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """compile → write the bundle atomically; returns the plan."""
    from .bundle import write_bundle

    the_plan, files = compile(path, out_dir, dialect=dialect, on_warnings=on_warnings, overrides=overrides)
    write_bundle(Path(out_dir), files, force)
    return the_plan


def _dedupe(diags: list[Diagnostic], main_file: str) -> list[Diagnostic]:
    """Drop repeats and order by position: the config's own first, then a data.config file's. The file
    names themselves are not sorted on: they depend on the working directory, plan.lock must not."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Diagnostic] = []
    for d in diags:
        k = (d.code, d.key, d.message)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return sorted(out, key=lambda d: (d.file != main_file, d.line or 10**9, d.col, d.code, d.key, d.message))
