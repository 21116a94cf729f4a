"""The sweep, resolved: `sweep:` → `plan.sweep` (settings, search space, budget, and every trial).

Grid: the cartesian product of every parameter's values (lists, or stepped ranges), keys in sorted order,
values in the order given (trial numbers stay stable when a config is reformatted). Random: `trials` points
drawn with `random.Random(seed)`: uniform choice from lists, uniform or log-uniform over ranges, floats
rounded to 6 significant digits. Bayes: no trials at build time: Optuna's TPE sampler chooses them as
results come in, so the plan holds the space, the sampler seed and the budget, and the keys a bayes sweep
may search are the run-time keys `loft.runtime.sweep.space.RUNTIME_KEYS` (they change no derived number).

Every grid/random trial is a full plan of its own: `resolve_trials` runs the real validate → resolve →
estimate stages on the trial's config (the callable the pipeline passes), and records the trial's
`config`, `derived` and `estimate`; the runtime applies no override. A trial that cannot be resolved is
a build error at the line:col of the swept keys; a trial that does not fit the target GPU is flagged.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from loft.runtime.sweep.space import (
    RUNTIME_KEYS,
    grid_values,
    normalise,
    range_problem,
    round_value,
    split_key,
    with_values,
)

from .errors import ConfigError, Diagnostic, did_you_mean

MAX_TRIALS = 1000  # plan.lock holds every trial in full
# sections of a trial's plan that must equal the run's: one bundle carries one model, data set and launcher
SHARED_SECTIONS = ("model", "data", "template", "launch", "versions")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

ResolveTrial = Callable[[dict[str, Any]], dict[str, Any]]  # a trial's given config -> its plan (estimated)
Position = Callable[[tuple[Any, ...]], tuple[int, int]]


def expand(config: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"trial": i, "overrides": {dotted key: value}}] for a grid or random sweep; [] for bayes or none.
    `config` is the resolved config (every key present), so swept keys are checked against it."""
    sweep = config.get("sweep")
    if not sweep:
        return []
    params: dict[str, Any] = sweep.get("params") or {}
    method = sweep.get("method", "grid")
    diags = _param_problems(config, params, method)
    trials = sweep.get("trials")
    if method in ("random", "bayes") and trials is None:
        diags.append(Diagnostic(f"a {method} sweep needs a number of trials", key="sweep.trials",
                                expected="an integer such as 8", code="sweep-trials-missing"))
    if diags:
        raise ConfigError(diags)
    names = sorted(params)
    space = {n: normalise(params[n]) for n in names}
    if method == "bayes":
        return []
    if method == "random":
        rng = random.Random(int(sweep.get("seed") or 0))
        points = [{n: _sample(rng, space[n]) for n in names} for _ in range(int(trials))]
    else:
        values = [grid_values(space[n]) or [] for n in names]
        count = math.prod(len(v) for v in values)
        if count > MAX_TRIALS and (trials is None or trials > MAX_TRIALS):
            raise ConfigError([Diagnostic(f"the grid has {count:,} combinations (at most {MAX_TRIALS})",
                                          key="sweep.params", expected="fewer values, or method: random / bayes",
                                          code="sweep-too-large")])
        combos = itertools.islice(itertools.product(*values), trials if trials is not None else None)
        points = [dict(zip(names, combo, strict=True)) for combo in combos]
    return [{"trial": i, "overrides": p} for i, p in enumerate(points)]


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """plan.sweep without its trials: method, metric (auto resolved), direction, pruner, seed, budget, space."""
    sweep = config["sweep"]
    metric = sweep.get("metric", "auto")
    if metric == "auto":
        metric = "eval_loss" if has_eval_split(config) else "train_loss"
    elif metric == "eval_loss" and not has_eval_split(config):
        raise ConfigError([Diagnostic("the sweep ranks trials by eval_loss, but the data has no eval split",
                                      key="sweep.metric", expected="train_loss, or data.eval_split > 0",
                                      code="conflict")])
    wall = sweep.get("wall_time")
    return {
        "method": sweep.get("method", "grid"),
        "metric": metric,
        "direction": sweep.get("direction", "minimize"),
        "pruner": sweep.get("pruner", "median"),
        "pruner_startup_trials": int(sweep.get("pruner_startup_trials", 2)),
        "seed": int(sweep.get("seed") or 0),
        "parallel": sweep.get("parallel", "auto"),
        "budget": {"trials": sweep.get("trials"), "steps_per_trial": sweep.get("steps_per_trial"),
                   "wall_time_s": _seconds(wall) if wall else None},
        "space": {n: normalise(v) for n, v in sorted((sweep.get("params") or {}).items())},
    }


def has_eval_split(config: dict[str, Any]) -> bool:
    data = config.get("data") or {}
    evals = [data.get("eval_split")] + [d.get("eval_split") for d in data.get("datasets") or []]
    return any(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in evals)


def resolve_trials(given: dict[str, Any], base: dict[str, Any], resolve_trial: ResolveTrial,
                   pos: Position, file: str) -> dict[str, Any] | None:
    """plan.sweep for the run whose plan is `base` (resolved from the validated config `given`)."""
    cfg = base["config"]
    if not cfg.get("sweep"):
        return None
    where = _Where(pos, file)
    try:
        out = settings(cfg)
        points = expand(cfg)
    except ConfigError as e:
        raise ConfigError([where.at(d, ("sweep",)) for d in e.diagnostics]) from None
    steps = out["budget"]["steps_per_trial"]
    fixed = {"training.max_steps": steps} if steps is not None else {}
    out_dir = cfg["output_dir"]
    diags: list[Diagnostic] = []
    trials: list[dict[str, Any]] = []
    for point in points or [{"trial": None, "overrides": {}}]:
        record = _resolve_one(given, base, point, fixed, out_dir, resolve_trial, where, diags)
        if record is not None:
            trials.append(record)
    if diags:
        raise ConfigError(diags)
    if out["method"] == "bayes":
        out["base_trial"], out["trials"] = trials[0], []
    else:
        out["base_trial"], out["trials"] = None, trials
    return out


def _resolve_one(given: dict[str, Any], base: dict[str, Any], point: dict[str, Any], fixed: dict[str, Any],
                 out_dir: str, resolve_trial: ResolveTrial, where: _Where,
                 diags: list[Diagnostic]) -> dict[str, Any] | None:
    n, overrides = point["trial"], point["overrides"]
    keys = sorted(overrides) or ["sweep"]
    label = (f"sweep trial {n} (" + ", ".join(f"{k} = {_show(v)}" for k, v in sorted(overrides.items())) + ")"
             if n is not None else "the sweep's trials")
    trial_given = with_values(given, {**fixed, **overrides})
    trial_given["output_dir"] = f"{out_dir}/trial-{n}" if n is not None else f"{out_dir}/trial-N"
    try:
        plan = resolve_trial(trial_given)
    except ConfigError as e:
        for d in e.diagnostics:
            diags.append(where.at(replace(d, message=f"{label}: {d.message}", line=0, col=0),
                                  _param_loc(keys[0])))
        return None
    for section in SHARED_SECTIONS:
        if plan.get(section) != base.get(section):
            diags.append(where.at(Diagnostic(f"{label} changes plan.{section}; one bundle carries one "
                                             f"{section} for all its trials", key=f"sweep.params.{keys[0]}",
                                             expected="sweep it as separate builds", code="sweep-changes-plan"),
                                  _param_loc(keys[0])))
            return None
    est = plan.get("estimate") or {}
    return {"trial": n, "overrides": overrides, "config": plan["config"], "derived": plan["derived"],
            "estimate": est, "fits": fits(est, plan["config"])}


def fits(estimate: dict[str, Any], config: dict[str, Any]) -> bool | None:
    """Whether the trial fits the target GPU by the estimate; None for CPU targets or unknown estimates."""
    if str(config["target"]["gpu"]).lower() == "cpu":
        return None
    vram = estimate.get("vram") or {}
    gpu = vram.get("gpu")
    value = (vram.get("fits") or {}).get(gpu) if gpu else None
    return bool(value) if value is not None else None


def trial_warnings(sweep: dict[str, Any] | None, pos: Position, file: str) -> list[Diagnostic]:
    """One warning per trial the estimate says will not fit the target GPU."""
    if not sweep:
        return []
    where = _Where(pos, file)
    out = []
    for t in [*sweep["trials"], *([sweep["base_trial"]] if sweep.get("base_trial") else [])]:
        if t["fits"] is False:
            vram = t["estimate"]["vram"]
            label = f"sweep trial {t['trial']}" if t["trial"] is not None else "the sweep's trials"
            d = Diagnostic(f"{label} does not fit the {vram['gpu']}: predicted peak {vram['total_gib']:.1f} GiB "
                           f"of {vram['memory_gib']:g} GiB", key="sweep.params", code="sweep-trial-does-not-fit",
                           severity="warning", hint="drop the value, or lower micro_batch_size / max_length")
            keys = sorted(t["overrides"]) or ["sweep"]
            out.append(where.at(d, _param_loc(keys[0])))
    return out


def _param_problems(config: dict[str, Any], params: dict[str, Any], method: str) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    if not params:
        diags.append(Diagnostic("a sweep needs at least one parameter", key="sweep.params",
                                expected='{"training.learning_rate": [1.0e-4, 2.0e-4]}', code="sweep-empty"))
    known = sorted(_leaf_paths(config))
    for name in sorted(params):
        key = f"sweep.params.{name}"
        if name.startswith("sweep") or not _exists(config, name):
            diags.append(Diagnostic(f"sweep parameter {name!r} is not a key of the config", key=key,
                                    expected="a dotted key path such as 'training.learning_rate'",
                                    hint=did_you_mean(name, known), code="sweep-unknown-key"))
            continue
        entry = normalise(params[name])
        problem = range_problem(entry)
        if problem:
            diags.append(Diagnostic(f"bad range for {name}: {problem}", key=key,
                                    expected="min <= max, min > 0 for log, no step with log", code="sweep-bad-range"))
        elif method == "grid" and grid_values(entry) is None:
            diags.append(Diagnostic("a continuous {min, max} range cannot be enumerated by a grid sweep", key=key,
                                    expected="a list of values, or a range with a step",
                                    hint="add step:, or use method: random or bayes", code="sweep-range-in-grid"))
        if method == "bayes" and name not in RUNTIME_KEYS:
            diags.append(Diagnostic(f"a bayes sweep cannot search {name}: its trials are chosen while the sweep "
                                    "runs, and this key changes numbers the compiler derives (batch shape, steps, "
                                    "data)", key=key, expected="one of " + ", ".join(sorted(RUNTIME_KEYS)),
                                    hint="sweep it with method: grid or random (their trials are resolved at "
                                    "build)", code="sweep-not-runtime-key"))
    return diags


class _Where:
    """Places a diagnostic at a key of the config file (when it has no position of its own)."""

    def __init__(self, pos: Position, file: str) -> None:
        self.pos, self.file = pos, file

    def at(self, d: Diagnostic, keys: tuple[Any, ...]) -> Diagnostic:
        if d.line:
            return d
        for n in range(len(keys), 0, -1):
            line, col = self.pos(keys[:n])
            if line:
                return replace(d, file=d.file or self.file, line=line, col=col)
        return replace(d, file=d.file or self.file)


def _param_loc(name: str) -> tuple[Any, ...]:
    return ("sweep", "params", name) if name != "sweep" else ("sweep",)


def _show(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False)


def _seconds(text: str) -> float:
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)(s|m|h)$", text)
    if not m:
        raise ConfigError([Diagnostic(f"bad wall time {text!r}", key="sweep.wall_time",
                                      expected="a number with s, m or h: '90m', '2h'", code="bad-value")])
    return float(m.group(1)) * _UNITS[m.group(2)]


def _exists(config: dict[str, Any], name: str) -> bool:
    try:
        parts = split_key(name)
    except ValueError:
        return False
    node: Any = config
    for part in parts:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path of the config (maps walked, lists indexed), for did-you-mean."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path
            yield from _leaf_paths(v, path)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if isinstance(v, dict):
                yield from _leaf_paths(v, f"{prefix}[{i}]")


def _sample(rng: random.Random, entry: dict[str, Any]) -> Any:
    if entry["type"] == "categorical":
        return entry["values"][rng.randrange(len(entry["values"]))]
    lo, hi, step = entry["low"], entry["high"], entry.get("step")
    if step is not None:
        grid = grid_values(entry) or [lo]
        return grid[rng.randrange(len(grid))]
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if entry["log"] else rng.uniform(lo, hi)
    if entry["type"] == "int":
        return min(hi, max(lo, round(x)))
    return round_value(x)
