"""W&B for a sweep: each trial is one W&B run, all of a sweep's runs in one group (`<name>-sweep`).

The sweep opens the trial's run itself (rank 0, before the trial's Trainer starts) so the run carries the
group, the trial's name and the trial's swept values in its config; transformers' WandbCallback finds the
run open and logs the Trainer's losses into it (it only calls `wandb.init` when no run is open). After the
trial the run's summary gets the sweep's verdict (metric value, state, pruning reason) and the run is
finished, so the next trial starts a new one. Without `tracking.wandb` nothing here imports wandb.
"""

from __future__ import annotations

import os
from typing import Any

JOB_TYPE = "sweep-trial"


def group_name(plan: dict[str, Any]) -> str:
    """The W&B group of a sweep's runs; `loftc sweep export --wandb` names its W&B sweep the same."""
    return f"{plan['name']}-sweep"


def start(plan: dict[str, Any], trial: int, params: dict[str, Any], run_name: str) -> Any:
    """The trial's W&B run in the group of the sweep's plan `plan` (None when it has no tracking.wandb)."""
    tracking = plan["config"]["tracking"]
    if not tracking["wandb"]:
        return None
    from ..train.metrics import report_to

    report_to(tracking)  # WANDB_PROJECT / ENTITY / MODE from the plan (the environment wins), the key's env
    import wandb

    return wandb.init(project=os.environ.get("WANDB_PROJECT"), entity=os.environ.get("WANDB_ENTITY") or None,
                      group=group_name(plan), name=run_name, job_type=JOB_TYPE, reinit="finish_previous",
                      config={"loft_trial": trial, "loft_sweep": group_name(plan), **params})


def finish(run: Any, summary: dict[str, Any] | None) -> None:
    """The sweep's verdict on the trial into the run's summary, then the run closed."""
    if run is None:
        return
    if summary:
        run.summary.update({f"sweep/{k}": v for k, v in summary.items() if v is not None})
    run.finish(exit_code=0 if summary and summary.get("state") != "failed" else 1)
