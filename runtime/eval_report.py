"""``eval/report.json`` (everything, raw) and ``eval/report.md`` (for people: base and fine-tuned side by
side; fences that survive any content, see markdown.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .markdown import fence, table


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def loss_lines(report: dict[str, Any]) -> list[str]:
    base = report.get("base") or {}
    if report.get("eval_loss") is None:
        return ["No eval split in this run (data.eval_split: 0): no eval loss.", ""]
    rows = [["fine-tuned", report["eval_loss"], report["perplexity"], report["tokens"]]]
    if base:
        rows.append(["base", base.get("eval_loss"), base.get("perplexity"), base.get("tokens")])
    return [*table(["model", "eval loss", "perplexity", "eval tokens"], rows), ""]


def lm_eval_lines(lm: dict[str, Any] | None) -> list[str]:
    if not lm:
        return []
    scores = lm["scores"]
    rows = []
    for task in sorted({t for s in scores.values() for t in s}):
        for metric in sorted({m for s in scores.values() for m in s.get(task, {})}):
            rows.append([task, metric, scores.get("fine_tuned", {}).get(task, {}).get(metric),
                         scores.get("base", {}).get(task, {}).get(metric)])
    limit = f" (limit {lm['limit']} per task)" if lm.get("limit") is not None else ""
    return [f"## lm-eval-harness{limit}", "", *table(["task", "metric", "fine-tuned", "base"], rows), ""]


def checkpoint_lines(ck: dict[str, Any] | None) -> list[str]:
    if not ck:
        return []
    metrics = sorted({k for r in ck["rows"] for k in r.get("scores", {})})
    rows = [[r["checkpoint"], r["step"], r["eval_loss"], r["perplexity"],
             *[r.get("scores", {}).get(m) for m in metrics]] for r in ck["rows"]]
    lines = ["## Checkpoints", "", *table(["checkpoint", "step", "eval loss", "perplexity", *metrics], rows), ""]
    if ck.get("best"):
        lines += [f"Best by eval loss: **{ck['best']}**.", ""]
    if ck.get("plot"):
        lines += [f"![eval loss by step]({ck['plot']})", ""]
    return lines


def generation_lines(report: dict[str, Any]) -> list[str]:
    d = report.get("decoding") or {}
    lines = ["## Generations", "",
             f"Backend {report['backend']}; {d.get('strategy', 'greedy')} decoding, seed {d.get('seed')}, "
             f"up to {d.get('max_new_tokens')} new tokens; prompts rendered with date_string "
             f"{report.get('date_string')!r}.", ""]
    for i, g in enumerate(report["generations"], 1):
        lines += [f"### {i}. {g['source']}", "", "Prompt:", "", *fence(g["prompt"]), "",
                  "Fine-tuned:", "", *fence(g["output"]), ""]
        if g.get("base") is not None:
            lines += ["Base:", "", *fence(g["base"]), ""]
        if g.get("reference") is not None:
            lines += ["Reference:", "", *fence(g["reference"]), ""]
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Eval: {report['name']}", "", *loss_lines(report), *lm_eval_lines(report.get("lm_eval")),
             *checkpoint_lines(report.get("checkpoints")), *generation_lines(report)]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(dest: Path, report: dict[str, Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    (dest / "report.md").write_text(markdown(report), encoding="utf-8")
