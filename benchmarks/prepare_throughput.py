"""Prepare throughput (tokens/s, cold cache) beside two baselines, measured in one run:

  (a) floor: one batched fast-tokenizer encode of the already-rendered chat texts (no rendering, no mask);
  (b) by hand: a per-sample loop of apply_chat_template(..., return_assistant_tokens_mask=True).

Then the incremental cache: edit one of two datasets and re-run prepare; only the edited one is
re-tokenized (the report's `tokenized_rows`).

    .venv/bin/python benchmarks/prepare_throughput.py [--copies 10] [--num-proc auto] [--repeat 3]

Each of (a), (b) and prepare runs --repeat times, interleaved (a, b, prepare, a, b, prepare, ...), and the
best of each is compared, so that a burst of load on a shared machine hits all three alike. (a) and (b) run
in this process, after transformers is imported and the tokenizer loaded; each prepare runs in a fresh
child process that has done the same first (so its `datasets`/pyarrow imports are paid, once, inside
the timed stage, as in `loft prepare`; interpreter start and the transformers import are not timed, as
for (a) and (b)).

Data: examples/data/chat.jsonl replicated --copies times; tokenizer: a tiny llama3-family BPE from
examples/tiny.py (vocab 512, so texts are long in tokens) with a tagged llama3 template.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.tiny import build_tokenizer  # noqa: E402
from tests.runtime.bundle_factory import LLAMA3_TAGGED, chat_rows, make_bundle, write_jsonl  # noqa: E402


def stage_only(run_dir: Path) -> None:
    """Child mode: one cold prepare in a fresh process that has done what the parent had done before (a)
    and (b) (transformers imported, the tokenizer loaded), so the timed stage pays its own imports
    (`datasets`, pyarrow) exactly once, like `loft prepare` does; prints the timing as JSON."""
    from loft.runtime.plan import load
    from loft.runtime.prepare import run
    from loft.runtime.prepare.stage import load_tokenizer

    load_tokenizer(load(run_dir))  # imports transformers and its tokenizer classes, as the parent has
    t = time.perf_counter()
    rep = run(load(run_dir), log=lambda *_: None)
    print(json.dumps({"s": time.perf_counter() - t, "tokens": rep["lengths"]["tokens"], "timings": rep["timings_s"]}))


def cold_prepare(run_dir: Path) -> dict[str, Any]:
    shutil.rmtree(run_dir / "out", ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--stage-only", str(run_dir)], check=True, capture_output=True,
                         text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--num-proc", default="auto")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved repetitions of (a), (b), prepare; best of each")
    ap.add_argument("--stage-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage_only:
        return stage_only(args.stage_only)
    num_proc: int | str = int(args.num_proc) if args.num_proc.isdigit() else "auto"

    from loft.runtime.plan import load
    from loft.runtime.prepare import run
    from transformers import AutoTokenizer

    work = Path(tempfile.mkdtemp(prefix="loft-prepare-bench-"))
    try:
        load_start = os.getloadavg()[0]
        tok_dir = build_tokenizer(work / "tok", vocab_size=args.vocab)
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        rows = chat_rows(10**9) * args.copies
        convs = [r["messages"] for r in rows]
        texts = [tok.apply_chat_template(c, chat_template=LLAMA3_TAGGED, tokenize=False) for c in convs]

        run_dir = work / "run"
        half = len(rows) // 2
        write_jsonl(run_dir / "data" / "a.jsonl", rows[:half])
        write_jsonl(run_dir / "data" / "b.jsonl", rows[half:])
        make_bundle(run_dir, tok_dir, [{"name": "a", "path": "data/a.jsonl"}, {"name": "b", "path": "data/b.jsonl"}],
                    data={"num_proc": num_proc}, sequence={"max_length": 2048})

        floor, loop, prep = [], [], []
        tokens = 0
        for _ in range(args.repeat):
            # (a) floor: the texts are rendered beforehand (untimed); one batched encode
            t = time.perf_counter()
            enc = tok(texts, add_special_tokens=False)["input_ids"]
            floor.append(time.perf_counter() - t)
            tokens = sum(len(x) for x in enc)

            # (b) the per-sample loop a user writes by hand
            t = time.perf_counter()
            n_loop = 0
            for c in convs:
                out = tok.apply_chat_template(c, chat_template=LLAMA3_TAGGED, tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
                n_loop += len(out["input_ids"])
            loop.append(time.perf_counter() - t)
            assert n_loop == tokens, (n_loop, tokens)

            # loft prepare, cold cache, the whole stage (load, tokenize+mask, fit, pack, write, report, PNG)
            p = cold_prepare(run_dir)
            assert p["tokens"] == tokens, (p["tokens"], tokens)
            prep.append(p)

        floor_s, loop_s = min(floor), min(loop)
        best = min(prep, key=lambda p: p["s"])
        prep_s = best["s"]
        tok_s = sum(v for k, v in best["timings"].items() if k.startswith("tokenize:"))

        # incremental: cold run here, then edit dataset b only
        shutil.rmtree(run_dir / "out", ignore_errors=True)
        run(load(run_dir), log=lambda *_: None)
        edited = rows[half:]
        edited[0] = {"messages": [{"role": "user", "content": "edited?"}, {"role": "assistant", "content": "Yes."}]}
        write_jsonl(run_dir / "data" / "b.jsonl", edited)
        t = time.perf_counter()
        rep2 = run(load(run_dir), log=lambda *_: None)
        inc_s = time.perf_counter() - t
        t = time.perf_counter()
        run(load(run_dir), log=lambda *_: None)
        warm_s = time.perf_counter() - t

        res = {
            "samples": len(convs), "tokens": tokens, "cpus": os.cpu_count(), "num_proc": num_proc,
            "repeat": args.repeat, "load_avg_1m": {"start": load_start, "end": os.getloadavg()[0]},
            "floor_s": floor, "loop_s": loop, "prepare_s": [p["s"] for p in prep],
            "per_repetition_vs_loop": [round(b / p["s"], 2) for b, p in zip(loop, prep, strict=True)],
            "per_repetition_vs_floor": [round(a / p["s"], 2) for a, p in zip(floor, prep, strict=True)],
            "floor_tok_per_s": tokens / floor_s, "loop_tok_per_s": tokens / loop_s, "prepare_tok_per_s": tokens / prep_s,
            "vs_loop": loop_s / prep_s, "vs_floor": floor_s / prep_s,
            "incremental_s": inc_s, "retokenized": {k: v["tokenized_rows"] for k, v in rep2["datasets"].items()},
            "warm_s": warm_s, "timings": best["timings"],
        }
        print(json.dumps(res, indent=2))
        print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}; "
              f"load avg 1m {load_start:.1f} -> {os.getloadavg()[0]:.1f}; best of {args.repeat} for each row")
        print(f"| what | tokens/s | vs (b) loop | vs (a) floor |\n|---|---|---|---|\n"
              f"| (a) floor: batched encode of rendered texts | {res['floor_tok_per_s']:,.0f} | "
              f"{loop_s / floor_s:.2f}× | 1.00× |\n"
              f"| (b) per-sample apply_chat_template loop | {res['loop_tok_per_s']:,.0f} | 1.00× | {floor_s / loop_s:.2f}× |\n"
              f"| loft prepare, cold cache (whole stage) | {res['prepare_tok_per_s']:,.0f} | {res['vs_loop']:.2f}× | "
              f"{res['vs_floor']:.2f}× |\n"
              f"| loft prepare, tokenize+mask step only | {tokens / tok_s:,.0f} | {loop_s / tok_s:.2f}× | "
              f"{floor_s / tok_s:.2f}× |")
        print(f"\nincremental (edit b of a,b): {inc_s:.2f}s, re-tokenized rows {res['retokenized']}; "
              f"warm (nothing changed): {warm_s:.2f}s; cold: {prep_s:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
