"""`loft spikes RUN [--trial N] [--step N] [--blocklist] [--json]`: the loss spikes of a run, with the ids and
texts of the samples behind them (train writes them: train/spikes.py), and a blocklist for the next prepare.

    loft spikes run/                      # table: step, metric × median, samples
    loft spikes run/ --blocklist > blocklist.txt   # then `data.blocklist: blocklist.txt` and rebuild

A run trained before spike dumps existed (or with `tracking.spikes.enabled: false`) is scanned from
metrics.jsonl + batches.jsonl with the same rule (`--factor`, `--window` change it): ids without texts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

CHUNK = re.compile(r":chunk\d+$")


def source_id(sample_id: str) -> str:
    """The id prepare's blocklist matches: a split sample's chunks all come from `dataset:index`."""
    return CHUNK.sub("", sample_id)


def _out_dir(run: Path, trial: int | None) -> tuple[Path, dict[str, Any]]:
    if (run / "plan.lock").is_file():
        from .plan import load, with_trial

        bundle = load(run)
        if trial is not None:
            bundle = with_trial(bundle, trial)
        return bundle.out, bundle.config.get("tracking") or {}
    return run, {}


def collect(out: Path, tracking: dict[str, Any], factor: float | None = None,
            window: int | None = None) -> list[dict[str, Any]]:
    """[{step, metrics, samples: [{id, text?, tokens?, trained_tokens?}]}] oldest first."""
    from .train.spikes import SPIKES_DIR, SPIKES_FILE, SpikeRule, detect

    dumped = read_jsonl(out / SPIKES_DIR / SPIKES_FILE)
    if dumped and factor is None and window is None:
        return dumped
    rule = SpikeRule.from_plan(tracking)
    rule = replace(rule, factor=rule.factor if factor is None else factor, window=rule.window if window is None else window)
    records = read_jsonl(out / "metrics.jsonl")
    batches = {int(b["step"]): b["sample_ids"] for b in read_jsonl(out / "batches.jsonl") if "step" in b}
    texts = {s["id"]: s for d in dumped for s in d.get("samples", [])}
    steps = [int(r["step"]) for r in records if "loss" in r]
    found = []
    for spike in detect(records, rule):
        step = int(spike["step"])
        prev = max((s for s in steps if s < step), default=0)
        ids = [sid for s in range(prev + 1, step + 1) for row in batches.get(s, []) for sid in row]
        found.append({**spike, "samples": [texts.get(str(i), {"id": str(i)}) for i in ids]})
    return found


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    from .dashboard.runs import read_from

    return read_from(path, 0)[0]


def blocklist(spikes: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for sp in spikes:
        for s in sp.get("samples", []):
            seen.setdefault(source_id(str(s["id"])), None)
    return list(seen)


def main(argv: Sequence[str]) -> int:
    from .jsonout import Parser, fail, parse, print_ok

    ap = Parser(prog="loft spikes", description="list a run's loss/grad-norm spikes and the samples "
                                 "behind them; --blocklist prints their ids for data.blocklist")
    ap.add_argument("run", metavar="RUN", help="bundle directory (plan.lock) or a run's output directory")
    ap.add_argument("--trial", type=int, default=None, metavar="N", help="a sweep trial's run")
    ap.add_argument("--step", type=int, action="append", default=None, metavar="N", help="only this step (repeatable)")
    ap.add_argument("--blocklist", action="store_true", help="print the samples' ids, one a line (for data.blocklist)")
    ap.add_argument("--factor", type=float, default=None, help="re-detect from metrics.jsonl with this k")
    ap.add_argument("--window", type=int, default=None, help="re-detect with this rolling-median window")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parsed = parse(ap, list(argv))
    if isinstance(parsed, int):
        return parsed
    args = parsed
    run = Path(args.run)
    if not run.is_dir():
        return fail("loft spikes", f"{run}: no such directory", "not-found", args.json, file=str(run))
    from .plan import PlanError

    try:
        out, tracking = _out_dir(run, args.trial)
    except PlanError as e:
        return fail("loft spikes", str(e), "plan", args.json, file=str(run / "plan.lock"))
    if not (out / "metrics.jsonl").is_file():
        return fail("loft spikes", f"{out / 'metrics.jsonl'}: no training records yet (run `loft train {run}`)",
                    "no-metrics", args.json, file=str(out / "metrics.jsonl"))
    spikes = collect(out, tracking, args.factor, args.window)
    if args.step:
        spikes = [s for s in spikes if int(s["step"]) in set(args.step)]
    ids = blocklist(spikes)
    if args.json:
        print_ok({"run": str(out), "spikes": spikes, "blocklist": ids})
    elif args.blocklist:
        print(f"# loft spikes {run}: {len(ids)} samples behind {len(spikes)} spikes (steps "
              f"{', '.join(str(s['step']) for s in spikes) or 'none'})")
        for i in ids:
            print(i)
    elif not spikes:
        print(f"no spikes in {out / 'metrics.jsonl'}")
    else:
        for sp in spikes:
            why = ", ".join(f"{k} {v['value']:.4g} ({v['ratio']:.2f}× median {v['median']:.4g})"
                            for k, v in sp["metrics"].items())
            print(f"step {sp['step']}: {why}")
            for s in sp.get("samples", []):
                text = (s.get("text") or "").replace("\n", " ⏎ ")
                print(f"  {s['id']}" + (f"  {text[:120]}{'…' if len(text) > 120 else ''}" if text else ""))
    return 0
