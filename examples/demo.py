"""`make demo`: compile examples/quickstart.yaml and run its bundle end to end on CPU, in a few minutes.

1. build the tiny Llama-architecture model into examples/models/tiny-llama (examples/tiny.py; skipped when
   it is already there),
2. `loftc build examples/quickstart.yaml -o demo-run --force`,
3. `bash demo-run/launch.sh` (prepare → train → eval → merge → export),
4. print the first and last training loss and the eval loss (beside the uniform guess ln(vocab)), where
   every output is, and how to rerun a stage or resume.

    python examples/demo.py [--out demo-run]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "quickstart.yaml"
MODEL = HERE / "models" / "tiny-llama"


def _step(msg: str) -> None:
    print(f"\n=== {msg}", flush=True)


def loftc() -> list[str]:
    """The venv's `loftc` (next to this interpreter), else the module."""
    exe = Path(sys.executable).parent / "loftc"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "loft.compiler"]


def build_model() -> None:
    """The tiny model, built once; rebuilt when it is not the demo's (an older demo's weights, say)."""
    sys.path.insert(0, str(ROOT))
    from examples.tiny import DEMO_INITIALIZER_RANGE
    from examples.tiny import build_model as build

    cfg = MODEL / "config.json"
    if (cfg.is_file() and any(MODEL.glob("*.safetensors"))
            and json.loads(cfg.read_text(encoding="utf-8")).get("initializer_range") == DEMO_INITIALIZER_RANGE):
        print(f"tiny model: {_rel(MODEL)} (already built)")
        return
    shutil.rmtree(MODEL, ignore_errors=True)
    build(MODEL, initializer_range=DEMO_INITIALIZER_RANGE)
    print(f"tiny model: {_rel(MODEL)} (Llama architecture, hidden 64, 2 layers, random weights)")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("HF_HUB_OFFLINE", "1")
    e.setdefault("TRANSFORMERS_OFFLINE", "1")
    e.setdefault("HF_DATASETS_OFFLINE", "1")
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    e["PYTHON"] = sys.executable  # launch.sh runs the runtime with this interpreter
    return e


def read_losses(metrics: Path) -> list[tuple[int, float]]:
    if not metrics.is_file():
        return []
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]


def _rel(p: Path) -> str:
    """A path as the user would type it from the current directory."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def summary(run: Path) -> str:
    """What the run did (losses against the uniform guess), where every output is, and what to type next."""
    plan = json.loads((run / "plan.lock").read_text(encoding="utf-8"))
    out = run / plan["config"].get("output_dir", "out")
    vocab = int(plan["model"].get("vocab_size") or 0)
    uniform = math.log(vocab) if vocab else None
    losses = read_losses(out / "metrics.jsonl")
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    lines = []
    if losses:
        (s0, l0), (s1, l1) = losses[0], losses[-1]
        verdict = f"down {l0 - l1:.2f} nats" if l1 < l0 else "NOT down"
        lines.append(f"train loss    {l0:.3f} (step {s0}) -> {l1:.3f} (step {s1}): {verdict}")
    ev = out / "eval" / "report.json"
    if ev.is_file():
        rep = json.loads(ev.read_text(encoding="utf-8"))
        if rep.get("eval_loss") is not None:
            lines.append(f"eval loss     {rep['eval_loss']:.3f}, perplexity {rep['perplexity']:.1f} (held-out rows)")
    if uniform is not None:
        lines.append(f"              (a uniform guess over the {vocab}-token vocabulary: loss ln {vocab} = "
                     f"{uniform:.3f}, perplexity {vocab})")
    r = _rel
    lines += [
        "",
        "where everything is:",
        f"  plan          {r(run / 'plan.md')}  (what a reviewer reads; locked: {r(run / 'plan.lock')})",
        f"  prepared data {r(out / 'prepared')}  (report: {r(out / 'prepare_report.md')})",
        f"  metrics       {r(out / 'metrics.jsonl')}  (one JSON line per logged step; batches: "
        f"{r(out / 'batches.jsonl')})",
        f"  checkpoints   {r(out / 'checkpoints')}/  ({', '.join(p.name for p in ckpts) or 'none'})",
        f"  adapter       {r(out / 'final')}",
        f"  merged model  {r(out / 'merged')}",
        f"  export        {r(out / 'export')}",
        f"  reports       {r(out / 'train_report.json')}, {r(out / 'eval' / 'report.md')}",
    ]
    nxt = [
        (f"bash {r(run / 'launch.sh')}", "all stages again: prepare hits its cache, train sees the finished run"),
        (f"bash {r(run / 'launch.sh')} eval", "one stage: prepare | train | eval | merge | export"),
        (f"touch {r(run / 'STOP')}", "while train runs: save a checkpoint and quit; launch.sh again resumes"),
        (f"loft debug-tokens {r(run)}", "how samples are tokenized and which tokens are trained"),
        (f"loftc verify {r(run)}", "the bundle is intact and matches its sources"),
    ]
    width = max(len(c) for c, _ in nxt)
    lines += ["", f"next (after `source {r(Path(sys.prefix) / 'bin' / 'activate')}`, so that launch.sh, loft and "
                  "loftc use this Python):"]
    lines += [f"  {c:<{width}}   {why}" for c, why in nxt]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "demo-run", help="bundle directory (default: demo-run)")
    args = ap.parse_args(argv)
    run = args.out.resolve()
    started = time.monotonic()

    _step("1/3 tiny model")
    build_model()

    _step(f"2/3 loftc build {CONFIG.relative_to(ROOT)} -o {run}")
    proc = subprocess.run([*loftc(), "build", str(CONFIG), "-o", str(run), "--force"], env=env(), cwd=ROOT)
    if proc.returncode != 0:
        print(f"demo: loftc build failed (exit {proc.returncode})", file=sys.stderr)
        return proc.returncode

    _step(f"3/3 bash {run / 'launch.sh'}")
    proc = subprocess.run(["bash", str(run / "launch.sh")], env=env(), cwd=ROOT)
    if proc.returncode != 0:
        print(f"demo: the bundle's launch.sh failed (exit {proc.returncode}); outputs so far:\n{summary(run)}",
              file=sys.stderr)
        return proc.returncode

    _step(f"done in {time.monotonic() - started:.0f} s")
    print(summary(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
