"""`loftc convert AXOLOTL.yml -o loft.yaml`: write the loft config an Axolotl config translates to.

The output is a clean loft config for the user to keep: sections in the order of docs/config.md, each
translated key commented with the Axolotl key(s) it came from, and the translation's warnings in the
header. Local paths are rewritten relative to the new file, so building the converted file gives the
same plan as building the Axolotl file. An existing file is never overwritten without --force.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Diagnostic

_COMMENT_COLUMN = 44
ORDER = ("loft", "name", "model", "data", "template", "template_mask_fallback", "sequence", "adapter", "training",
         "deepspeed", "fsdp", "sweep", "eval", "export", "target", "tracking", "output_dir")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert", help="convert an Axolotl config into a loft config",
                       description="Translate an Axolotl YAML config into an equivalent, commented loft config.")
    p.add_argument("config", help="an Axolotl YAML config")
    p.add_argument("-o", "--out", default=None, help="loft YAML to write (default: print to stdout)")
    p.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    p.add_argument("--strict", action="store_true", help="treat translation warnings as errors")


def run(args: argparse.Namespace) -> int:
    if args.out is not None and Path(args.out).exists() and not args.force:
        raise ConfigError([Diagnostic("already exists; pass --force to overwrite it", file=str(args.out),
                                      code="exists")])
    text, warnings = convert(args.config, args.out if args.out is not None else stdout_file())
    if args.strict and warnings:
        from dataclasses import replace

        raise ConfigError([replace(w, severity="error", hint=(w.hint + "; " if w.hint else "") + "--strict")
                           for w in warnings])
    for w in warnings:
        print(w.render(), file=sys.stderr)
    if getattr(args, "json", False):
        if args.out is not None:
            write(Path(args.out), text, force=args.force)
        print(json.dumps({"ok": True, "out": args.out, "config": text if args.out is None else None,
                          "warnings": [w.as_json() for w in warnings]}, sort_keys=True, ensure_ascii=False))
        return 0
    if args.out is None:
        sys.stdout.write(text)
        return 0
    write(Path(args.out), text, force=args.force)
    print(f"wrote {args.out} ({len(warnings)} warning(s)); build it with: loftc build {args.out} -o run/",
          file=sys.stderr)
    return 0


def stdout_file() -> str | None:
    """The file stdout is redirected to (`loftc convert ax.yml > elsewhere/cfg.yaml`), so its paths are
    relative to that file; None for a terminal or a pipe (paths are then relative to the current folder)."""
    try:
        if not stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
            return None
        target = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except (OSError, ValueError, AttributeError):
        return None
    return target if os.path.isabs(target) and os.path.exists(target) else None


def convert(path: str | Path, out: str | Path | None = None) -> tuple[str, list[Diagnostic]]:
    """Axolotl file -> (loft YAML text, translation warnings). `out` is where the text will live (for paths)."""
    from ..dialects import detect
    from ..dialects.axolotl import translate_with_sources
    from ..parse import parse
    from ..validate import validate

    doc = parse(path)
    dialect, reason = detect(doc)
    if dialect != "axolotl":
        raise ConfigError([Diagnostic(f"is already a loft config ({reason}); nothing to convert", file=doc.path,
                                      line=1, col=1, code="dialect")])
    cfg, warnings, sources = translate_with_sources(doc)
    src_dir = Path(doc.path).resolve().parent
    out_dir = Path(out).resolve().parent if out is not None else Path.cwd().resolve()
    _rebase_paths(cfg, src_dir, out_dir)
    validate(cfg, doc=None, file=doc.path)
    return render(cfg, sources, warnings, Path(doc.path).name), warnings


def _rebase(value: str, src_dir: Path, out_dir: Path) -> str:
    """A local path relative to the Axolotl file -> relative to the converted file; hub ids unchanged."""
    p = Path(value)
    if p.is_absolute():
        return value
    full = src_dir / p
    if not (value.startswith(("./", "../")) or full.exists()):
        return value  # a hub id such as org/name
    return os.path.relpath(full, out_dir).replace(os.sep, "/")


def _rebase_paths(cfg: dict[str, Any], src_dir: Path, out_dir: Path) -> None:
    if src_dir == out_dir:
        return
    model = cfg.get("model", {})
    for k in ("base", "tokenizer"):
        if isinstance(model.get(k), str):
            model[k] = _rebase(model[k], src_dir, out_dir)
    for ds in cfg.get("data", {}).get("datasets", []):
        if isinstance(ds.get("path"), str):
            ds["path"] = _rebase(ds["path"], src_dir, out_dir)
    t = cfg.get("template")
    if isinstance(t, str) and t.endswith(".jinja"):
        cfg["template"] = _rebase(t, src_dir, out_dir)


def render(cfg: dict[str, Any], sources: dict[str, list[str]], warnings: list[Diagnostic], src_name: str) -> str:
    """The loft config as commented YAML (ruamel round-trip writer, so comments survive)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def build(node: Any, prefix: str) -> Any:
        if isinstance(node, dict):
            m = CommentedMap()
            keys = [k for k in ORDER if k in node] + [k for k in node if k not in ORDER] if not prefix \
                else list(node)
            for k in keys:
                dotted = f"{prefix}.{k}" if prefix else k
                m[k] = build(node[k], dotted)
                src = sources.get(dotted)
                if src:
                    m.yaml_add_eol_comment("axolotl: " + ", ".join(src), k, column=_COMMENT_COLUMN)
            return m
        if isinstance(node, list):
            s = CommentedSeq()
            for i, v in enumerate(node):
                s.append(build(v, f"{prefix}[{i}]"))
            return s
        return node

    top = build(cfg, "")
    head = [f"loft config converted from the Axolotl config {src_name} by `loftc convert`.",
            "Each translated key names the Axolotl key(s) it came from; docs/axolotl.md lists every mapping."]
    if warnings:
        head.append("Translation warnings (settings with no effect, or where loft differs):")
        head += [f"  - {w.key + ': ' if w.key else ''}{w.message}" for w in warnings]
    top.yaml_set_start_comment("\n".join(head))
    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(top, buf)
    return buf.getvalue()


def write(out: Path, text: str, force: bool) -> None:
    """Write atomically; refuse to replace an existing file unless forced."""
    if out.exists() and not force:
        raise ConfigError([Diagnostic("already exists; pass --force to overwrite it", file=str(out),
                                      code="exists")])
    if out.is_dir():
        raise ConfigError([Diagnostic("is a directory; give a file name such as loft.yaml", file=str(out),
                                      code="exists")])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".loftc-convert-", dir=str(out.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
