"""lm-evaluation-harness benchmarks (``eval.lm_eval``) through its Python API, on a model already loaded.

``lm_eval.simple_evaluate`` gets an ``HFLM`` wrapping the model object (a PeftModel with its adapter, the
merged model, or the base with the adapter disabled), so nothing is saved or reloaded, and tasks come from
lm-eval's registry plus ``include_path`` (a folder of task YAMLs, relative to the bundle) for local ones.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .train.model import StageError

if TYPE_CHECKING:
    from .plan import Bundle

INSTALL = "pip install lm-eval==0.4.13 (not in the bundle's hashed lock: its rouge-score dependency ships no wheel)"


def settings(bundle: Bundle) -> dict[str, Any] | None:
    """The plan's ``eval.lm_eval`` with its include_path made absolute, or None when no task is asked for."""
    cfg = (bundle.config.get("eval") or {}).get("lm_eval")
    if not cfg or not cfg.get("tasks"):
        return None
    out = dict(cfg)
    if out.get("include_path"):
        out["include_path"] = str(bundle.path(out["include_path"]))
    return out


def task_manager(cfg: dict[str, Any]) -> Any:
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise StageError(f"eval.lm_eval needs lm-evaluation-harness: {INSTALL}") from None
    include = cfg.get("include_path")
    if include and not Path(include).is_dir():
        raise StageError(f"eval.lm_eval.include_path {include}: no such directory")
    manager = None
    if include:  # local tasks only: no scan of lm-eval's thousands of registry YAMLs when they suffice
        manager = TaskManager(include_path=include, include_defaults=False)
        if any(t not in manager.all_tasks for t in cfg["tasks"]):
            manager = None
    manager = manager or TaskManager(include_path=include)
    unknown = [t for t in cfg["tasks"] if t not in manager.all_tasks]
    if unknown:
        raise StageError(f"eval.lm_eval.tasks: unknown task(s) {unknown} (lm-eval knows {len(manager.all_tasks)}; "
                         "local tasks need eval.lm_eval.include_path)")
    return manager


def scores(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from simple_evaluate's ``results`` ("acc,none" → "acc"; numbers only)."""
    out: dict[str, dict[str, float]] = {}
    for task, metrics in sorted((results.get("results") or {}).items()):
        row = {}
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                name, _, filt = key.partition(",")
                row[name if filt in ("", "none") else f"{name},{filt}"] = float(value)
        out[task] = row
    return out


def evaluate(model: Any, tok: Any, cfg: dict[str, Any], seed: int, manager: Any = None) -> dict[str, dict[str, float]]:
    """Run the configured tasks on ``model`` (already on its device) and return its scores."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise StageError(f"eval.lm_eval needs lm-evaluation-harness: {INSTALL}") from None
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=int(cfg.get("batch_size") or 1))
    results = lm_eval.simple_evaluate(
        model=lm, tasks=list(cfg["tasks"]), limit=cfg.get("limit"), num_fewshot=cfg.get("num_fewshot"),
        task_manager=manager or task_manager(cfg), random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed, log_samples=False, bootstrap_iters=0)
    if results is None:  # non-zero ranks get None
        return {}
    return scores(results)
