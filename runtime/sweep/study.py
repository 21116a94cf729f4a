"""Optuna's side of a sweep: the study (journal file storage), sampler, pruner, and the pruning callback.

Optuna does the searching (TPE for bayes), the bookkeeping of intermediate values and the pruning decisions;
loft only maps the plan's space onto Optuna's distributions and reports the plan's metric at eval points.
The study lives in `out/sweep/study.journal` (JournalFileStorage: safe for several processes on one disk),
so a relaunched sweep continues the same study, and one-trial-per-GPU workers share it.
"""

from __future__ import annotations

import fcntl
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

STUDY = "study.journal"


def open_study(folder: Path, sweep: dict[str, Any], name: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(folder / STUDY)))
    sampler = (optuna.samplers.TPESampler(seed=sweep["seed"]) if sweep["method"] == "bayes"
               else optuna.samplers.RandomSampler(seed=sweep["seed"]))  # grid/random: every trial is enqueued
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=make_pruner(sweep),
                               direction=sweep["direction"], load_if_exists=True)


def make_pruner(sweep: dict[str, Any]) -> Any:
    import optuna

    kind = sweep["pruner"]
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=sweep["pruner_startup_trials"], n_warmup_steps=0)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One process at a time chooses the next trial (count + ask must not interleave between workers)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ask.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """A bayes trial's values: Optuna's suggest_* over the plan's space (a resumed trial returns its own)."""
    out: dict[str, Any] = {}
    for name, e in sorted(space.items()):
        if e["type"] == "categorical":
            choices = e["values"]
            if all(v is None or isinstance(v, bool | int | float | str) for v in choices):
                out[name] = trial.suggest_categorical(name, choices)
            else:  # lists or maps: Optuna stores an index
                out[name] = choices[trial.suggest_categorical(name + "#index", list(range(len(choices))))]
        elif e["type"] == "int":
            out[name] = trial.suggest_int(name, e["low"], e["high"], log=e["log"], step=e.get("step") or 1)
        else:
            out[name] = trial.suggest_float(name, e["low"], e["high"], log=e["log"], step=e.get("step"))
    return out


class PruneCallback(TrainerCallback):
    """Reports the sweep metric to the Optuna trial at each eval point and stops a trial Optuna prunes.

    eval_loss is reported at every evaluation; train_loss at every logging step (the mean of the last few
    logged losses, so one noisy batch does not prune a trial). In multi-process runs rank 0 decides and
    every rank learns the decision by one broadcast, so all ranks stop at the same step."""

    WINDOW = 5

    def __init__(self, trial: Any, metric: str, pruner: str, main: bool) -> None:
        self.trial, self.metric, self.pruner, self.main = trial, metric, pruner, main
        self.losses: list[float] = []
        self.pruned: dict[str, Any] | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if self.metric == "eval_loss" and metrics and metrics.get("eval_loss") is not None:
            self._check(float(metrics["eval_loss"]), state.global_step, control)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> Any:
        if self.metric == "train_loss" and logs and logs.get("loss") is not None:
            self.losses.append(float(logs["loss"]))
            window = self.losses[-self.WINDOW:]
            self._check(sum(window) / len(window), state.global_step, control)
        return control

    def _check(self, value: float, step: int, control: Any) -> None:
        verdict: dict[str, Any] | None = None
        if self.main and self.pruned is None:
            self.trial.report(value, step)
            if self.trial.should_prune():
                verdict = {"step": step, "value": value, "reason": self._reason(value, step)}
        verdict = broadcast(verdict)
        if verdict is not None and self.pruned is None:
            self.pruned = verdict
            control.should_training_stop = True

    def _reason(self, value: float, step: int) -> str:
        """Why Optuna pruned, in numbers: the other trials' values at this step."""
        import optuna

        others = [t.intermediate_values[step] for t in self.trial.study.get_trials(deepcopy=False)
                  if t.number != self.trial.number and step in t.intermediate_values
                  and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        if self.pruner == "median" and others:
            return (f"{self.metric} {value:.4f} at step {step} is worse than the median {statistics.median(others):.4f} "
                    f"of {len(others)} earlier trial(s) at that step (Optuna MedianPruner)")
        return (f"{self.metric} {value:.4f} at step {step} is not among the best at this rung "
                f"({len(others)} other trial(s) reported here; Optuna {type(self.trial.study.pruner).__name__})")


def broadcast(value: Any) -> Any:
    """Rank 0's value on every rank (itself in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
