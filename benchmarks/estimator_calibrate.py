"""Measure peak VRAM and step time of every training mode loft plans, on the GPUs of this machine.

The calibration behind the estimator (docs/estimator.md): each case builds a model from a config.json
with random weights (no hub, no download), runs 3 optimizer steps on random tokens and records
`max_memory_allocated`, `max_memory_reserved` and the step time — or `oom`. Every case runs in its own
process (a fresh allocator, a per-case timeout; multi-GPU cases under `torchrun`), and each result is
appended to the output file as soon as it is known, so a run stopped by its budget keeps what it measured.
The output has the format of ../shared/calibration/h100_small.jsonl (an `env` line, `model` lines,
`case` lines) plus the fields that name each mode, and `benchmarks/estimator_accuracy.py --extra FILE`
(and tests/estimate/test_accuracy.py, for files under benchmarks/calibration/) compares it with the
estimator per mode.

Modes: full bf16 / fp32 master, LoRA r16, QLoRA (nf4 + double quantisation, PEFT's
prepare_model_for_kbit_training), 8-bit AdamW (bitsandbytes), Liger kernels (fused linear cross-entropy),
flash-attention 2 with packed rows (position_ids, varlen), 8k-32k sequences, DeepSpeed ZeRO-2 / ZeRO-3
(optimizer offload, parameter offload), FSDP2 (`fully_shard`); 4 model shapes from 0.5B to 8B.

    python benchmarks/estimator_calibrate.py --list                      # the cases (no GPU needed)
    python benchmarks/estimator_calibrate.py --budget-s 540 \\
        --out benchmarks/calibration/h200.jsonl                          # one go on an H100/H200 box
    python benchmarks/estimator_calibrate.py --smoke                     # single-process + FSDP2 paths on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODELS = ROOT.parent / "shared" / "calibration" / "models"
STEPS = 3
# Architectures beyond ../shared/calibration/models (the public config.json facts of each model).
BUILTIN_MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 8960, "vocab_size": 151936,
                     "tie_word_embeddings": True, "max_position_embeddings": 32768, "rope_theta": 1000000.0},
    "llama3.1-8b": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                    "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256,
                    "tie_word_embeddings": False, "max_position_embeddings": 131072, "rope_theta": 500000.0},
}
SMOKE_MODEL = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 512,
               "tie_word_embeddings": True, "max_position_embeddings": 4096}


def models() -> dict[str, dict[str, Any]]:
    out = dict(BUILTIN_MODELS)
    for cfg in sorted(SHARED_MODELS.glob("*/config.json")) if SHARED_MODELS.is_dir() else []:
        out[cfg.parent.name] = json.loads(cfg.read_text(encoding="utf-8"))
    return out


def _case(model: str, mode: str, **kw: Any) -> dict[str, Any]:
    """One case: the switches the estimator reads (estimator_accuracy.case_plan maps them onto a plan)."""
    base = {"model": model, "mode": mode, "adapter": "none", "dtype": "bf16", "optimizer": "adamw_torch_fused",
            "grad_ckpt": True, "batch": 1, "seq": 2048, "attn": "sdpa", "packing": False, "liger": False,
            "zero_stage": 0, "offload_optimizer": False, "offload_params": False, "fsdp": None, "world": 1}
    base.update(kw)
    return base


def cases(names: list[str], world: int) -> list[dict[str, Any]]:
    """Every mode on every model, small and single-GPU first (a budget cut keeps the cheap ones)."""
    lora = {"adapter": "lora"}
    out: list[dict[str, Any]] = []
    for m in names:
        out += [
            _case(m, "full_bf16", grad_ckpt=True), _case(m, "full_bf16", grad_ckpt=False),
            _case(m, "full_bf16", batch=4, seq=512), _case(m, "full_fp32_master", dtype="fp32"),
            _case(m, "lora_r16", **lora), _case(m, "lora_r16", grad_ckpt=False, **lora),
            _case(m, "qlora_nf4", adapter="qlora"), _case(m, "qlora_nf4", adapter="qlora", grad_ckpt=False),
            _case(m, "adamw_8bit", optimizer="adamw_8bit"),
            _case(m, "liger", liger=True), _case(m, "liger_lora", liger=True, **lora),
            _case(m, "flash_packed", attn="flash_attention_2", packing=True, seq=8192, **lora),
            *[_case(m, f"long_{s // 1024}k", attn="flash_attention_2", seq=s, **lora) for s in (8192, 16384, 32768)],
            _case(m, "long_16k_full", attn="flash_attention_2", seq=16384),
            _case(m, "zero2", zero_stage=2, world=1), _case(m, "zero3", zero_stage=3, world=1),
            _case(m, "zero3_offload_opt", zero_stage=3, offload_optimizer=True, world=1),
            _case(m, "zero3_offload_all", zero_stage=3, offload_optimizer=True, offload_params=True, world=1),
            _case(m, "zero2_offload_opt", zero_stage=2, offload_optimizer=True, world=1),
            _case(m, "fsdp2", fsdp="full_shard", world=1),
        ]
        if world > 1:
            out += [_case(m, "zero2", zero_stage=2, world=world), _case(m, "zero3", zero_stage=3, world=world),
                    _case(m, "zero3_offload_opt", zero_stage=3, offload_optimizer=True, world=world),
                    _case(m, "fsdp2", fsdp="full_shard", world=world)]
    size = {n: i for i, n in enumerate(names)}
    return sorted(out, key=lambda c: (c["world"] > 1, size[c["model"]]))


# ------------------------------------------------------------------------------------------- one case


def _build(case: dict[str, Any], facts: dict[str, Any], device: str) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    facts = {k: v for k, v in facts.items() if not k.startswith("_")}
    cfg = AutoConfig.for_model(facts.pop("model_type"), **facts)
    cfg.use_cache = False
    cfg._attn_implementation = case["attn"] if device != "cpu" else "sdpa"
    if case["liger"]:
        from liger_kernel.transformers import _apply_liger_kernel

        _apply_liger_kernel(cfg.model_type, fused_linear_cross_entropy=True, cross_entropy=False)
    dtype = torch.float32 if case["dtype"] == "fp32" else torch.bfloat16
    if case["adapter"] == "qlora":
        return _qlora_model(cfg, case)
    if case["zero_stage"] == 3:
        import deepspeed

        with deepspeed.zero.Init(config_dict_or_path=_ds_config(case), dtype=dtype):
            return AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def _qlora_model(cfg: Any, case: dict[str, Any]) -> Any:
    """Random weights saved to a temporary folder, loaded back in 4 bits (transformers quantises on load)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tmp = Path(tempfile.mkdtemp(prefix="loft-calib-"))
    try:
        AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(tmp)
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=torch.bfloat16,
                                                     device_map={"": 0}, attn_implementation=case["attn"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=case["grad_ckpt"])


def _ds_config(case: dict[str, Any]) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": case["zero_stage"], "overlap_comm": True, "contiguous_gradients": True}
    if case["offload_optimizer"]:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if case["offload_params"]:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {"train_micro_batch_size_per_gpu": case["batch"], "gradient_accumulation_steps": 1,
            "bf16": {"enabled": True}, "zero_optimization": zero, "gradient_clipping": 0.0,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-5}}, "steps_per_print": 10**9}


def _batch(case: dict[str, Any], vocab: int, device: str) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (case["batch"], case["seq"]), generator=g)
    out: dict[str, Any] = {"input_ids": ids.to(device), "labels": ids.to(device)}
    if case["packing"]:  # rows of several documents, positions restarting per document (flash varlen)
        lengths, pos = [], []
        left = case["seq"]
        while left > 0:
            n = min(left, int(torch.randint(256, 2048, (1,), generator=g)))
            lengths.append(n)
            left -= n
        for n in lengths:
            pos += list(range(n))
        out["position_ids"] = torch.tensor([pos] * case["batch"], device=device)
    return out


def run_case(case: dict[str, Any], facts: dict[str, Any], device: str) -> dict[str, Any]:
    """3 steps of the case in this process; peak memory and step time (rank 0's view, max over ranks)."""
    import torch

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if world > 1 or case["zero_stage"] or case["fsdp"]:
        import torch.distributed as dist

        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", "29511")
            dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
    result: dict[str, Any] = {"kind": "case", **case}
    try:
        model = _build(case, facts, device)
        step, params = _trainer(case, model)
        batch = _batch(case, model.config.vocab_size, device)
        times = []
        for _ in range(STEPS):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(batch)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        step_s = sum(times[1:]) / (STEPS - 1)  # the first step creates the optimizer states
        result.update(status="ok", step_s=round(step_s, 4), first_step_s=round(times[0], 4),
                      tokens_per_s=round(case["batch"] * case["seq"] * world / step_s, 1), trainable=params)
    except torch.OutOfMemoryError:
        result.update(status="oom")
    if device == "cuda":
        peaks = torch.tensor([torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()], device="cuda",
                             dtype=torch.float64)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
        result.update(peak_allocated_gib=round(float(peaks[0]) / 2**30, 4),
                      peak_reserved_gib=round(float(peaks[1]) / 2**30, 4))
    return result


def _trainer(case: dict[str, Any], model: Any) -> tuple[Any, int]:
    """(one training step on a batch, trainable parameters): the optimizer and wrapping of the mode."""
    import torch

    if case["grad_ckpt"] and case["adapter"] != "qlora":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if case["adapter"] != "none":
        from peft import LoraConfig, get_peft_model

        if case["adapter"] == "lora":
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                                                 target_modules="all-linear"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in trainable)
    if case["zero_stage"]:
        import deepspeed

        engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable, config=_ds_config(case))

        def ds_step(batch: dict[str, Any]) -> None:
            loss = engine(**batch).loss
            engine.backward(loss)
            engine.step()
        return ds_step, n
    if case["fsdp"]:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for layer in model.model.layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
    if case["optimizer"] == "adamw_8bit":
        import bitsandbytes as bnb

        opt: Any = bnb.optim.AdamW8bit(trainable, lr=1e-5)
    else:
        opt = torch.optim.AdamW(trainable, lr=1e-5, fused=next(model.parameters()).is_cuda)
    autocast = torch.autocast("cuda" if next(model.parameters()).is_cuda else "cpu", dtype=torch.bfloat16)

    def step(batch: dict[str, Any]) -> None:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, n


# ------------------------------------------------------------------------------------------- the driver


def env_line(device: str) -> dict[str, Any]:
    import torch
    import transformers

    line: dict[str, Any] = {"kind": "env", "torch": torch.__version__, "transformers": transformers.__version__}
    if device == "cuda":
        torch.cuda.init()
        free, total = torch.cuda.mem_get_info()
        line.update(gpu=torch.cuda.get_device_name(), gpus=torch.cuda.device_count(), total_gib=round(total / 2**30, 4),
                    context_used_gib=round((total - free) / 2**30, 4))
    for name in ("peft", "deepspeed", "bitsandbytes", "liger_kernel", "flash_attn"):
        try:
            line[name] = __import__(name).__version__
        except Exception:
            line[name] = None
    return line


def _spawn(case: dict[str, Any], facts: dict[str, Any], timeout: float) -> dict[str, Any]:
    payload = json.dumps({"case": case, "facts": facts})
    cmd = [sys.executable, __file__, "--run-case", payload]
    if case["world"] > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={case['world']}", __file__,
               "--run-case", payload]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"kind": "case", **case, "status": "timeout"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{") and '"kind": "case"' in line:
            return dict(json.loads(line))
    return {"kind": "case", **case, "status": "error", "error": done.stderr.strip().splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "calibration" / "gpu.jsonl")
    ap.add_argument("--models", nargs="*", help="model names (default: all, smallest first)")
    ap.add_argument("--modes", nargs="*", help="only these modes")
    ap.add_argument("--budget-s", type=float, default=540.0, help="stop starting cases after this many seconds")
    ap.add_argument("--case-timeout-s", type=float, default=150.0)
    ap.add_argument("--list", action="store_true", help="print the cases and exit")
    ap.add_argument("--smoke", action="store_true", help="run the single-process modes on CPU with a tiny model")
    ap.add_argument("--run-case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_case:
        job = json.loads(args.run_case)
        device = "cuda" if not job.get("cpu") else "cpu"
        res = run_case(job["case"], job["facts"], device)
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps(res, sort_keys=True), flush=True)
        return 0
    catalog = {"smoke": SMOKE_MODEL} if args.smoke else models()
    order = sorted(catalog, key=lambda n: catalog[n]["hidden_size"] * catalog[n]["num_hidden_layers"])
    names = [n for n in order if not args.models or n in args.models]
    world = 1
    if not (args.list or args.smoke):
        import torch

        if not torch.cuda.is_available():
            print("no CUDA GPU: use --list or --smoke here, run the calibration on a GPU box", file=sys.stderr)
            return 2
        world = torch.cuda.device_count()
    todo = [c for c in cases(names, world) if not args.modes or c["mode"] in args.modes]
    if args.smoke:
        todo = [c for c in todo if c["mode"] in ("full_bf16", "lora_r16", "full_fp32_master", "fsdp2")
                and c["seq"] <= 2048 and c["world"] == 1]  # FSDP2 over gloo; ZeRO needs its CUDA ops
        todo = list({c["mode"]: c for c in reversed(todo)}.values())  # one case per mode
    if args.list:
        for c in todo:
            print(json.dumps(c, sort_keys=True))
        return 0
    if args.smoke:
        import torch

        torch.set_num_threads(1)  # a tiny model: threads only contend
        for c in todo:
            res = run_case({**c, "seq": 64}, SMOKE_MODEL, "cpu")
            print(json.dumps(res, sort_keys=True))
            if res["status"] != "ok":
                return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with args.out.open("a", encoding="utf-8") as out:
        out.write(json.dumps(env_line("cuda"), sort_keys=True) + "\n")
        for name in names:
            out.write(json.dumps({"kind": "model", "model": name, "config": catalog[name]}, sort_keys=True) + "\n")
        out.flush()
        for c in todo:
            left = args.budget_s - (time.monotonic() - start)
            if left < 20:
                print(f"budget spent: {len(todo) - todo.index(c)} cases not run", file=sys.stderr)
                break
            res = _spawn(c, catalog[c["model"]], min(args.case_timeout_s, left))
            out.write(json.dumps(res, sort_keys=True) + "\n")
            out.flush()
            print(f"{c['model']:14} {c['mode']:18} world {c['world']} -> {res['status']} "
                  f"{res.get('peak_reserved_gib', '')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
