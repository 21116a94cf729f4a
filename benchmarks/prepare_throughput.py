"""Prepare throughput (tokens/s, cold cache) beside two baselines, measured in one run:

  (a) floor: one batched fast-tokenizer encode of the already-rendered chat texts (no rendering, no mask);
  (b) by hand: a per-sample loop of apply_chat_template(..., return_assistant_tokens_mask=True).

Then the incremental cache: edit one of two datasets and re-run prepare; only the edited one is
re-tokenized (the report's `tokenized_rows`).

    .venv/bin/python benchmarks/prepare_throughput.py [--copies 10] [--num-proc auto]

Data: examples/data/chat.jsonl replicated --copies times; tokenizer: a tiny llama3-family BPE from
examples/tiny.py (vocab 512, so texts are long in tokens) with a tagged llama3 template.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.tiny import build_tokenizer  # noqa: E402
from tests.runtime.bundle_factory import LLAMA3_TAGGED, chat_rows, make_bundle, write_jsonl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--num-proc", default="auto")
    ap.add_argument("--vocab", type=int, default=512)
    args = ap.parse_args()
    num_proc: int | str = int(args.num_proc) if args.num_proc.isdigit() else "auto"

    from loft.runtime.plan import load
    from loft.runtime.prepare import run
    from transformers import AutoTokenizer

    work = Path(tempfile.mkdtemp(prefix="loft-prepare-bench-"))
    try:
        tok_dir = build_tokenizer(work / "tok", vocab_size=args.vocab)
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
        rows = chat_rows(10**9) * args.copies
        convs = [r["messages"] for r in rows]

        # (a) floor: render first (untimed), then one batched encode
        texts = [tok.apply_chat_template(c, chat_template=LLAMA3_TAGGED, tokenize=False) for c in convs]
        t = time.perf_counter()
        enc = tok(texts, add_special_tokens=False)["input_ids"]
        floor_s = time.perf_counter() - t
        tokens = sum(len(x) for x in enc)

        # (b) the per-sample loop a user writes by hand
        t = time.perf_counter()
        n_loop = 0
        for c in convs:
            out = tok.apply_chat_template(c, chat_template=LLAMA3_TAGGED, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True)
            n_loop += len(out["input_ids"])
        loop_s = time.perf_counter() - t
        assert n_loop == tokens, (n_loop, tokens)

        # loft prepare, cold cache: the whole stage (load, tokenize+mask, fit, pack, write, report)
        run_dir = work / "run"
        half = len(rows) // 2
        write_jsonl(run_dir / "data" / "a.jsonl", rows[:half])
        write_jsonl(run_dir / "data" / "b.jsonl", rows[half:])
        make_bundle(run_dir, tok_dir, [{"name": "a", "path": "data/a.jsonl"}, {"name": "b", "path": "data/b.jsonl"}],
                    data={"num_proc": num_proc}, sequence={"max_length": 2048})
        t = time.perf_counter()
        rep = run(load(run_dir), log=lambda *_: None)
        prep_s = time.perf_counter() - t
        prep_tokens = rep["lengths"]["tokens"]
        assert prep_tokens == tokens, (prep_tokens, tokens)

        # incremental: edit dataset b only
        edited = rows[half:]
        edited[0] = {"messages": [{"role": "user", "content": "edited?"}, {"role": "assistant", "content": "Yes."}]}
        write_jsonl(run_dir / "data" / "b.jsonl", edited)
        t = time.perf_counter()
        rep2 = run(load(run_dir), log=lambda *_: None)
        inc_s = time.perf_counter() - t
        t = time.perf_counter()
        run(load(run_dir), log=lambda *_: None)
        warm_s = time.perf_counter() - t

        tok_s = sum(v for k, v in rep["timings_s"].items() if k.startswith("tokenize:"))
        res = {
            "samples": len(convs), "tokens": tokens, "cpus": os.cpu_count(),
            "num_proc": num_proc, "load_avg_1m": os.getloadavg()[0],
            "floor_tok_per_s": tokens / floor_s, "loop_tok_per_s": tokens / loop_s,
            "prepare_tok_per_s": tokens / prep_s, "prepare_s": prep_s, "loop_s": loop_s, "floor_s": floor_s,
            "vs_loop": loop_s / prep_s, "vs_floor": floor_s / prep_s,
            "incremental_s": inc_s, "retokenized": {k: v["tokenized_rows"] for k, v in rep2["datasets"].items()},
            "warm_s": warm_s, "timings": rep["timings_s"],
        }
        print(json.dumps(res, indent=2))
        print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cpus, python {platform.python_version()}")
        print(f"| what | tokens/s | vs (b) loop | vs (a) floor |\n|---|---|---|---|\n"
              f"| (a) floor: batched encode of rendered texts | {res['floor_tok_per_s']:,.0f} | "
              f"{floor_s and loop_s / floor_s:.2f}× | 1.00× |\n"
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
