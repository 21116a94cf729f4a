"""`loft augment --config augment.yaml --input data/raw --output data/augmented [--json]`

Reads every `.jsonl` under --input (a file or a directory) of OpenAI `messages` rows and writes the same
files under --output, each row transformed in this order: style transfer of assistant replies (an
OpenAI-compatible endpoint, cached), splitting long replies into turns, a system message from a pool,
persona injection. Other keys of a row are kept. `augment_report.json` beside the output counts what was done.

    seed: 0
    field_messages: messages
    style_transfer: {endpoint: "http://127.0.0.1:8000/v1", model: NAME, instruction: "Rewrite ...",
                     probability: 1.0, temperature: 0.0, max_tokens: 1024, concurrency: 4, retries: 5,
                     timeout_s: 60, api_key_env: null, cache_dir: .augment-cache}
    split_long_replies: {max_chars: 2000, continue_prompt: "Continue."}
    system_prompts: {pool: ["You are ..."], mode: add_if_missing}     # add_if_missing | replace | prepend
    personas: {pool: ["a patient teacher"], probability: 0.5, template: "You speak as {persona}."}
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ops

_STR = {"type": "string"}
_NUM = {"type": "number", "minimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "seed": {"type": "integer"}, "field_messages": _STR,
        "style_transfer": {"type": "object", "additionalProperties": False, "required": ["endpoint", "model", "instruction"],
                           "properties": {"endpoint": _STR, "model": _STR, "instruction": _STR,
                                          "probability": {"type": "number", "minimum": 0, "maximum": 1},
                                          "temperature": _NUM, "max_tokens": {"type": "integer", "minimum": 1},
                                          "concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
                                          "retries": {"type": "integer", "minimum": 1, "maximum": 20},
                                          "backoff_s": _NUM, "timeout_s": _NUM,
                                          "api_key_env": {"type": ["string", "null"]}, "cache_dir": _STR}},
        "split_long_replies": {"type": "object", "additionalProperties": False,
                               "properties": {"max_chars": {"type": "integer", "minimum": 1}, "continue_prompt": _STR}},
        "system_prompts": {"type": "object", "additionalProperties": False,
                           "properties": {"pool": {"type": "array", "items": _STR},
                                          "mode": {"enum": ["add_if_missing", "replace", "prepend"]}}},
        "personas": {"type": "object", "additionalProperties": False,
                     "properties": {"pool": {"type": "array", "items": _STR}, "template": _STR,
                                    "probability": {"type": "number", "minimum": 0, "maximum": 1}}},
    },
}


class AugmentError(Exception):
    pass


def load_config(path: Path) -> dict[str, Any]:
    """augment.yaml, parsed safely and checked against SCHEMA (errors name the key)."""
    import jsonschema
    from ruamel.yaml import YAML, YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as e:
        raise AugmentError(f"{path}: {e}") from None
    data = data or {}
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        hint = ""
        if first.validator == "additionalProperties" and isinstance(first.instance, dict):
            import difflib

            known = list((first.schema.get("properties") or {}).keys())
            for key in first.instance:
                close = difflib.get_close_matches(str(key), known, n=1)
                if key not in known and close:
                    hint = f" (did you mean {close[0]!r}?)"
                    break
        raise AugmentError(f"{path}: {where}: {first.message}{hint}")
    return dict(data)


def _inputs(src: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to --input) for each .jsonl file, sorted."""
    if src.is_file():
        return [(src, Path(src.name))]
    return [(p, p.relative_to(src)) for p in sorted(src.rglob("*.jsonl"))]


def augment_rows(rows: list[dict[str, Any]], file: str, cfg: dict[str, Any], client: Any, counts: dict[str, int]
                 ) -> list[dict[str, Any]]:
    seed, key = int(cfg.get("seed", 0)), cfg.get("field_messages", "messages")
    style = cfg.get("style_transfer")
    convs: list[list[dict[str, Any]]] = []
    for i, row in enumerate(rows):
        msgs = row.get(key)
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise AugmentError(f"{file}:{i + 1}: no {key!r} list of messages in this row")
        convs.append([dict(m) for m in msgs])
    if style:  # one batch of requests for the whole file: the pool stays busy
        params = {"temperature": float(style.get("temperature", 0.0)), "max_tokens": int(style.get("max_tokens", 1024)),
                  "seed": seed}
        where = [(i, j) for i, c in enumerate(convs) for j in ops.style_targets(c, style, ops.row_rng(seed, rows[i], "style"))]
        bodies = [client.body(style["instruction"], convs[i][j]["content"], params) for i, j in where]
        for (i, j), text in zip(where, client.complete_all(bodies), strict=True):
            if text is not None:
                convs[i][j]["content"] = text
                counts["rewritten"] += 1
    out = []
    for row, msgs in zip(rows, convs, strict=True):
        msgs, n = ops.split_long_replies(msgs, cfg.get("split_long_replies") or {})
        counts["split_replies"] += n
        msgs, done = ops.system_pool(msgs, cfg.get("system_prompts") or {}, ops.row_rng(seed, row, "system"))
        counts["system_prompts"] += done
        msgs, done = ops.persona(msgs, cfg.get("personas") or {}, ops.row_rng(seed, row, "persona"))
        counts["personas"] += done
        out.append({**row, key: msgs})
    return out


def run(cfg: dict[str, Any], src: Path, dst: Path, base: Path) -> dict[str, Any]:
    from ..progress import progress
    from .llm import Client

    style = cfg.get("style_transfer")
    client = None
    if style:
        key_env = style.get("api_key_env")
        client = Client(endpoint=style["endpoint"], model=style["model"],
                        cache_dir=(base / style.get("cache_dir", ".augment-cache")).resolve(),
                        api_key=os.environ.get(key_env) if key_env else None,
                        timeout_s=float(style.get("timeout_s", 60)), retries=int(style.get("retries", 5)),
                        backoff_s=float(style.get("backoff_s", 1.0)), concurrency=int(style.get("concurrency", 4)))
    files = _inputs(src)
    if not files:
        raise AugmentError(f"{src}: no .jsonl files")
    counts = {"files": 0, "rows": 0, "rewritten": 0, "split_replies": 0, "system_prompts": 0, "personas": 0}
    with progress(len(files), "augment", "files") as bar:
        for path, rel in files:
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise AugmentError(f"{path}:{n}:{e.colno}: malformed JSON line ({e.msg})") from None
            done = augment_rows(rows, rel.as_posix(), cfg, client, counts)
            target = dst / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in done), encoding="utf-8")
            os.replace(tmp, target)
            counts["files"] += 1
            counts["rows"] += len(rows)
            bar.update()
    report = {"counts": counts, "llm": dict(client.stats) if client else None,
              "errors": client.errors[:20] if client else []}
    (dst / "augment_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return report


def main(argv: Sequence[str]) -> int:
    from ..jsonout import Parser, fail, parse, print_ok

    ap = Parser(prog="loft augment", description="system prompts, personas, reply splitting and LLM "
                                 "style transfer over messages jsonl files")
    ap.add_argument("--config", type=Path, required=True, help="augment.yaml")
    ap.add_argument("--input", type=Path, required=True, help="a .jsonl file or a directory of them")
    ap.add_argument("--output", type=Path, required=True, help="output directory (same file names)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parsed = parse(ap, list(argv))
    if isinstance(parsed, int):
        return parsed
    args = parsed
    try:
        if not args.input.exists():
            raise AugmentError(f"{args.input}: no such file or directory")
        if args.output.resolve() == args.input.resolve():
            raise AugmentError("--output must differ from --input (the input is never overwritten)")
        cfg = load_config(args.config)
        report = run(cfg, args.input, args.output, args.config.resolve().parent)
    except AugmentError as e:
        return fail("loft augment", str(e), "augment", args.json)
    if args.json:
        print_ok(report)
    else:
        c = report["counts"]
        print(f"augmented {c['rows']} rows in {c['files']} files → {args.output}: {c['rewritten']} replies rewritten, "
              f"{c['split_replies']} split, {c['system_prompts']} system prompts, {c['personas']} personas")
        if report["llm"]:
            print(f"llm: {report['llm']['requests']} requests, {report['llm']['cache_hits']} from the cache, "
                  f"{report['llm']['failed']} failed")
        if report["errors"]:
            print(f"warning: {report['llm']['failed']} rewrites failed and kept the original reply; rerun to retry "
                  f"them ({report['errors'][0]})", file=sys.stderr)
    return 0
