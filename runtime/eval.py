"""The eval stage: the fine-tuned model next to its base, on the same data and the same decoding.

* loss and perplexity (token-weighted CE) on ``prepared/eval``, for the fine-tuned model and its base;
* generations, side by side, for ``eval.prompts`` (rendered with the bundle's template and the date prepare
  froze, exactly as training rendered its samples) and a few held-out eval samples (the tokens before their
  first trained label): greedy, seeded, through vLLM (here, or in its own environment) or transformers;
* lm-eval-harness scores (``eval.lm_eval``), base vs fine-tuned;
* with ``--checkpoints all|N,M`` (or ``eval.checkpoints``), the same loss and scores for every saved
  checkpoint, a table and a PNG by step, and the best checkpoint named (``eval_checkpoints.py``).

Writes ``<out>/eval/report.json`` (raw) and ``report.md`` (``eval_report.py``).
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import harness
from .atomic import staged_dir
from .generate import Decoding, detect_backend, generate_transformers, run_vllm, vllm_request
from .prepare.template import template_variables
from .train.model import StageError, chat_template, load_tokenizer

if TYPE_CHECKING:
    from .plan import Bundle

N_SAMPLES = 3
VARIANTS = ("fine_tuned", "base")


def _say(msg: str) -> None:
    print(f"[loft] {msg}", file=sys.stderr, flush=True)


def eval_loss(model: Any, rows: Any, packing: bool, pad_id: int, batch_size: int = 4) -> dict[str, Any]:
    """Token-weighted mean cross-entropy over every trained label of the eval split."""
    import torch
    import torch.nn.functional as F

    from .progress import progress
    from .train.collate import LoftCollator

    collate = LoftCollator(pad_token_id=pad_id, packing=packing)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad(), progress(len(rows), "eval loss", "rows") as bar:
        for start in range(0, len(rows), batch_size):
            bar.update(min(batch_size, len(rows) - start))
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
    return {"eval_loss": loss if count else None, "perplexity": math.exp(loss) if count and loss < 50 else None,
            "tokens": count}


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


def render_prompt(tok: Any, template: str | None, variables: dict[str, Any], text: str) -> list[int]:
    """A user prompt as training renders a chat: the bundle's template, its frozen date, the generation
    prompt, tokenized the way prepare tokenizes (apply_chat_template, no extra special tokens)."""
    ids = tok.apply_chat_template([{"role": "user", "content": text}], chat_template=template,
                                  add_generation_prompt=True, tokenize=True, return_dict=False, **variables)
    return [int(i) for i in ids]


def prompt_items(bundle: Bundle, tok: Any, rows: Any) -> list[dict[str, Any]]:
    template = chat_template(bundle) or tok.chat_template
    variables = template_variables(bundle.plan.get("template"))
    items: list[dict[str, Any]] = []
    for text in (bundle.config.get("eval") or {}).get("prompts") or []:
        items.append({"source": "eval.prompts", "prompt_ids": render_prompt(tok, template, variables, text),
                      "reference": None})
    for s in sample_prompts(rows, N_SAMPLES) if rows is not None else []:
        items.append({"source": f"eval sample {s['sample_ids']}", "prompt_ids": s["prompt_ids"],
                      "reference": tok.decode(s["reference_ids"], skip_special_tokens=True)})
    return items


def _device(model: Any) -> Any:
    import torch

    return model.to("cuda") if torch.cuda.is_available() else model


def _free() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def variants(bundle: Bundle, tok: Any, compare_base: bool) -> Iterator[tuple[str, Any]]:
    """("fine_tuned", model), then ("base", model): for an adapter the same PeftModel with the adapter
    disabled (one copy of the weights); for a full fine-tune the base loaded after the tuned one is freed."""
    from .train.load_trained import final_dir, load_trained
    from .train.model import fit_embeddings, is_adapter_dir, load_base_model

    adapter = is_adapter_dir(final_dir(bundle))
    model = _device(load_trained(bundle))
    yield "fine_tuned", model
    if not compare_base:
        return
    if adapter:
        with model.disable_adapter():
            yield "base", model
        return
    del model
    _free()
    base = load_base_model(bundle, for_training=False)
    fit_embeddings(base, tok)
    yield "base", _device(base)


def vllm_generations(bundle: Bundle, backend: Any, tok: Any, prompts: list[list[int]], decoding: Decoding,
                     compare_base: bool) -> dict[str, list[str]]:
    from .train.load_trained import final_dir
    from .train.model import is_adapter_dir, model_source, tokenizer_source

    final = final_dir(bundle)
    dtype = bundle.config["model"]["dtype"]
    tokenizer = str(final) if (final / "tokenizer_config.json").is_file() else tokenizer_source(bundle)[0]
    base_src = model_source(bundle)[0]
    if is_adapter_dir(final):  # one engine on the base: with the LoRA request, and without it
        wanted: list[dict[str, Any]] = [{"name": "fine_tuned", "adapter": str(final)}]
        wanted += [{"name": "base", "adapter": None}] if compare_base else []
        rank = int((bundle.config.get("adapter") or {}).get("r") or 16)
        return run_vllm(backend, vllm_request(base_src, tokenizer, dtype, prompts, decoding, wanted, rank))
    out = run_vllm(backend, vllm_request(str(final), tokenizer, dtype, prompts, decoding,
                                         [{"name": "fine_tuned", "adapter": None}]))
    if compare_base:
        out |= run_vllm(backend, vllm_request(base_src, tokenizer, dtype, prompts, decoding,
                                              [{"name": "base", "adapter": None}]))
    return out


def run(bundle: Bundle, checkpoints: str | None = None) -> int:
    cfg = bundle.config
    ecfg = cfg.get("eval") or {}
    if not ecfg.get("enabled", True):
        _say("eval is off in this plan (eval.enabled: false)")
        return 0
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "eval"):
        return 0
    from datasets import load_from_disk

    from .eval_report import write_report

    seed = int(cfg["training"]["seed"])
    compare_base = bool(ecfg.get("compare_base", True))
    selection = checkpoints if checkpoints is not None else ecfg.get("checkpoints")
    lm_cfg = harness.settings(bundle)
    manager = harness.task_manager(lm_cfg) if lm_cfg else None  # unknown tasks fail before any model loads
    tok = load_tokenizer(bundle)
    pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id or 0)
    eval_dir = bundle.prepared / "eval"
    rows = load_from_disk(str(eval_dir)) if eval_dir.is_dir() else None
    rows = rows if rows is not None and len(rows) else None
    packing = bool(cfg["sequence"].get("packing"))
    chosen = None
    if selection:
        from .eval_checkpoints import checked

        if isinstance(selection, list):  # eval.checkpoints: [200, 400] in the plan
            selection = ",".join(str(step) for step in selection)
        chosen = checked(bundle, str(selection), rows is not None, bool(lm_cfg))
    decoding = Decoding(max_new_tokens=int(ecfg["max_new_tokens"]), seed=seed)
    items = prompt_items(bundle, tok, rows)
    prompts = [it["prompt_ids"] for it in items]
    backend = detect_backend(ecfg.get("backend", "auto")) if items else None
    if backend:
        _say(f"generation backend: {backend.describe()}")

    stats: dict[str, dict[str, Any]] = {}
    texts: dict[str, list[str]] = {}
    bench: dict[str, dict[str, dict[str, float]]] = {}
    for name, model in variants(bundle, tok, compare_base):
        stats[name] = eval_loss(model, rows, packing, pad_id) if rows is not None else \
            {"eval_loss": None, "perplexity": None, "tokens": 0}
        if stats[name]["eval_loss"] is not None:
            _say(f"{name}: eval loss {stats[name]['eval_loss']:.4f}, perplexity {stats[name]['perplexity']}")
        if backend is not None and backend.name == "transformers":
            texts[name] = generate_transformers(model, tok, prompts, decoding)
        if lm_cfg:
            bench[name] = harness.evaluate(model, tok, lm_cfg, seed, manager)
            _say(f"{name}: lm-eval {bench[name]}")
    _free()
    if backend is not None and backend.name == "vllm":
        texts = vllm_generations(bundle, backend, tok, prompts, decoding, compare_base)

    report: dict[str, Any] = {
        "name": bundle.plan.get("name"), **stats["fine_tuned"], "base": stats.get("base"),
        "backend": backend.name if backend else "none", "backend_reason": backend.reason if backend else None,
        "decoding": decoding.as_dict(), "max_new_tokens": decoding.max_new_tokens,
        "date_string": template_variables(bundle.plan.get("template"))["date_string"],
        "generations": [{"source": it["source"], "prompt": tok.decode(it["prompt_ids"], skip_special_tokens=False),
                         "output": texts["fine_tuned"][i], "base": texts["base"][i] if "base" in texts else None,
                         "reference": it["reference"]} for i, it in enumerate(items)],
        "lm_eval": ({"tasks": list(lm_cfg["tasks"]), "limit": lm_cfg.get("limit"), "scores": bench}
                    if lm_cfg else None),
        "checkpoints": None,
    }
    with staged_dir(bundle.out / "eval") as stage:
        if chosen is not None:
            from .eval_checkpoints import evaluate_checkpoints

            report["checkpoints"] = evaluate_checkpoints(bundle, tok, rows, packing, pad_id, chosen, lm_cfg,
                                                         manager, seed, stage)
        write_report(stage, report)
    _say(f"eval report: {bundle.out / 'eval' / 'report.md'}")
    return 0


__all__ = ["VARIANTS", "StageError", "eval_loss", "render_prompt", "run", "sample_prompts"]
