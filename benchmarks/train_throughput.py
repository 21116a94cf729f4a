"""Training throughput on a GPU: loft packed vs loft unpacked (padded), and loft vs a plain Trainer script.

Same model (a Llama-architecture config with seeded random weights, or --model DIR), same samples (a
realistic, long-tailed length mix: log-normal, median ~350 tokens, clipped to --max-length), same LoRA
settings, the same number of real tokens per optimizer step. Throughput is real (non-padding) tokens per
second between the end of the warm-up steps and the last step, from the Trainer's token counter.

Runs:
  loft-packed         loft's runtime train stage (run(bundle)) on packed rows (flattened, position_ids)
  loft-unpacked       the same stage with sequence.packing: false (one sample per row, padded per batch)
  plain-padded        a plain transformers Trainer script: padding collator, no packing (what most scripts do)
  plain-flattening    a plain Trainer with transformers' DataCollatorWithFlattening (HF's padding-free packing)

    python benchmarks/train_throughput.py                 # needs a CUDA GPU; writes benchmarks/out/train_throughput.json
    python benchmarks/train_throughput.py --smoke         # tiny CPU run that checks the script works (numbers meaningless)

Prints a markdown table for benchmarks/RESULTS.md ("Training throughput").
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "smoke": (64, 2, 4, 2, 128, 512),
    "small": (1024, 12, 16, 8, 2816, 32000),   # ~0.2 B
    "1b": (2048, 16, 32, 8, 8192, 128256),      # Llama-3.2-1B shape
}


def length_mix(n: int, max_len: int, seed: int) -> list[int]:
    """Log-normal lengths (median ~350, long tail) clipped to [16, max_len]: typical chat SFT data."""
    import random

    rng = random.Random(seed)
    return [max(16, min(max_len, int(rng.lognormvariate(math.log(350), 0.9)))) for _ in range(n)]


def make_samples(lengths: list[int], vocab: int, seed: int) -> list[dict[str, Any]]:
    import random

    rng = random.Random(seed + 1)
    out = []
    for i, n in enumerate(lengths):
        ids = [rng.randrange(10, vocab) for _ in range(n)]
        prompt = max(1, int(n * 0.3))
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:], "sample_id": i})
    return out


def pack(samples: list[dict[str, Any]], max_len: int) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [] for k in ("input_ids", "labels", "position_ids", "sample_ids", "length")}
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        if cur:
            cols["input_ids"].append([t for s in cur for t in s["input_ids"]])
            cols["labels"].append([t for s in cur for t in s["labels"]])
            cols["position_ids"].append([p for s in cur for p in range(len(s["input_ids"]))])
            cols["sample_ids"].append([s["sample_id"] for s in cur])
            cols["length"].append(len(cols["input_ids"][-1]))
            cur.clear()

    for s in samples:
        if cur and sum(len(c["input_ids"]) for c in cur) + len(s["input_ids"]) > max_len:
            flush()
        cur.append(s)
    flush()
    return cols


def unpacked(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {"input_ids": [s["input_ids"] for s in samples], "labels": [s["labels"] for s in samples],
            "position_ids": [list(range(len(s["input_ids"]))) for s in samples],
            "sample_ids": [[s["sample_id"]] for s in samples], "length": [len(s["input_ids"]) for s in samples]}


def build_model(dest: Path, size: str, seed: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    h, layers, heads, kv, inter, vocab = SIZES[size]
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=inter, vocab_size=vocab, max_position_embeddings=8192,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    LlamaForCausalLM(cfg).save_pretrained(str(dest))
    from examples.tiny import build_tokenizer

    build_tokenizer(dest, vocab_size=min(vocab, 512))  # only saved with the model; ids come from make_samples
    return dest


class Timer:
    """Real tokens/s from the end of step `warmup` to the last step (a TrainerCallback)."""

    def __new__(cls, warmup: int) -> Any:
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.mark: tuple[float, int] | None = None
                self.last: tuple[float, int] | None = None

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                now = (time.perf_counter(), int(state.num_input_tokens_seen))
                if state.global_step == warmup:
                    self.mark = now
                self.last = now

            def tokens_per_s(self) -> float:
                assert self.mark and self.last and self.last[0] > self.mark[0]
                return (self.last[1] - self.mark[1]) / (self.last[0] - self.mark[0])

        return _Timer()


def loft_run(work: Path, model: Path, rows: dict[str, list[Any]], packing: bool, micro: int, args: Any) -> dict:
    from datasets import Dataset
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    run_dir = work / ("loft-packed" if packing else "loft-unpacked")
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    (run_dir / "model").symlink_to(model, target_is_directory=True)
    Dataset.from_dict(rows).save_to_disk(str(run_dir / "out" / "prepared" / "train"))
    on_gpu = not args.smoke
    config = {
        "name": run_dir.name, "output_dir": "out",
        "model": {"base": "model", "dtype": "bf16" if on_gpu else "fp32", "attn_implementation": args.attn,
                  "init": "pretrained", "trust_remote_code": False, "tokenizer": None, "revision": None},
        "sequence": {"max_length": args.max_length, "packing": packing},
        "adapter": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear",
                    "rslora": False, "dora": False},
        "training": {"learning_rate": 1e-4, "lr_scheduler": "constant", "warmup_steps": 0, "epochs": 1,
                     "max_steps": args.steps, "optimizer": "adamw_torch_fused" if on_gpu else "adamw_torch",
                     "weight_decay": 0.0, "max_grad_norm": 1.0, "precision": "bf16" if on_gpu else "fp32",
                     "gradient_checkpointing": args.gradient_checkpointing, "seed": 0, "logging_steps": 1,
                     "eval_steps": None, "save_steps": 10 ** 9, "save_total_limit": 1,
                     "kernels": {"liger": False, "cut_cross_entropy": False},
                     "aux_losses": {"training_temperature": 1.0, "adaptive_label_smoothing": {"enabled": False}}},
        "deepspeed": {"stage": 0}, "fsdp": {"enabled": False}, "tracking": {"wandb": None},
        "eval": {"enabled": False}, "export": {"merge": False, "formats": []},
    }
    plan = {"format": 1, "name": run_dir.name, "config": config,
            "model": {"path": "model", "id": None}, "template": {"file": None},
            "derived": {"world_size": 1, "micro_batch_size": micro, "gradient_accumulation_steps": 1,
                        "warmup_steps": 0}, "launch": {"deepspeed_config": None}, "sweep": []}
    (run_dir / "plan.lock").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n")
    timer = Timer(args.warmup)
    _reset_peak()
    run(load(run_dir), callbacks=[timer])
    return {"tokens_per_s": timer.tokens_per_s(), "micro_batch_rows": micro, "peak_gib": _peak()}


def plain_run(model_dir: Path, samples: list[dict[str, Any]], micro: int, flattening: bool, args: Any) -> dict:
    """What a typical hand-written script does: Trainer + PEFT, a standard collator, default settings."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening, Trainer, TrainingArguments

    on_gpu = not args.smoke
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.bfloat16 if on_gpu else torch.float32,
                                                 attn_implementation=args.attn)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules="all-linear"))
    ds = Dataset.from_dict({"input_ids": [s["input_ids"] for s in samples], "labels": [s["labels"] for s in samples]})

    def pad(rows: list[dict[str, Any]]) -> dict[str, Any]:  # DataCollatorForSeq2Seq's behaviour, no tokenizer
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], lab[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "labels": lab, "attention_mask": mask}

    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="plain-"), per_device_train_batch_size=micro, max_steps=args.steps,
        learning_rate=1e-4, lr_scheduler_type="constant", bf16=on_gpu, use_cpu=not on_gpu, logging_steps=1,
        save_strategy="no", report_to="none", optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        activation_checkpointing=args.gradient_checkpointing, remove_unused_columns=False, seed=0,
        include_num_input_tokens_seen="all" if flattening else "non_padding", disable_tqdm=True)
    timer = Timer(args.warmup)
    collator = DataCollatorWithFlattening() if flattening else pad
    _reset_peak()
    Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator, callbacks=[timer]).train()
    result = {"tokens_per_s": timer.tokens_per_s(), "micro_batch_rows": micro, "peak_gib": _peak()}
    del model
    _free()
    return result


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if torch.cuda.is_available() else None


def _free() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--model", type=Path, default=None, help="a local model directory instead of a random one")
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--tokens-per-step", type=int, default=16384, help="real tokens per optimizer step (about)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps excluded from the timing")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run: checks the script, numbers are meaningless")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "train_throughput.json")
    args = ap.parse_args()

    import torch

    if args.smoke:
        args.size, args.max_length, args.tokens_per_step, args.steps, args.warmup = "smoke", 256, 1024, 6, 2
    elif not torch.cuda.is_available():
        print("train_throughput: needs a CUDA GPU (use --smoke to check the script on CPU)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="loft-tput-"))
    model = args.model.resolve() if args.model else build_model(work / "model", args.size, seed=0)
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(str(model)).vocab_size
    mean_len = sum(length_mix(4000, args.max_length, 0)) / 4000
    per_step_samples = max(1, round(args.tokens_per_step / mean_len))
    lengths = length_mix(per_step_samples * (args.steps + 2), args.max_length, seed=0)
    samples = make_samples(lengths, vocab, seed=0)
    packed_rows = pack(samples, args.max_length)
    rows_per_step = max(1, round(args.tokens_per_step / args.max_length))
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "size": args.size, "model": str(args.model) if args.model else "random",
        "max_length": args.max_length, "steps": args.steps, "warmup": args.warmup,
        "tokens_per_step": args.tokens_per_step, "mean_sample_len": round(mean_len, 1),
        "packing_efficiency": round(sum(packed_rows["length"]) / (len(packed_rows["length"]) * args.max_length), 3),
        "runs": {},
    }
    results["runs"]["loft-packed"] = loft_run(work, model, packed_rows, True, rows_per_step, args)
    _free()
    results["runs"]["loft-unpacked"] = loft_run(work, model, unpacked(samples), False, per_step_samples, args)
    _free()
    results["runs"]["plain-padded"] = plain_run(model, samples, per_step_samples, False, args)
    results["runs"]["plain-flattening"] = plain_run(model, samples, per_step_samples, True, args)
    r = {k: v["tokens_per_s"] for k, v in results["runs"].items()}
    results["ratios"] = {
        "loft packed / loft unpacked": r["loft-packed"] / r["loft-unpacked"],
        "loft packed / plain padded Trainer": r["loft-packed"] / r["plain-padded"],
        "loft packed / plain Trainer + DataCollatorWithFlattening": r["loft-packed"] / r["plain-flattening"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work, ignore_errors=True)

    print(f"\nDevice: {results['device']}, torch {results['torch']}; model {results['size']} ({results['model']}), "
          f"max_length {args.max_length}, ~{args.tokens_per_step} real tokens/step, {args.steps} steps "
          f"(first {args.warmup} untimed); mean sample {results['mean_sample_len']} tokens, "
          f"packing efficiency {results['packing_efficiency']:.1%}\n")
    print("| run | real tokens/s | micro batch (rows) | peak GiB |\n|---|---:|---:|---:|")
    for name, v in results["runs"].items():
        print(f"| {name} | {v['tokens_per_s']:.0f} | {v['micro_batch_rows']} | {v['peak_gib']} |")
    print("\n| ratio | value |\n|---|---:|")
    for name, v in results["ratios"].items():
        print(f"| {name} | {v:.2f}× |")
    print(f"\n{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
