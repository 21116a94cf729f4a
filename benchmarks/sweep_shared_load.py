"""N LoRA sweep trials with one shared model load (`loft sweep`) against N separate launches of the same
bundle (`loft train RUN --trial i`, one fresh process each), measured in one run.

The model is a Llama-architecture config of a few hundred MB with seeded random weights saved as
safetensors (--hidden/--layers), so loading it is a real part of each launch, as it is on a GPU box; the
tokenizer is the tiny one the tests build. Data is prepared once and shared by both ways (each separate
launch would otherwise also re-prepare). Both ways train the same trials, so their losses are compared too.
The separate launches run before and after the sweep (A-B-A), so a load that drifts during the run cannot
favour either way.

    python benchmarks/sweep_shared_load.py                      # 4 trials x 2 steps on CPU
    python benchmarks/sweep_shared_load.py --trials 4 --steps 2 --hidden 1024 --layers 12

Prints one markdown row for benchmarks/RESULTS.md ("Sweep: shared model load").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build_model(out: Path, hidden: int, layers: int) -> float:
    """Tokenizer + config.json + random safetensors weights; returns the weights' size in MB."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from examples.tiny import build_tokenizer

    build_tokenizer(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=int(hidden * 2.75),
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=4,
                         head_dim=64, max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(out))
    return sum(p.stat().st_size for p in out.glob("*.safetensors")) / 1e6


CONFIG = """\
loft: 1
name: bench
model: {{base: ./model, dtype: fp32}}
data:
  datasets: [{{path: {data}}}]
template: llama3.2
sequence: {{max_length: 128, packing: true}}
adapter: {{type: lora, r: 8, alpha: 16}}
training: {{micro_batch_size: 1, optimizer: adamw_torch, precision: fp32, gradient_checkpointing: false,
           logging_steps: 1, save_steps: 1000, warmup_steps: 0}}
eval: {{enabled: false}}
target: {{gpu: cpu}}
sweep:
  steps_per_trial: {steps}
  pruner: none
  params:
    adapter.r: {ranks}
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             PYTHONPATH=str(ROOT) + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else ""))
    return e


def run(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        subprocess.run(cmd, check=True, env=env(), stdout=f, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["loss"] for r in rows if r.get("loss") is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--keep", type=Path, default=None, help="work here (kept) instead of a temp dir")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="loft-sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mb = build_model(work / "model", args.hidden, args.layers)
    import shutil

    shutil.copy(ROOT / "examples" / "data" / "chat.jsonl", work / "chat.jsonl")  # data stays inside the project
    (work / "cfg.yaml").write_text(CONFIG.format(data="chat.jsonl", steps=args.steps,
                                                 ranks=[4 * (i + 1) for i in range(args.trials)]))
    py, log = sys.executable, work / "log.txt"
    subprocess.run([py, "-m", "loft.compiler", "build", str(work / "cfg.yaml"), "-o", str(work / "run"), "--force"],
                   check=True, env=env(), capture_output=True)
    run_dir = work / "run"
    run([py, "-m", "loft.runtime", "prepare", str(run_dir)], log)

    def separately() -> list[float]:
        took = [run([py, "-m", "loft.runtime", "train", str(run_dir), "--trial", str(i)], log)
                for i in range(args.trials)]
        alone.append({i: losses(run_dir / "out" / f"trial-{i}") for i in range(args.trials)})
        for i in range(args.trials):
            subprocess.run(["rm", "-rf", str(run_dir / "out" / f"trial-{i}")], check=True)
        return took

    alone: list[dict[int, list[float]]] = []
    # separate, sweep, separate again (A-B-A): a load that drifts during the run shifts both passes of the
    # separate launches the opposite way, so their mean is what the sweep is compared with
    before = separately()
    shared = run([py, "-m", "loft.runtime", "sweep", str(run_dir)], log)
    together = {i: losses(run_dir / "out" / f"trial-{i}") for i in range(args.trials)}
    loads = {json.loads(x)["base_loads"] for x in (run_dir / "out" / "sweep" / "results.jsonl").read_text().splitlines()}
    for i in range(args.trials):
        subprocess.run(["rm", "-rf", str(run_dir / "out" / f"trial-{i}")], check=True)
    after = separately()
    diff = max(abs(a - b) for one in alone for i in one for a, b in zip(one[i], together[i], strict=True))
    assert all(len(together[i]) == args.steps for i in together), "a trial did not run steps_per_trial steps"
    mean = (sum(before) + sum(after)) / 2
    load = os.getloadavg()[0]
    print(f"| {args.trials} LoRA trials × {args.steps} steps, {mb:.0f} MB model (hidden {args.hidden}, "
          f"{args.layers} layers), 1-min load at the end {load:.1f} | {sum(before):.1f} s before, {sum(after):.1f} s "
          f"after (each: {', '.join(f'{s:.1f}' for s in before + after)}) | {shared:.1f} s (base loads: {sorted(loads)}) "
          f"| **{mean / shared:.2f}×** (before {sum(before) / shared:.2f}×, after {sum(after) / shared:.2f}×) "
          f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
