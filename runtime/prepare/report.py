"""prepare_report.json / .md and the terminal summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from loft.runtime.prepare.lengths import text_histogram


def write(out: Path, rep: dict[str, Any]) -> None:
    (out / "prepare_report.json").write_text(json.dumps(rep, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    (out / "prepare_report.md").write_text(markdown(rep), encoding="utf-8")


def _blocklist_line(b: dict[str, Any] | None) -> list[str]:
    if not b:
        return []
    per = ", ".join(f"{k}: {v}" for k, v in sorted(b["dropped"].items()) if v) or "none"
    return [f"- **blocklist**: {b['file']} (sha256 {b['sha256'][:12]}…, {b['entries']} ids): "
            f"{sum(b['dropped'].values())} samples dropped ({per}); {b['unmatched']} ids matched no valid sample"]


def markdown(rep: dict[str, Any]) -> str:
    L = rep["lengths"]
    lines = [
        "# Prepare report", "",
        f"- **max_length**: {rep['max_length']} — {rep['max_length_reason']}",
        f"- **strategy**: {rep['strategy']}; packing: {rep['packing']}; "
        f"train_on_incomplete_assistant: {rep['train_on_incomplete_assistant']}",
        f"- **loss mask**: {rep['template']['note']}",
        f"- **bad samples policy**: {rep['bad_samples_policy']}",
        *_blocklist_line(rep.get("blocklist")), "",
        "## Datasets", "",
        "| dataset | rows | valid | bad | cut | dropped | chunks | train | drawn | eval | cache |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in rep["datasets"].items():
        bad = ", ".join(f"{k}: {v}" for k, v in d["bad"].items()) or "0"
        lines.append(f"| {name} | {d['rows_raw']} | {d['valid']} | {bad} | {d['cut']} | {d['dropped']} | "
                     f"{d['chunks']} | {d['train_samples']} | {d['drawn']} | {d['eval_samples']} | {d['cache']} |")
    lines += ["", "## Lengths (tokens per sample, before fitting)", ""]
    if L.get("count"):
        lines.append(f"count {L['count']}, min {L['min']}, mean {L['mean']}, p50 {L['p50']:g}, p90 {L['p90']:g}, "
                     f"p95 {L['p95']:g}, p99 {L['p99']:g}, knee {L['knee']}, max {L['max']}")
        lines += ["", "| from | to | samples |", "|---|---|---|"]
        edges, counts = L["histogram"]["edges"], L["histogram"]["counts"]
        lines += [f"| {lo:g} | {hi:g} | {c} |" for lo, hi, c in zip(edges, edges[1:], counts, strict=False)]
        lines += ["", "![lengths](lengths.png)"]
    lines += ["", f"## What each strategy would cut at max_length {rep['max_length']}", "",
              "| strategy | samples affected | tokens lost | extra chunks |", "|---|---|---|---|"]
    for s, c in rep["would_cut"].items():
        lines.append(f"| {s} | {c['samples']} | {c['tokens_lost']} | {c.get('extra_chunks', '')} |")
    lines += ["", "## Output", "", "| split | rows | samples | tokens | trained tokens | packing efficiency |",
              "|---|---|---|---|---|---|"]
    for split in ("train", "eval"):
        s = rep[split]
        lines.append(f"| {split} | {s['rows']} | {s['samples']} | {s['tokens']} | {s['trained_tokens']} | "
                     f"{s['packing_efficiency'] if s['packing_efficiency'] is not None else 'off'} |")
    if rep.get("ambiguity"):
        a = rep["ambiguity"]
        lines += ["", f"Ambiguity (adaptive label smoothing): {a['method']}, {a['bigrams']} bigrams, "
                      f"mean {a['mean_on_trained_tokens']} on trained tokens."]
    if rep.get("schedule"):
        sc = rep["schedule"]
        lines += ["", "## Schedule (prepared/schedule.json: what train runs)", "",
                  "| training rows | global batch | steps per epoch | total steps | warmup steps | eval every | save every |",
                  "|---|---|---|---|---|---|---|",
                  "| " + " | ".join("—" if sc[k] is None else str(sc[k]) for k in
                                   ("rows", "global_batch_size", "steps_per_epoch", "total_steps", "warmup_steps",
                                    "eval_steps", "save_steps")) + " |",
                  "", "| dataset | training rows before the blend | samples drawn |", "|---|---|---|",
                  *(f"| {name} | {b['available']} | {b['drawn']} |" for name, b in sc["blend"].items())]
    if rep["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in rep["warnings"]]
    return "\n".join(lines) + "\n"


def terminal(rep: dict[str, Any], lengths: np.ndarray) -> str:
    out = [text_histogram(lengths, rep["max_length"]), f"max_length {rep['max_length']}: {rep['max_length_reason']}"]
    for name, d in rep["datasets"].items():
        bad = sum(d["bad"].values())
        out.append(f"{name}: {d['valid']}/{d['rows_raw']} valid"
                   + (f" ({bad} bad: {', '.join(f'{k} {v}' for k, v in d['bad'].items())})" if bad else "")
                   + f", {d['cut']} over max_length ({rep['strategy']}), cache {d['cache']}")
    t = rep["train"]
    eff = f", packing efficiency {t['packing_efficiency']:.1%}" if t["packing_efficiency"] is not None else ""
    out.append(f"train: {t['rows']} rows from {t['samples']} samples, {t['tokens']} tokens{eff}; "
               f"eval: {rep['eval']['rows']} rows")
    out += [f"warning: {w}" for w in rep["warnings"]]
    return "\n".join(out)
