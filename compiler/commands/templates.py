"""`loftc templates list | show NAME | check FILE | tag FILE`: the tagged chat template library.

FILE may be a .jinja file, a tokenizer_config.json (its `chat_template`), a model directory, or a library
name. Nothing here imports a training library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Diagnostic, did_you_mean


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "templates", help="list, show, check and auto-tag chat templates",
        description="loft's chat templates carry {% generation %} tags so the loss covers only the "
                    "assistant's tokens. `check` verifies a template's tags (and parity with a reference); "
                    "`tag` inserts tags where it can prove the rendering is unchanged.")
    sub = p.add_subparsers(dest="templates_command", metavar="ACTION")
    sub.required = True

    ls = sub.add_parser("list", help="the library's families, their aliases and tokens")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(tfunc=run_list)

    show = sub.add_parser("show", help="print a library template")
    show.add_argument("name", help="family name or alias (e.g. qwen2.5, llama3, chatml, qwen_25)")
    show.add_argument("--untagged", action="store_true", help="print it with the generation tags removed")
    show.add_argument("--example", action="store_true",
                      help="render a short conversation, the assistant's part between ⟦ and ⟧")
    show.set_defaults(tfunc=run_show)

    check = sub.add_parser("check", help="are a template's generation tags present and well formed?")
    check.add_argument("file", help="a .jinja file, tokenizer_config.json, model directory or library name")
    check.add_argument("--reference", help="a template that FILE must render identically to (tags ignored)")
    check.add_argument("--end-of-turn", help="the end-of-turn token (default: from the family, or detected)")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(tfunc=run_check)

    tag = sub.add_parser("tag", help="insert generation tags where parity can be proven")
    tag.add_argument("file", help="an untagged .jinja file, tokenizer_config.json or model directory")
    tag.add_argument("-o", "--output", type=Path, help="write the tagged template here (default: stdout)")
    tag.add_argument("--end-of-turn", help="the end-of-turn token (default: detected from the rendering)")
    tag.set_defaults(tfunc=run_tag)

    return p


def run(args: argparse.Namespace) -> int:
    return int(args.tfunc(args))


def _library_name(name: str) -> str:
    from ..templates import families, resolve_name

    fam = resolve_name(name)
    if fam is None:
        hint = did_you_mean(name, sorted(families()))
        raise ConfigError([Diagnostic(f"no library template named {name!r}", key="template",
                                      hint=hint or "see `loftc templates list`", code="unknown-template")])
    return fam


def load_text(spec: str) -> tuple[str, str]:
    """(template text, where it came from) for a file, tokenizer_config.json, model dir or library name."""
    from ..templates import library_text, read_model_template, resolve_name

    path = Path(spec)
    if path.is_dir():
        text = read_model_template(path)
        if text is None:
            raise ConfigError.one(f"{spec}: no chat_template.jinja or tokenizer_config.json chat_template", file=spec)
        return text, spec
    if path.is_file():
        raw = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                tpl = json.loads(raw).get("chat_template")
            except (ValueError, AttributeError):
                tpl = None
            if not isinstance(tpl, str):
                raise ConfigError.one(f"{spec}: no string `chat_template` in this JSON file", file=spec)
            return tpl, spec
        return raw, spec
    fam = resolve_name(spec)
    if fam is not None:
        return library_text(fam), f"library:{fam}"
    raise ConfigError.one(f"{spec}: no such file, directory or library template", file=spec,
                          code="template-missing")


def run_list(args: argparse.Namespace) -> int:
    from ..templates import families

    fams = families()
    if args.format == "json":
        print(json.dumps({"ok": True, "families": fams}, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    rows = [("family", "end of turn", "system", "date", "aliases")]
    for name in sorted(fams):
        f = fams[name]
        rows.append((name, f["end_of_turn"], f["system_role"], "yes" if f["needs_date"] else "-",
                     ", ".join(a for a in f["aliases"] if a != name)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4])
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..template_env import render_spans, strip_generation_tags
    from ..templates import family_specials, library_text

    fam = _library_name(args.name)
    text = library_text(fam)
    if args.example:
        msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi!"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}]
        if fam == "gemma2":
            msgs = msgs[1:]
        specials: dict[str, Any] = family_specials(fam)
        r = render_spans(text, msgs, False, **specials)
        out, pos = [], 0
        for a, b in r.spans:
            out += [r.text[pos:a], "⟦", r.text[a:b], "⟧"]
            pos = b
        out.append(r.text[pos:])
        sys.stdout.write("".join(out) + "\n")
        return 0
    sys.stdout.write(strip_generation_tags(text) if args.untagged else text)
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..templates import check_template

    text, origin = load_text(args.file)
    reference = load_text(args.reference)[0] if args.reference else None
    report = check_template(text, reference, end_of_turn=args.end_of_turn)
    if args.format == "json":
        print(json.dumps({"file": origin, "ok": report.ok, "tagged": report.tagged,
                          "well_formed": report.well_formed, "problems": report.problems,
                          "end_of_turn": report.end_of_turn, "family": report.family, "parity": report.parity,
                          "parity_failures": report.parity_failures}, indent=2, sort_keys=True,
                         ensure_ascii=False))
    else:
        print(f"{origin}:")
        print(report.to_text())
        if not report.tagged:
            print("hint: `loftc templates tag " + args.file + "` inserts the tags where it can prove parity, "
                  "or set `template_mask_fallback: true` to train with prefix masking")
    return 0 if report.ok else 1


def run_tag(args: argparse.Namespace) -> int:
    from ..templates import tag_template

    text, origin = load_text(args.file)
    result = tag_template(text, end_of_turn=args.end_of_turn)
    if not result.ok or result.text is None:
        print(f"{origin}: cannot tag: {result.reason}", file=sys.stderr)
        return 1
    if args.output is not None:
        args.output.write_text(result.text, encoding="utf-8")
        print(f"{origin}: {result.reason} (end of turn {result.end_of_turn!r}) → {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(result.text)
        print(f"{origin}: {result.reason} (end of turn {result.end_of_turn!r})", file=sys.stderr)
    return 0
