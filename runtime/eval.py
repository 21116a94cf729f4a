"""The eval stage: loss and perplexity on ``prepared/eval``, and generations for the plan's prompts and a
few held-out samples. vLLM generates when the plan allows it (``eval.backend``), it is installed and a GPU
is visible; otherwise transformers' ``generate`` (greedy). Writes ``<out>/eval/report.json`` and ``.md``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .train.model import StageError, load_tokenizer

if TYPE_CHECKING:
    from .plan import Bundle

N_SAMPLES = 3


def _say(msg: str) -> None:
    print(f"[loft] {msg}", file=sys.stderr, flush=True)


def eval_loss(model: Any, rows: Any, packing: bool, pad_id: int, batch_size: int = 4) -> dict[str, Any]:
    """Token-weighted mean cross-entropy over every trained label of the eval split."""
    import torch
    import torch.nn.functional as F

    from .train.collate import LoftCollator

    collate = LoftCollator(pad_token_id=pad_id, packing=packing)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate([rows[i] for i in range(start, min(len(rows), start + batch_size))])
            batch.pop("sample_ids", None)
            labels = batch.pop("labels").to(device)
            # no KV cache: with one, transformers skips the packed-sequence (block-diagonal) mask
            logits = model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False).logits.float()
            shift = F.pad(labels, (0, 1), value=-100)[..., 1:]
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shift.reshape(-1),
                                     ignore_index=-100, reduction="sum")
            total += float(losses)
            count += int((shift != -100).sum())
    loss = total / count if count else float("nan")
    return {"eval_loss": loss, "perplexity": math.exp(loss) if count and loss < 50 else None, "tokens": count}


def sample_prompts(rows: Any, n: int) -> list[dict[str, Any]]:
    """Prompts from held-out rows: each first sample's tokens before its first trained label."""
    out = []
    for i in range(min(n, len(rows))):
        row = rows[i]
        pos = row.get("position_ids") or list(range(len(row["input_ids"])))
        end = next((j for j in range(1, len(pos)) if pos[j] == 0), len(pos))
        labels = row["labels"][:end]
        first = next((j for j, x in enumerate(labels) if x != -100), None)
        if first is None or first == 0:
            continue
        out.append({"sample_ids": row.get("sample_ids", [])[:1], "prompt_ids": row["input_ids"][:first],
                    "reference_ids": [x for x in labels[first:] if x != -100]})
    return out


def _backend(cfg: dict[str, Any]) -> str:
    want = (cfg.get("eval") or {}).get("backend", "auto")
    if want == "transformers":
        return "transformers"
    try:
        import torch
        import vllm  # noqa: F401

        ok = torch.cuda.is_available()
    except ImportError:
        ok = False
    if want == "vllm" and not ok:
        raise StageError("eval.backend: vllm needs the vllm package and a CUDA GPU; neither is usable here "
                         "(use eval.backend: auto or transformers)")
    return "vllm" if ok else "transformers"


def generate_transformers(model: Any, tok: Any, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    import torch

    device = next(model.parameters()).device
    texts = []
    for ids in prompts:
        inp = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        texts.append(tok.decode(gen[0, len(ids):], skip_special_tokens=True))
    return texts


def generate_vllm(bundle: Bundle, tok: Any, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    from vllm import LLM, SamplingParams

    from .train.model import is_adapter_dir, model_source

    final = bundle.out / "final"
    lora = is_adapter_dir(final)
    src = model_source(bundle)[0] if lora else str(final)
    extra: dict[str, Any] = {}
    if lora:  # vLLM's LoRA slots are sized by max_lora_rank (default 16)
        r = int((bundle.config.get("adapter") or {}).get("r", 16))
        extra["max_lora_rank"] = next((x for x in (8, 16, 32, 64, 128, 256, 320, 512) if x >= r), r)
    llm = LLM(model=src, tokenizer=str(final), enable_lora=lora,
              dtype={"bf16": "bfloat16", "fp16": "float16"}.get(bundle.config["model"]["dtype"], "float32"), **extra)
    kwargs: dict[str, Any] = {}
    if lora:
        from vllm.lora.request import LoRARequest

        kwargs["lora_request"] = LoRARequest("loft", 1, str(final))
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, **kwargs)
    return [o.outputs[0].text for o in outs]


def write_report(dest: Path, report: dict[str, Any]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    lines = [f"# Eval: {report['name']}", "",
             f"- eval loss: {report['eval_loss'] if report['eval_loss'] is not None else 'n/a (no eval split)'}",
             f"- perplexity: {report['perplexity'] if report['perplexity'] is not None else 'n/a'}",
             f"- eval tokens: {report['tokens']}", f"- generation backend: {report['backend']}", "",
             "## Generations", ""]
    for g in report["generations"]:
        lines += [f"### {g['source']}", "", "Prompt:", "", "```", g["prompt"], "```", "", "Output:", "", "```",
                  g["output"], "```", ""]
        if g.get("reference") is not None:
            lines += ["Reference:", "", "```", g["reference"], "```", ""]
    (dest / "report.md").write_text("\n".join(lines), encoding="utf-8")


def run(bundle: Bundle) -> int:
    cfg = bundle.config
    ecfg = cfg.get("eval") or {}
    if not ecfg.get("enabled", True):
        _say("eval is off in this plan (eval.enabled: false)")
        return 0
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "eval"):
        return 0
    import torch
    from datasets import load_from_disk

    from .train.load_trained import load_trained

    tok = load_tokenizer(bundle)
    model = load_trained(bundle)
    if torch.cuda.is_available():
        model.to("cuda")
    pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id or 0)
    eval_dir = bundle.prepared / "eval"
    rows = load_from_disk(str(eval_dir)) if eval_dir.is_dir() else None
    packing = bool(cfg["sequence"].get("packing"))
    stats: dict[str, Any] = {"eval_loss": None, "perplexity": None, "tokens": 0}
    if rows is not None and len(rows):
        stats = eval_loss(model, rows, packing, pad_id)
        _say(f"eval loss {stats['eval_loss']:.4f}, perplexity {stats['perplexity']}")
    max_new = int(ecfg.get("max_new_tokens", 128))
    items: list[dict[str, Any]] = []
    for text in ecfg.get("prompts") or []:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      tokenize=True, return_dict=False)
        items.append({"source": "eval.prompts", "prompt_ids": list(ids), "reference": None})
    for s in sample_prompts(rows, N_SAMPLES) if rows is not None else []:
        items.append({"source": f"eval sample {s['sample_ids']}", "prompt_ids": s["prompt_ids"],
                      "reference": tok.decode(s["reference_ids"], skip_special_tokens=True)})
    backend = _backend(cfg) if items else "none"
    prompts = [it["prompt_ids"] for it in items]
    if backend == "vllm":
        del model
        outputs = generate_vllm(bundle, tok, prompts, max_new)
    else:
        outputs = generate_transformers(model, tok, prompts, max_new)
    report = {
        "name": bundle.plan.get("name"), **stats, "backend": backend, "max_new_tokens": max_new,
        "generations": [{"source": it["source"], "prompt": tok.decode(it["prompt_ids"], skip_special_tokens=False),
                         "output": out, "reference": it["reference"]} for it, out in zip(items, outputs, strict=True)],
    }
    write_report(bundle.out / "eval", report)
    _say(f"eval report: {bundle.out / 'eval' / 'report.md'}")
    return 0
