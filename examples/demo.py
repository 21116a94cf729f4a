"""`make demo`: compile examples/quickstart.yaml and run its bundle end to end on CPU, in a few minutes.

1. build the tiny Llama-architecture model into examples/models/tiny-llama (examples/tiny.py; skipped when
   it is already there),
2. `loftc build examples/quickstart.yaml -o demo-run --force`,
3. `bash demo-run/launch.sh` (prepare → train → eval → merge → export),
4. print where everything is, and the first and last training loss.

    python examples/demo.py [--out demo-run]
"""

from __future__ import annotations

import argparse
import json
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
    if (MODEL / "config.json").is_file() and any(MODEL.glob("*.safetensors")):
        print(f"tiny model: {MODEL} (already built)")
        return
    sys.path.insert(0, str(ROOT))
    from examples.tiny import build_model as build

    shutil.rmtree(MODEL, ignore_errors=True)
    build(MODEL)
    print(f"tiny model: {MODEL}")


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


def summary(run: Path) -> str:
    plan = json.loads((run / "plan.lock").read_text(encoding="utf-8"))
    out = run / plan["config"].get("output_dir", "out")
    losses = read_losses(out / "metrics.jsonl")
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    lines = [
        f"bundle        {run}",
        f"plan          {run / 'plan.md'}   (locked: {run / 'plan.lock'})",
        f"prepared data {out / 'prepared'}   (report: {out / 'prepare_report.md'})",
        f"metrics       {out / 'metrics.jsonl'}   batches: {out / 'batches.jsonl'}",
        f"checkpoints   {', '.join(p.name for p in ckpts) or 'none'} in {out / 'checkpoints'}",
        f"final adapter {out / 'final'}",
        f"merged model  {out / 'merged'}",
        f"export        {out / 'export'}",
        f"train report  {out / 'train_report.json'}",
        f"eval report   {out / 'eval' / 'report.md'}",
    ]
    if losses:
        (s0, l0), (s1, l1) = losses[0], losses[-1]
        verdict = "down" if l1 < l0 else "NOT down"
        lines.append(f"loss          {l0:.4f} (step {s0}) -> {l1:.4f} (step {s1}): {verdict}")
    ev = out / "eval" / "report.json"
    if ev.is_file():
        rep = json.loads(ev.read_text(encoding="utf-8"))
        if rep.get("eval_loss") is not None:
            lines.append(f"eval          loss {rep['eval_loss']:.4f}, perplexity {rep['perplexity']:.1f}")
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
    print(f"\nrun it again: bash {run / 'launch.sh'}   (train resumes from the newest complete checkpoint)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
