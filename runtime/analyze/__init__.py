"""`loft analyze CONFIG_OR_RUN [--output DIR] [--json]`: look at the data before preparing it.

For each dataset of the plan: rows and bad samples (prepare's own normaliser), exact and near duplicates,
languages, turns per conversation, role balance, empty / very short / very long messages, trained turns
without an end-of-turn token, and token lengths under the plan's template (prepare's own encoder, so the
numbers are the ones training would see), with a histogram PNG. Writes `analysis.md` + `analysis.json`
(+ `lengths.png`) under `<out>/analysis/` and prints the warnings.

A config file (not a bundle) is compiled first by `loftc build` into a temporary bundle: the runtime never
imports the compiler.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import checks

BATCH = 256


def analyze_dataset(src: Any, tokenizer: Any, template_text: str, tmpl: dict[str, Any], max_length: int | None,
                    train_on_incomplete: bool) -> dict[str, Any]:
    from ..prepare.errors import BadSample
    from ..prepare.formats import normalize
    from ..prepare.load import LINE, MalformedLine, jsonl_columns, load_options, load_raw, row_dicts
    from ..prepare.template import DEFAULT_DATE, Encoder, eot_token_ids
    from ..progress import progress

    name = src.spec.name
    options = load_options(src.entry)
    if src.local is not None and src.local.is_file() and src.local.suffix.lower() in (".jsonl", ".ndjson") \
            and options.get("data_files") is None:
        raw: Any = jsonl_columns(src.local)
    else:
        raw = load_raw(src.plan["path"], src.local, src.entry.get("split") or "train", src.plan.get("revision"),
                       **options)
    n = len(raw[LINE]) if isinstance(raw, dict) else len(raw)
    mask = tmpl.get("mask") or ("generation" if "{% generation %}" in template_text else "prefix")
    encoder = Encoder(tokenizer, template_text, mask, tmpl.get("end_of_turn"), src.spec, train_on_incomplete,
                      template_vars={"date_string": tmpl.get("date_string") or DEFAULT_DATE})
    eot = eot_token_ids(tokenizer, tmpl.get("end_of_turn"))
    bad: dict[str, int] = {}
    examples, keys, texts, lengths, no_eot = [], [], [], [], 0
    with progress(n, f"analyze {name}", "rows") as bar:
        for lo in range(0, n, BATCH):
            batch = {k: v[lo:lo + BATCH] for k, v in raw.items()} if isinstance(raw, dict) else raw[lo:lo + BATCH]
            valid = []
            for row in row_dicts(batch):
                if isinstance(row, MalformedLine):
                    bad["malformed_json"] = bad.get("malformed_json", 0) + 1
                    continue
                try:
                    valid.append(normalize(row, src.spec))
                except BadSample as e:
                    bad[e.reason] = bad.get(e.reason, 0) + 1
            encoded = encoder.encode(valid)
            ok_ids, ok_labels = [], []
            for ex, enc in zip(valid, encoded, strict=True):
                if isinstance(enc, BadSample):
                    bad[enc.reason] = bad.get(enc.reason, 0) + 1
                    continue
                examples.append(ex)
                keys.append(checks.canonical(ex.messages, ex.segments))
                texts.append(checks.sample_text(ex.messages, ex.segments))
                lengths.append(len(enc.input_ids))
                if ex.messages is not None:
                    ok_ids.append(enc.input_ids)
                    ok_labels.append(enc.labels)
            if src.spec.train_on_eos != "none":
                no_eot += checks.without_end_of_turn(ok_labels, ok_ids, eot)
            bar.update(len(batch[LINE]))
    exact, groups = checks.exact_duplicates(keys)
    later = {i for g in groups for i in g[1:]}
    near, pairs = checks.near_duplicates(texts, skip=later)
    chats = [e.messages for e in examples if e.messages is not None]
    summary = {"rows": n, "samples": len(examples), "bad": dict(sorted(bad.items())), "bad_total": sum(bad.values()),
               "exact_duplicates": exact, "exact_duplicate_examples": [g[:5] for g in groups[:5]],
               "near_duplicates": near, "near_duplicate_examples": pairs,
               "languages": dict(sorted(checks.languages(texts).items())),
               "shape": checks.shape(chats) if chats else None,
               "assistant_without_end_of_turn": no_eot,
               "tokens": checks.token_lengths(lengths, max_length)}
    summary["warnings"] = checks.warnings(summary)
    return {"summary": summary, "lengths": lengths}


def run(bundle: Any, output: Path | None = None) -> dict[str, Any]:
    """Analyse every dataset of `bundle`; returns the JSON summary (also written to disk)."""
    import numpy as np

    from ..prepare.lengths import plot
    from ..prepare.stage import load_tokenizer, sources

    cfg = bundle.config
    tmpl = bundle.plan.get("template") or {}
    tokenizer = load_tokenizer(bundle)
    template_text = (bundle.root / (tmpl.get("file") or "chat_template.jinja")).read_text(encoding="utf-8")
    setting = (cfg.get("sequence") or {}).get("max_length")
    max_length = setting if isinstance(setting, int) else None
    train_on_incomplete = bool((cfg.get("sequence") or {}).get("train_on_incomplete_assistant", False))
    out = output or bundle.out / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    datasets, all_lengths = {}, []
    for src in sources(bundle):
        res = analyze_dataset(src, tokenizer, template_text, tmpl, max_length, train_on_incomplete)
        datasets[src.spec.name] = res["summary"]
        all_lengths += res["lengths"]
    result = {"run": bundle.plan.get("name"), "thresholds": checks.THRESHOLDS, "datasets": datasets,
              "warnings": [f"{name}: {w}" for name, d in datasets.items() for w in d["warnings"]]}
    if all_lengths:
        plot(np.asarray(all_lengths), max_length or max(all_lengths), out / "lengths.png")
        result["histogram_png"] = "lengths.png"
    (out / "analysis.json").write_text(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    (out / "analysis.md").write_text(markdown(result), encoding="utf-8")
    result["output_dir"] = str(out)
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Data analysis: {r['run']}", ""]
    lines += ["## Warnings", ""] + ([f"- {w}" for w in r["warnings"]] or ["none"]) + [""]
    if r.get("histogram_png"):
        lines += [f"![token lengths]({r['histogram_png']})", ""]
    for name, d in r["datasets"].items():
        t = d["tokens"]
        lines += [f"## {name}", "",
                  f"- rows {d['rows']}, valid samples {d['samples']}, bad {d['bad_total']}"
                  + (f" ({', '.join(f'{k}: {v}' for k, v in d['bad'].items())})" if d["bad"] else ""),
                  f"- exact duplicates {d['exact_duplicates']}, near duplicates {d['near_duplicates']}",
                  f"- languages: {', '.join(f'{k} {v}' for k, v in sorted(d['languages'].items(), key=lambda kv: -kv[1]))}",
                  "- tokens per sample: " + (", ".join(f"{k} {t[k]:g}" for k in ("min", "mean", "p50", "p95", "max")
                                                        if k in t) or "none")
                  + (f"; {t['over_max_length']} over max_length {t['max_length']}" if "max_length" in t else ""),
                  f"- trained turns without an end-of-turn token: {d['assistant_without_end_of_turn']}"]
        s = d.get("shape")
        if s:
            lines += [f"- turns per conversation: {', '.join(f'{k} {v:g}' for k, v in s['turns'].items() if k != 'count')}",
                      f"- messages per role: {', '.join(f'{k} {v}' for k, v in s['messages_per_role'].items())}"
                      f" (mean characters: {', '.join(f'{k} {v:g}' for k, v in s['mean_chars_per_role'].items())})",
                      f"- last message's role: {', '.join(f'{k} {v}' for k, v in s['last_role'].items())}",
                      f"- messages: {s['empty_messages']} empty, {s['very_short_messages']} under "
                      f"{checks.SHORT_CHARS} characters, {s['very_long_messages']} over {checks.LONG_CHARS}"]
        lines.append("")
    return "\n".join(lines)


class BuildFailed(Exception):
    """`loftc build` refused the config: its human diagnostics, and the structured ones of its --json."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def _bundle_for(target: Path, tmp: Path) -> Path:
    """A bundle directory for `target`: itself, or a config compiled by `loftc build` into `tmp`."""
    if target.is_dir():
        return target
    proc = subprocess.run([sys.executable, "-m", "loft.compiler", "build", str(target), "-o", str(tmp / "run"),
                           "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        try:
            errors = list(json.loads(proc.stdout)["errors"])  # loftc build --json: one object on stdout
        except (ValueError, KeyError, TypeError):
            errors = []
        raise BuildFailed(proc.stderr.strip() or f"loftc build {target} failed ({proc.returncode})", errors)
    return tmp / "run"


def main(argv: Sequence[str]) -> int:
    from ..jsonout import Parser, error_object, fail, parse, print_errors, print_ok

    ap = Parser(prog="loft analyze", description="duplicates, languages, lengths and shape of the "
                                 "plan's datasets, before preparing them")
    ap.add_argument("target", metavar="CONFIG_OR_RUN", help="a bundle directory, or a config file (compiled first)")
    ap.add_argument("--output", type=Path, default=None, help="where to write analysis.{md,json} (default "
                    "<out>/analysis; for a config: ./analysis)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parsed = parse(ap, list(argv))
    if isinstance(parsed, int):
        return parsed
    args = parsed
    from ..plan import PlanError, load

    target = Path(args.target)
    if not target.exists():
        return fail("loft analyze", f"{target}: no such file or directory", "not-found", args.json, file=str(target))
    with tempfile.TemporaryDirectory(prefix="loft-analyze-") as tmp:
        try:
            root = _bundle_for(target, Path(tmp))
            bundle = load(root)
        except BuildFailed as e:  # the config did not compile: loftc's own diagnostics, as they are
            print(e, file=sys.stderr)
            if args.json:
                print_errors(e.errors or [error_object(str(e), "config", file=str(target))])
            return 1
        except PlanError as e:
            return fail("loft analyze", str(e), "plan", args.json, file=str(target))
        output = args.output or (None if target.is_dir() else Path("analysis"))
        result = run(bundle, output.resolve() if output else None)
    if args.json:
        print_ok(result)
        return 0
    for w in result["warnings"]:
        print(f"warning: {w}")
    print(f"analysis: {Path(result['output_dir']) / 'analysis.md'}")
    return 0
