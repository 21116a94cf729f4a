"""Warnings for valid but suspicious combinations, found on the resolved plan.

Each rule looks at the fully resolved config (defaults filled) and the derived numbers, and returns a
warning with a stable code, the key to change, and that key's line:col (or its nearest written parent).
Warnings never stop a build; `--strict` makes them errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .errors import Diagnostic
from .parse import Document
from .validate import Locator

Rule = Callable[[dict[str, Any]], Iterator[tuple[str, tuple[Any, ...], str, str]]]

LORA_RATIO = (0.5, 4.0)  # alpha / r outside this range is unusual
FULL_FT_MAX_LR = 1e-4  # full fine-tunes usually run at 1e-5 … 5e-5


def collect(plan: dict[str, Any], doc: Document | None, file: str = "") -> list[Diagnostic]:
    """Every suspicious-combination warning for a resolved plan, located in the config."""
    where = Locator.for_config(doc, file or (doc.path if doc else ""))
    out: list[Diagnostic] = []
    for rule in RULES:
        for code, keys, message, hint in rule(plan):
            out.append(where.diag(keys, message, code, severity="warning", hint=hint))
    return out


def _cpu(plan: dict[str, Any]) -> bool:
    return str(plan["config"]["target"]["gpu"]).lower() == "cpu"


def _eval_split_without_eval(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    if c["eval"]["enabled"]:
        return
    if c["data"]["eval_split"]:
        yield ("eval-split-unused", ("data", "eval_split"),
               "data.eval_split holds rows out of training, but eval.enabled is false",
               "set eval.enabled: true, or data.eval_split: 0")
    for i, ds in enumerate(c["data"]["datasets"]):
        if ds["eval_split"]:
            yield ("eval-split-unused", ("data", "datasets", i, "eval_split"),
                   f"data.datasets[{i}].eval_split holds rows out of training, but eval.enabled is false",
                   "set eval.enabled: true, or remove the eval split")


def _eval_steps_without_split(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    has_split = bool(c["data"]["eval_split"]) or any(ds["eval_split"] for ds in c["data"]["datasets"])
    if c["training"]["eval_steps"] is not None and not has_split:
        yield ("eval-steps-without-split", ("training", "eval_steps"),
               "training.eval_steps is set but there is no eval split, so nothing is evaluated during training",
               "set data.eval_split (e.g. 0.05)")


def _warmup(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    d, t = plan["derived"], plan["config"]["training"]
    total, warm = d.get("total_steps"), d.get("warmup_steps")
    if total and warm is not None and warm >= total:
        key = ("training", "warmup_steps") if t["warmup_steps"] is not None else ("training", "warmup_ratio")
        yield ("warmup-longer-than-run", key,
               f"warmup ({warm} steps) is not shorter than the run ({total} steps): the learning rate never "
               "reaches its peak", "lower warmup_steps / warmup_ratio")


def _lora_ratio(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    a = plan["config"]["adapter"]
    if a["type"] == "none":
        return
    ratio = a["alpha"] / a["r"]
    lo, hi = LORA_RATIO
    if not lo <= ratio <= hi:
        yield ("lora-alpha-ratio", ("adapter", "alpha"),
               f"LoRA alpha/r = {a['alpha']}/{a['r']} = {ratio:g} is far from the usual {lo:g}…{hi:g}: the adapter "
               "update is scaled by alpha/r, so the effective learning rate is unusually "
               + ("high" if ratio > hi else "low"), f"alpha around {a['r']}…{2 * a['r']} is common")


def _lr_full_ft(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    lr = c["training"]["learning_rate"]
    if c["adapter"]["type"] == "none" and lr > FULL_FT_MAX_LR:
        yield ("lr-high-full-ft", ("training", "learning_rate"),
               f"learning_rate {lr:g} is high for a full fine-tune (usual: 1e-5 … 5e-5); it can wreck the base model",
               "lower it, or use adapter.type: lora")


def _packing_eager(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    if c["sequence"]["packing"] and c["model"]["attn_implementation"] == "eager":
        yield ("packing-eager-attention", ("model", "attn_implementation"),
               "packing with eager attention materialises a full attention mask per packed row (slow and "
               "memory-hungry)", "use attn_implementation: sdpa or flash_attention_2")


def _dtype_precision(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    dtype, precision = c["model"]["dtype"], c["training"]["precision"]
    if {dtype, precision} == {"bf16", "fp16"}:
        yield ("dtype-precision-mismatch", ("training", "precision"),
               f"weights load as {dtype} but compute runs in {precision}: every layer casts between two 16-bit "
               "formats (fp16 also overflows where bf16 does not)", f"use the same for both (precision: {dtype})")


def _gpu_only(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    if not _cpu(plan):
        return
    # qlora, 8-bit optimizers, fp16, kernels and flash attention on a CPU target are errors (resolve/runnable.py)
    if c["training"]["precision"] != "fp32":
        yield ("precision-on-cpu", ("training", "precision"),
               f"precision {c['training']['precision']} on a CPU target is slow or unsupported", "use precision: fp32")
    if c["training"]["micro_batch_size"] == "auto":
        yield ("auto-batch-on-cpu", ("training", "micro_batch_size"),
               "micro_batch_size: auto is calibrated on a GPU; on CPU it falls back to 1", "set an integer")


def _distributed(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c = plan["config"]
    world = plan["derived"]["world_size"]
    ds = c["deepspeed"]
    if ds["stage"] > 0 and world == 1 and not (ds["offload_optimizer"] or ds["offload_params"]):
        yield ("zero-single-gpu", ("deepspeed", "stage"),
               f"ZeRO stage {ds['stage']} on one GPU shards nothing (no offload either): it only adds overhead",
               "use deepspeed.stage: 0, or enable offload")
    t = c["target"]
    if t["kind"] == "multi_node" and t["nodes"] == 1:
        yield ("multi-node-one-node", ("target", "nodes"), "target.kind multi_node with nodes: 1",
               "use kind: multi_gpu, or set nodes")
    if t["kind"] == "multi_gpu" and t["num_gpus"] == 1 and not _cpu(plan):
        yield ("multi-gpu-one-gpu", ("target", "num_gpus"), "target.kind multi_gpu with num_gpus: 1",
               "set num_gpus, or use kind: local")


def _model_limits(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    c, m = plan["config"], plan["model"]
    max_len, max_pos = c["sequence"]["max_length"], m.get("max_position_embeddings")
    if isinstance(max_len, int) and isinstance(max_pos, int) and max_len > max_pos:
        yield ("max-length-over-model", ("sequence", "max_length"),
               f"max_length {max_len} is longer than the model's max_position_embeddings {max_pos}",
               f"use max_length ≤ {max_pos}")
    if c["model"]["trust_remote_code"]:
        yield ("trust-remote-code", ("model", "trust_remote_code"),
               "trust_remote_code runs Python code from the model repository on the training machine",
               "pin model.revision to a commit you have read")


def _estimate(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    """The estimator's own warnings (does-not-fit, unknown-gpu, ...), located at the target section."""
    est = plan.get("estimate")
    if not isinstance(est, dict):
        return
    for w in est.get("warnings") or []:
        if isinstance(w, dict) and w.get("code") and w.get("message"):
            key = ("target", "gpu") if w["code"] in ("does-not-fit", "no-gpu-fits", "unknown-gpu") else ("target",)
            yield (str(w["code"]), key, str(w["message"]), "")


def _added_tokens_untrained(plan: dict[str, Any]) -> Iterator[tuple[str, tuple[Any, ...], str, str]]:
    """New vocabulary rows start from the resize's initial values; a LoRA adapter alone never trains them."""
    c = plan["config"]
    adapter = c["adapter"]
    if not c["model"].get("added_tokens") or adapter["type"] == "none":
        return
    missing = [m for m in ("embed_tokens", "lm_head") if m not in adapter.get("modules_to_save", [])]
    if missing:
        yield ("added-tokens-untrained", ("model", "added_tokens"),
               f"model.added_tokens grow the embeddings, but with a {adapter['type']} adapter their new rows are "
               f"never trained ({', '.join(missing)} not in adapter.modules_to_save)",
               "add adapter.modules_to_save: [embed_tokens, lm_head] to train them")


RULES: list[Rule] = [
    _eval_split_without_eval, _eval_steps_without_split, _warmup, _lora_ratio, _lr_full_ft, _packing_eager,
    _dtype_precision, _gpu_only, _distributed, _model_limits, _added_tokens_untrained, _estimate,
]
