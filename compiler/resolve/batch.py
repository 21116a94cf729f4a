"""Batch maths: world size, micro batch × accumulation × world = global batch, tokens per step, and —
where the row count is known before tokenizing — training rows, total steps, warmup and eval/save steps."""

from __future__ import annotations

from typing import Any

from loft.runtime import blend_counts, schedule

from .context import Context


def resolve_derived(ctx: Context, data: list[dict[str, Any]]) -> dict[str, Any]:
    cfg, t = ctx.cfg, ctx.cfg["training"]
    target = cfg["target"]
    cpu = str(target["gpu"]).lower() == "cpu"
    world = 1 if cpu else target["nodes"] * target["num_gpus"]
    micro = t["micro_batch_size"]
    accum = t["gradient_accumulation_steps"]
    glob = t["global_batch_size"]
    keys = ("training", "global_batch_size")
    if accum == "auto":
        if glob is None:
            accum = 1
        elif isinstance(micro, int):
            if glob % (micro * world):
                ctx.error("batch", keys, f"global_batch_size {glob} is not a multiple of micro_batch_size × "
                          f"world size = {micro} × {world}",
                          expected=f"a multiple of {micro * world}")
                accum = None
            else:
                accum = glob // (micro * world)
    if isinstance(micro, int) and isinstance(accum, int):
        product = micro * accum * world
        if glob is not None and glob != product:
            ctx.error("batch", keys, f"global_batch_size {glob} ≠ micro_batch_size × "
                      f"gradient_accumulation_steps × world size = {micro} × {accum} × {world} = {product}",
                      expected=f"{product}, or gradient_accumulation_steps: auto")
        glob = product
    max_len = cfg["sequence"]["max_length"]
    tokens_per_step = glob * max_len if isinstance(glob, int) and isinstance(max_len, int) else None
    rows = train_rows(data, cfg)
    # with packing, the row count is prepare's (runtime/schedule.py there); without it, known now
    known = not cfg["sequence"]["packing"] and rows is not None and isinstance(glob, int)
    steps = schedule.resolve(t, rows if known else None, glob if known else None)
    total_steps: int | None = steps["total_steps"]
    if known:  # N evaluations / checkpoints per epoch become step counts once the epoch length is known
        t["eval_steps"], t["save_steps"] = steps["eval_steps"], steps["save_steps"]
    warmup = steps["warmup_steps"]
    return {
        "world_size": world,
        "micro_batch_size": micro,
        "gradient_accumulation_steps": accum,
        "global_batch_size": glob,
        "tokens_per_step": tokens_per_step,
        "rows": rows,
        "total_steps": total_steps,
        "total_tokens": total_steps * tokens_per_step if total_steps and tokens_per_step else None,
        "warmup_steps": warmup,
    }


def train_rows(data: list[dict[str, Any]], cfg: dict[str, Any]) -> int | None:
    """Training rows before packing, as prepare will draw them when every row is valid: the blend of
    runtime/blend_counts.py (prepare's own formula) over each dataset's row count. None when a dataset's
    row count is unknown (hub data, parquet, ...)."""
    if any(entry["rows"] is None for entry in data):
        return None
    rows = {ds["name"]: entry["rows"] for entry, ds in zip(data, cfg["data"]["datasets"], strict=True)}
    return sum(blend_counts.plan_counts(cfg["data"], rows).values())
