"""What observing costs, on CPU: the dashboard's incremental read of a long metrics.jsonl, the spike rule
per record, and `loft analyze` rows/s on the shipped chat data.

    .venv/bin/python benchmarks/observe_speed.py [--records 100000] [--copies 3]

(1) read_from: a metrics.jsonl of --records training records (each with two GPUs' NVML fields), read whole
    (a page opened late), then one appended line (a poll).
(2) Detector.observe per record (window 50: the median of 50 values each step).
(3) analyze: examples/data/chat.jsonl × --copies through `loft.runtime.analyze.run` (prepare's encoder with a
    tiny llama3 tokenizer, MinHash LSH, py3langid), imports and tokenizer load not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LOFT_PROGRESS", "0")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_read(tmp: Path, n: int) -> dict[str, float]:
    from loft.runtime.dashboard.runs import read_from

    gpus = [{"index": i, "util_pct": 90, "mem_used_gib": 60.1, "mem_total_gib": 79.6} for i in range(2)]
    path = tmp / "metrics.jsonl"
    with path.open("w") as f:
        for s in range(1, n + 1):
            f.write(json.dumps({"step": s, "loss": 2.0, "learning_rate": 1e-4, "grad_norm": 1.0, "tokens": s * 4096,
                                "tokens_per_s": 9000.0, "epoch": s / n, "elapsed_s": s * 0.5, "max_steps": n,
                                "gpus": gpus, "mem_peak_reserved_gib": 58.0}) + "\n")
    t = time.perf_counter()
    recs, off, _ = read_from(path, 0)
    whole = time.perf_counter() - t
    with path.open("a") as f:
        f.write(json.dumps({"step": n + 1, "loss": 2.0}) + "\n")
    t = time.perf_counter()
    more, _, _ = read_from(path, off)
    poll = time.perf_counter() - t
    assert len(recs) == n and len(more) == 1
    return {"records": n, "mib": round(path.stat().st_size / 2**20, 1), "whole_s": round(whole, 3),
            "poll_ms": round(poll * 1000, 3)}


def bench_detector(n: int) -> float:
    from loft.runtime.train.spikes import Detector, SpikeRule

    rng = random.Random(0)
    det = Detector(SpikeRule())
    recs = [{"loss": 2 + rng.random(), "grad_norm": 1 + rng.random()} for _ in range(n)]
    t = time.perf_counter()
    for r in recs:
        det.observe(r)
    return round((time.perf_counter() - t) / n * 1e6, 2)


def bench_analyze(tmp: Path, copies: int) -> dict[str, float]:
    from loft.runtime.analyze import run
    from loft.runtime.plan import load

    from examples.tiny import build_tokenizer
    from tests.runtime.bundle_factory import make_bundle

    text = (ROOT / "examples" / "data" / "chat.jsonl").read_text()
    root = tmp / "run"
    (root / "data").mkdir(parents=True)
    (root / "data" / "chat.jsonl").write_text(text * copies)
    make_bundle(root, build_tokenizer(tmp / "tok", family="llama3"), [{"name": "chat", "path": "data/chat.jsonl"}])
    bundle = load(root)
    import datasketch  # noqa: F401  (imports and the tokenizer's first load not timed)
    import matplotlib.pyplot  # noqa: F401
    import py3langid
    from loft.runtime.prepare.stage import load_tokenizer

    load_tokenizer(bundle)

    py3langid.classify("warm up the model")
    t = time.perf_counter()
    result = run(bundle)
    dt = time.perf_counter() - t
    rows = result["datasets"]["chat"]["rows"]
    return {"rows": rows, "s": round(dt, 2), "rows_per_s": round(rows / dt, 1),
            "exact_duplicates": result["datasets"]["chat"]["exact_duplicates"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out = {"read": bench_read(tmp, args.records), "detector_us_per_record": bench_detector(args.records),
               "analyze": bench_analyze(tmp, args.copies), "cpus": os.cpu_count()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
