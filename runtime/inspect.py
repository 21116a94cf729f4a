"""Token inspector: raw → preprocessed → templated → tokens → loss mask, for a few samples.

Shared by `loft debug-tokens RUN_DIR` (terminal colours, optional HTML page) and by `loftc check`'s
tokenization preview (`preview`, imported lazily by the compiler). It runs the very code prepare runs
(formats.normalize + template.Encoder), so what it shows is what training gets.
"""

from __future__ import annotations

import dataclasses
import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IGNORE = -100
TRAINED = "\x1b[1;30;42m"   # black on green: tokens with a loss
PROMPT = "\x1b[2m"          # dim: context only
RESET = "\x1b[0m"


@dataclass
class TokenView:
    id: int
    text: str
    trained: bool


@dataclass
class SampleView:
    sample_id: str
    raw: dict[str, Any]
    preprocessed: dict[str, Any] | None = None
    templated: str = ""
    tokens: list[TokenView] = field(default_factory=list)
    error: str | None = None

    @property
    def trained_count(self) -> int:
        return sum(t.trained for t in self.tokens)


def _load_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(tokenizer))
    return tokenizer


def explain(samples: list[Any], tokenizer: Any, template_text: str, dataset: dict[str, Any] | None = None,
            mask: str = "generation", end_of_turn: str | None = None, train_on_incomplete: bool = False,
            ids: list[str] | None = None, date_string: str | None = None) -> list[SampleView]:
    """One SampleView per raw sample. `dataset` is the dataset's config entry (format, field mappings,
    roles_to_train, train_on_eos, ...); `tokenizer` a loaded fast tokenizer or a path / hub id."""
    from loft.runtime.prepare.errors import BadSample
    from loft.runtime.prepare.formats import DatasetSpec, normalize
    from loft.runtime.prepare.template import Encoder

    tok = _load_tokenizer(tokenizer)
    spec = DatasetSpec.from_config({"name": "sample", **(dataset or {})})
    encoder = Encoder(tok, template_text, mask, end_of_turn, spec, train_on_incomplete, keep_text=True,
                      template_vars={"date_string": date_string} if date_string else None)
    views = []
    for n, raw in enumerate(samples):
        if not isinstance(raw, dict):  # e.g. load.MalformedLine from row_dicts: a line that is not JSON
            views.append(SampleView(sample_id=ids[n] if ids else f"{spec.name}:{n}", raw={},
                                    error=f"malformed_json: {raw}"))
            continue
        view = SampleView(sample_id=ids[n] if ids else f"{spec.name}:{n}", raw=raw)
        try:
            ex = normalize(raw, spec)
        except BadSample as bad:
            view.error = str(bad)
            views.append(view)
            continue
        view.preprocessed = {"messages": ex.messages} if ex.messages is not None else \
            {"segments": [{"text": t, "trained": tr} for t, tr in ex.segments or []]}
        if not ex.complete:
            view.preprocessed["_complete"] = False
        result = encoder.encode([ex])[0]
        if isinstance(result, BadSample):
            view.error = str(result)
        else:
            view.templated = result.text
            view.tokens = [TokenView(i, tok.decode([i]), lab != IGNORE)
                           for i, lab in zip(result.input_ids, result.labels, strict=True)]
        views.append(view)
    return views


def _visible(text: str) -> str:
    return text.replace("\n", "↵\n").replace("\t", "⇥")


def render_terminal(views: list[SampleView], color: bool = True, show_raw: bool = True) -> str:
    out = []
    for v in views:
        out.append(f"── {v.sample_id} " + "─" * max(0, 60 - len(v.sample_id)))
        if show_raw:
            out.append("raw:          " + json.dumps(v.raw, ensure_ascii=False)[:400])
        if v.preprocessed is not None:
            out.append("preprocessed: " + json.dumps(v.preprocessed, ensure_ascii=False)[:400])
        if v.error:
            out.append(f"error:        {v.error}")
            continue
        out.append("templated:\n" + v.templated)
        out.append(f"tokens: {len(v.tokens)}, trained: {v.trained_count}"
                   + ("" if color else "   (trained tokens in [[ ]])"))
        line = []
        prev = False
        for t in v.tokens:
            txt = _visible(t.text)
            if color:
                line.append(f"{TRAINED if t.trained else PROMPT}{txt}{RESET}")
            else:  # one [[ ]] around each run of trained tokens
                line.append(("[[" if t.trained and not prev else "]]" if prev and not t.trained else "") + txt)
            prev = t.trained
        if prev and not color:
            line.append("]]")
        out.append("".join(line))
    return "\n".join(out)


def render_html(views: list[SampleView], title: str = "loft debug-tokens") -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em}pre{white-space:pre-wrap}"
             ".tok{font-family:monospace;white-space:pre-wrap;border-right:1px solid #ccc}"
             ".t{background:#b7e4b0}.p{color:#888}.err{color:#b00}</style>",
             f"<h1>{html.escape(title)}</h1><p><span class='tok t'>trained</span> "
             "<span class='tok p'>context (no loss)</span>; hover a token for its id.</p>"]
    for v in views:
        parts.append(f"<h2>{html.escape(v.sample_id)}</h2>")
        parts.append(f"<details><summary>raw</summary><pre>{html.escape(json.dumps(v.raw, indent=1, ensure_ascii=False))}</pre></details>")
        if v.preprocessed is not None:
            parts.append("<details><summary>preprocessed</summary><pre>"
                         f"{html.escape(json.dumps(v.preprocessed, indent=1, ensure_ascii=False))}</pre></details>")
        if v.error:
            parts.append(f"<p class='err'>{html.escape(v.error)}</p>")
            continue
        parts.append(f"<details><summary>templated</summary><pre>{html.escape(v.templated)}</pre></details>")
        parts.append(f"<p>{len(v.tokens)} tokens, {v.trained_count} trained</p><p>")
        parts += [f"<span class='tok {'t' if t.trained else 'p'}' title='{t.id}'>{html.escape(t.text)}</span>"
                  for t in v.tokens]
        parts.append("</p>")
    return "\n".join(parts) + "\n"


def preview(tokenizer: Any, template_text: str, samples: list[tuple[dict[str, Any], dict[str, Any]]],
            mask: str = "generation", end_of_turn: str | None = None, color: bool = False) -> str:
    """For `loftc check`: `samples` = [(raw row, its dataset's config entry)], e.g. one per dataset.
    Returns printable text (no colour codes unless asked; trained tokens in [[ ]])."""
    tok = _load_tokenizer(tokenizer)
    views = []
    for raw, entry in samples:
        name = str(entry.get("name", "sample"))
        views += explain([raw], tok, template_text, entry, mask, end_of_turn, ids=[f"{name}:0"])
    return render_terminal(views, color=color, show_raw=False)


def main_debug_tokens(argv: list[str] | None = None) -> int:
    """`loft debug-tokens RUN_DIR [--n 3] [--dataset NAME] [--html out.html] [--no-color]`."""
    from .jsonout import Parser, fail, parse, print_ok

    ap = Parser(prog="loft debug-tokens",
                                 description="Show samples as prepare sees them: raw → preprocessed → templated → "
                                             "tokens, trained tokens highlighted.")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=3, help="samples per dataset (default 3)")
    ap.add_argument("--dataset", help="only this dataset (by name)")
    ap.add_argument("--html", type=Path, help="also write an HTML page here")
    ap.add_argument("--no-color", action="store_true", help="plain text; trained tokens in [[ ]]")
    ap.add_argument("--json", action="store_true", help="the samples (templated text, tokens, trained flags) as "
                    "one JSON object")
    argv = list(sys.argv[1:] if argv is None else argv)
    parsed = parse(ap, argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    from loft.runtime.plan import PlanError, load
    from loft.runtime.prepare.errors import PrepareError
    from loft.runtime.prepare.load import LINE, load_options, load_raw, row_dicts
    from loft.runtime.prepare.stage import load_tokenizer, sources

    try:
        bundle = load(args.run_dir)
        srcs = sources(bundle)
        if args.dataset:
            srcs = [s for s in srcs if s.spec.name == args.dataset]
            if not srcs:
                names = [s.spec.name for s in sources(bundle)]
                return fail("loft debug-tokens", f"no dataset {args.dataset!r} in this plan (has {names})",
                            "unknown-dataset", args.json, key="--dataset")
        tok = load_tokenizer(bundle)
        tmpl = bundle.plan.get("template", {})
        template_text = (bundle.root / tmpl.get("file", "chat_template.jinja")).read_text(encoding="utf-8")
        views: list[SampleView] = []
        for s in srcs:
            raw = load_raw(s.plan["path"], s.local, s.entry.get("split") or "train", s.plan.get("revision"),
                           **load_options(s.entry))
            batch = raw[: max(0, args.n)]
            rows = row_dicts(batch) if len(raw) else []
            views += explain(rows, tok, template_text, s.entry, tmpl.get("mask", "generation"),
                             tmpl.get("end_of_turn"),
                             bool(bundle.config.get("sequence", {}).get("train_on_incomplete_assistant", False)),
                             ids=[f"{s.spec.name}:{i} (line {line})" for i, line in enumerate(batch.get(LINE, []))],
                             date_string=tmpl.get("date_string"))
    except (PlanError, PrepareError) as e:
        return fail("loft debug-tokens", str(e), type(e).__name__, args.json,
                    file=getattr(e, "file", "") or str(args.run_dir))
    if args.json:
        print_ok({"samples": [dataclasses.asdict(v) for v in views]})
        return 0
    from .progress import color_enabled

    print(render_terminal(views, color=not args.no_color and color_enabled(sys.stdout)))  # NO_COLOR honoured
    if args.html:
        args.html.write_text(render_html(views, f"loft debug-tokens {args.run_dir}"), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0
