"""Eval across checkpoints (``loft eval RUN --checkpoints all|N,M,...``, or ``eval.checkpoints``): the eval
loss (and any lm-eval score) of every chosen complete checkpoint and the final model, a table and a PNG by
step, and the best checkpoint by eval loss. Adapter checkpoints share one base in memory: each is attached,
measured and unloaded (``PeftModel.unload``) in turn."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import attach, check_weights
from .train.checkpoint import complete_checkpoints
from .train.model import StageError

if TYPE_CHECKING:
    from .plan import Bundle

PLOT = "checkpoints.png"


def choose(bundle: Bundle, selection: str) -> list[tuple[int, Path]]:
    """(step, dir) of the checkpoints ``selection`` names: ``all`` or comma-separated steps."""
    root = bundle.out / "checkpoints"
    have = {int(p.name.rsplit("-", 1)[1]): p for p in complete_checkpoints(root)} if root.is_dir() else {}
    if selection.strip() == "all":
        if not have:
            raise StageError(f"--checkpoints all: no complete checkpoint under {root} "
                             "(train saves them every training.save_steps)")
        return sorted(have.items())
    try:
        steps = sorted({int(s) for s in selection.split(",") if s.strip()})
    except ValueError:
        raise StageError(f"--checkpoints {selection!r}: expected `all` or steps like 100,200") from None
    missing = [s for s in steps if s not in have]
    if missing or not steps:
        listed = ", ".join(str(s) for s in sorted(have)) or "none"
        raise StageError(f"--checkpoints: no complete checkpoint for step(s) {missing or selection} "
                         f"(complete checkpoints: {listed})")
    return [(s, have[s]) for s in steps]


def _load(bundle: Bundle, path: Path, base: Any) -> tuple[Any, Any]:
    """(model to measure, base to keep) for one checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    from .train.model import torch_dtype

    kind = check_weights(path, "checkpoint")
    if kind == "adapter":
        model = attach(base, path)
        return model, base
    auto: Any = AutoModelForCausalLM
    model = auto.from_pretrained(str(path), dtype=torch_dtype(bundle.config["model"]["dtype"]))
    return (model.to("cuda") if torch.cuda.is_available() else model), base


def checked(bundle: Bundle, selection: str, has_eval: bool, has_scores: bool) -> list[tuple[int, Path]]:
    """The chosen checkpoints, each with its weights present: checked before any model loads."""
    if not has_eval and not has_scores:
        raise StageError("--checkpoints compares eval loss by step, and this run has no eval split "
                         "(data.eval_split) and no eval.lm_eval tasks")
    chosen = choose(bundle, selection)
    for _, path in chosen:
        check_weights(path, "checkpoint")
    return chosen


def evaluate_checkpoints(bundle: Bundle, tok: Any, rows: Any, packing: bool, pad_id: int,
                         chosen: list[tuple[int, Path]], lm_cfg: dict[str, Any] | None, manager: Any, seed: int,
                         dest: Path) -> dict[str, Any]:
    from . import harness
    from .eval import _device, _free, eval_loss
    from .train.load_trained import final_dir
    from .train.model import fit_embeddings, load_base_model

    final_step = _step(bundle, -1)
    if final_step not in {step for step, _ in chosen}:  # the final model, unless a checkpoint already is it
        chosen = [*chosen, (-1, final_dir(bundle))]
    base = None
    out: list[dict[str, Any]] = []
    from .progress import track

    for step, path in track(chosen, "eval checkpoints", unit="checkpoints"):
        adapter = (path / "adapter_config.json").is_file()
        if adapter and base is None:
            base = load_base_model(bundle, for_training=False)
            fit_embeddings(base, tok)
            base = _device(base)
        model, base = _load(bundle, path, base)
        row: dict[str, Any] = {"checkpoint": path.name, "step": _step(bundle, step)}
        row |= eval_loss(model, rows, packing, pad_id) if rows is not None else \
            {"eval_loss": None, "perplexity": None, "tokens": 0}
        if lm_cfg:
            row["scores"] = {f"{task}/{metric}": value for task, metrics in
                             harness.evaluate(model, tok, lm_cfg, seed, manager).items()
                             for metric, value in metrics.items() if not metric.endswith("_stderr")}
        print(f"[loft] {path.name}: eval loss {row['eval_loss']}", file=sys.stderr, flush=True)
        out.append(row)
        base = model.unload() if adapter else base
        del model
        _free()
    scored = [r for r in out if r["eval_loss"] is not None]
    best = min(scored, key=lambda r: (r["eval_loss"], r["step"]))["checkpoint"] if scored else None
    plot(out, dest / PLOT)
    return {"rows": out, "best": best, "plot": PLOT, "metric": "eval_loss"}


def _step(bundle: Bundle, step: int) -> int:
    """The final model's step: the train report's global_step (the last checkpoint's otherwise)."""
    if step >= 0:
        return step
    import json

    report = bundle.out / "train_report.json"
    if report.is_file():
        return int(json.loads(report.read_text(encoding="utf-8")).get("global_step") or 0)
    return 0


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Eval loss by step (left axis) and each benchmark score (right axis), final model marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    pts = [(r["step"], r["eval_loss"]) for r in rows if r["eval_loss"] is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color="tab:blue", label="eval loss")
        ax.set_ylabel("eval loss")
    metrics = sorted({k for r in rows for k in r.get("scores", {})})
    if metrics:
        ax2 = ax.twinx()
        for m in metrics:
            sp = [(r["step"], r["scores"][m]) for r in rows if m in r.get("scores", {})]
            ax2.plot([p[0] for p in sp], [p[1] for p in sp], marker="s", linestyle="--", label=m)
        ax2.set_ylabel("score")
        ax2.legend(loc="upper right", fontsize=7)
    ax.set_xlabel("step")
    ax.set_title("eval by checkpoint")
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
