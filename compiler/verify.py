"""`loftc verify`: is a bundle intact (MANIFEST.sha256), built by this loftc (runtime copy), and still what
its sources compile to (rebuilt in memory through the pipeline)?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .bundle import MANIFEST, PLAN, parse_manifest, read_files, sha256
from .errors import ConfigError, Diagnostic


def verify(run_dir: Path, config: Path | None = None) -> list[Diagnostic]:
    """Everything wrong with a bundle: tampered/missing/extra files, a stale runtime copy, a plan that no
    longer matches its config or data (when those are at hand). Errors fail `loftc verify`; warnings don't."""
    run_dir = Path(run_dir)
    where = str(run_dir)
    if not run_dir.is_dir():
        return [Diagnostic(f"{run_dir} is not a directory", file=where, code="not-a-bundle")]
    if not (run_dir / MANIFEST).is_file():
        return [Diagnostic(f"no {MANIFEST} here: not a loft bundle (build one with `loftc build`)", file=where,
                           code="not-a-bundle")]
    try:
        manifest = parse_manifest((run_dir / MANIFEST).read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return [Diagnostic(f"{MANIFEST} is malformed: {e}", file=str(run_dir / MANIFEST), code="bad-manifest")]
    on_disk = read_files(run_dir)
    on_disk.pop(MANIFEST, None)
    diags: list[Diagnostic] = []
    bad: set[str] = set()
    for rel in sorted(set(manifest) | set(on_disk)):
        f = str(run_dir / rel)
        if rel not in on_disk:
            diags.append(Diagnostic(f"missing file {rel} (listed in {MANIFEST})", file=f, code="missing-file"))
            bad.add(rel)
        elif rel not in manifest:
            diags.append(Diagnostic(f"extra file {rel} (not in {MANIFEST})", file=f, code="extra-file",
                                    hint="remove it, or rebuild the bundle with `loftc build`"))
            bad.add(rel)
        elif sha256(on_disk[rel]) != manifest[rel]:
            diags.append(Diagnostic(
                f"{rel} changed since the build (sha256 {sha256(on_disk[rel])[:12]}, manifest says "
                f"{manifest[rel][:12]})", file=f, code="changed-file"))
            bad.add(rel)
    diags.extend(_check_runtime(run_dir, on_disk))
    diags.extend(_check_sources(run_dir, on_disk, bad, config))
    return diags


def _check_runtime(run_dir: Path, on_disk: dict[str, bytes]) -> list[Diagnostic]:
    from .render import RUNTIME_PREFIX, SCHEMAS_PREFIX, runtime_files

    installed = runtime_files()
    copy = {p: b for p, b in on_disk.items() if p.startswith((RUNTIME_PREFIX, SCHEMAS_PREFIX))}
    diags = []
    try:
        from importlib.metadata import version

        ver = version("loft")
    except Exception:  # metadata missing in a source checkout without install
        ver = "?"
    for rel in sorted(set(installed) | set(copy)):
        if installed.get(rel) != copy.get(rel):
            state = "is missing" if rel not in copy else "is not part of" if rel not in installed else "differs from"
            diags.append(Diagnostic(
                f"runtime copy {rel} {state} the installed loft runtime (loft {ver})", file=str(run_dir / rel),
                hint="rebuild the bundle with this loftc, or verify with the loftc that built it",
                code="runtime-differs"))
    return diags


def _check_sources(run_dir: Path, on_disk: dict[str, bytes], bad: set[str], config: Path | None) -> list[Diagnostic]:
    """Rebuild the bundle in memory from its config and data; name every file whose bytes would differ."""
    plan_bytes = on_disk.get(PLAN)
    if plan_bytes is None:
        return []
    try:
        plan = json.loads(plan_bytes)
        source_file = plan["source"]["file"]
    except (ValueError, KeyError, TypeError):
        return [Diagnostic(f"{PLAN} is not a loft plan (invalid JSON or no source.file)", file=str(run_dir / PLAN),
                           code="bad-plan")]
    cfg_path = Path(config) if config is not None else run_dir / source_file
    if not cfg_path.is_file():
        if config is not None:
            return [Diagnostic(f"config {config} not found", file=str(config), code="config-not-found")]
        return [Diagnostic(f"sources not checked: {source_file} is not in the bundle; pass --config to check the "
                           "plan against the config and data it was compiled from", file=str(run_dir),
                           severity="warning", code="sources-not-checked")]
    from . import pipeline  # imported late: verifying a bare bundle needs none of the stages

    try:
        _, new_files = pipeline.compile(cfg_path, out_dir=run_dir,  # with the `--set` overrides it was built with
                                        overrides=plan["source"].get("overrides") or None)
    except ConfigError as e:
        return [Diagnostic(f"cannot rebuild from {cfg_path}: {d.render()}", file=str(cfg_path), severity="warning",
                           code="sources-not-checked") for d in e.diagnostics]
    new_plan: dict[str, Any] = json.loads(new_files[PLAN]) if PLAN in new_files else {}
    reasons = _why_stale(plan, new_plan, cfg_path)
    diags = []
    from .render import RUNTIME_PREFIX, SCHEMAS_PREFIX

    for rel in sorted(set(new_files) | {p for p in on_disk if p != MANIFEST}):
        if rel in bad or rel.startswith((RUNTIME_PREFIX, SCHEMAS_PREFIX)) or rel == MANIFEST:
            continue
        f = str(run_dir / rel)
        if rel not in new_files:
            diags.append(Diagnostic(f"{rel} would not be in a bundle built from {cfg_path.name} now{reasons}",
                                    file=f, code="stale-bundle"))
        elif rel not in on_disk:
            diags.append(Diagnostic(f"{rel} is missing: a build from {cfg_path.name} now writes it{reasons}",
                                    file=f, code="stale-bundle"))
        elif on_disk[rel] != new_files[rel]:
            diags.append(Diagnostic(f"{rel} no longer matches {cfg_path.name}{reasons}", file=f, code="stale-bundle",
                                    hint="rebuild with `loftc build`"))
    return diags


def _why_stale(old: dict[str, Any], new: dict[str, Any], cfg_path: Path) -> str:
    """': data file data/chat.jsonl changed (sha256 a → b); …' from the two plans."""
    reasons = []
    old_src, new_src = old.get("source", {}), new.get("source", {})
    if old_src.get("sha256") != new_src.get("sha256"):
        reasons.append(f"{cfg_path.name} changed (sha256 {str(old_src.get('sha256'))[:12]} → "
                       f"{str(new_src.get('sha256'))[:12]})")
    old_data = {d.get("name"): d for d in old.get("data", {}).get("datasets", [])}
    for d in new.get("data", {}).get("datasets", []):
        o = old_data.get(d.get("name"))
        if o is None:
            reasons.append(f"dataset {d.get('name')} is new")
        elif o.get("sha256") != d.get("sha256"):
            reasons.append(f"data file {d.get('path')} changed (sha256 {str(o.get('sha256'))[:12]} → "
                           f"{str(d.get('sha256'))[:12]})")
    if not reasons and old != new:
        from .diff import diff_plans

        changes = diff_plans(old, new)
        reasons.extend(f"{c.key}: {c.old_text()} → {c.new_text()}" for c in changes[:3])
        if len(changes) > 3:
            reasons.append(f"… {len(changes) - 3} more (loftc diff)")
    return ": " + "; ".join(reasons) if reasons else ""
