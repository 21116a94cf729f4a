"""`loft sweep RUN_DIR`: every trial of plan.sweep in one process that loads the base model once.

    setup      grid/random trials enqueued in the Optuna study (out/sweep/study.journal); trials a previous
               launch left running (save-and-quit, a crash) queued to resume first
    per trial  the trial's plan (plan.sweep's resolved record, or for bayes the base trial with TPE's
               values) → its own prepared data when its data/sequence keys differ (from the shared
               per-dataset cache) → the train stage with the shared base model and a pruning callback →
               the base checked bit-identical → results.jsonl, results.md, loss_curves.png, best.yaml
    stop       save-and-quit inside a trial saves its checkpoint and ends the sweep; relaunching skips
               finished trials and resumes that one from its checkpoint (the train stage's own resume)

Multi-GPU: under torchrun every rank runs this loop, rank 0 talks to Optuna and broadcasts each trial;
with `sweep.parallel: per_gpu` the launch process starts one worker per GPU (CUDA_VISIBLE_DEVICES) on the
shared study instead.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..plan import trial_plan
from ..train.metrics import read_jsonl
from ..train.model import StageError
from ..train.trainer import _rank, _world
from ..train.trainer import _say as say
from . import results, wandb_runs
from .shared_model import SharedModel
from .space import prepare_view, with_values
from .study import PruneCallback, broadcast, locked, open_study, suggest

if TYPE_CHECKING:
    from ..plan import Bundle

STATE = "state.json"
WORKER_ENV = "LOFT_SWEEP_WORKER"  # set in each per_gpu worker (its index)
WORKERS_ENV = "LOFT_SWEEP_WORKERS"  # the number of per_gpu workers (default: the plan's GPUs per node)


def _say(msg: str) -> None:
    say(f"sweep: {msg}")


def run(bundle: Bundle) -> int:
    sweep = bundle.plan.get("sweep")
    if not sweep:
        raise StageError("this plan has no sweep: add a `sweep:` section to the config and rebuild")
    if bundle.trial is not None:
        raise StageError("--trial selects one trial for the train stage; `loft sweep` runs every trial")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise StageError("the sweep stage needs optuna: pip install -r requirements.lock") from None
    workers = worker_devices(bundle.plan)
    if sweep["parallel"] == "per_gpu" and len(workers) > 1 and _world() == 1 and WORKER_ENV not in os.environ:
        return per_gpu(bundle, workers)
    runner = Runner(bundle)
    if WORKER_ENV not in os.environ:
        runner.setup()
    return runner.loop()


def worker_devices(plan: dict[str, Any]) -> list[str | None]:
    """`parallel: per_gpu`: the CUDA_VISIBLE_DEVICES of each worker, one per GPU of the plan (gpus_per_node,
    as this process's CUDA_VISIBLE_DEVICES numbers them). LOFT_SWEEP_WORKERS=N sets the number of workers
    (N < GPUs: fewer at once; GPUs are shared round-robin beyond that; on a CPU plan, N CPU workers)."""
    gpus = int(plan["launch"]["gpus_per_node"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(gpus)]
    names = names[:gpus]
    count = gpus
    if os.environ.get(WORKERS_ENV):
        try:
            count = int(os.environ[WORKERS_ENV])
        except ValueError:
            raise StageError(f"{WORKERS_ENV}={os.environ[WORKERS_ENV]!r}: expected a number of workers") from None
        if count < 1:
            raise StageError(f"{WORKERS_ENV}={count}: expected at least one worker")
    return [names[i % len(names)] if names else None for i in range(count)]


def per_gpu(bundle: Bundle, devices: list[str | None]) -> int:
    """One worker process per GPU on the shared study; each runs whole trials on its own GPU. Ctrl-C reaches
    the workers from the terminal; SIGUSR1/SIGTERM/SIGINT sent to this process alone are passed on to them."""
    runner = Runner(bundle)
    runner.setup()
    runner._ensure_prepared()  # once, before the workers (they would race to prepare the same set)
    _say(f"one trial per GPU: starting {len(devices)} workers")
    procs: list[subprocess.Popen[bytes]] = []
    for i, device in enumerate(devices):
        env = {**os.environ, WORKER_ENV: str(i)}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        procs.append(subprocess.Popen([sys.executable, "-m", "loft.runtime", "sweep", str(bundle.root)], env=env))

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    runner.finish()
    return max(codes)


class Runner:
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.sweep: dict[str, Any] = bundle.plan["sweep"]
        self.folder = bundle.out / "sweep"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.main = _rank() == 0
        self.study: Any = open_study(self.folder, self.sweep, bundle.plan["name"]) if self.main else None
        self.shared = SharedModel(_world())
        self.sentinel = bundle.root / "STOP"

    # -- setup and bookkeeping ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Enqueue the plan's trials the study lacks; queue trials left running by an earlier launch."""
        if not self.main:
            return
        import optuna

        self.sentinel.unlink(missing_ok=True)  # a STOP left from the stop that ended the previous launch
        with locked(self.folder):
            trials = self.study.get_trials(deepcopy=False)
            known = {t.user_attrs.get("loft_trial") for t in trials}
            for record in self.sweep["trials"]:
                if record["trial"] not in known:
                    self.study.enqueue_trial({}, user_attrs={"loft_trial": record["trial"]})
            stale = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            state = self._state()
            last = state.get("launch")  # the previous launch's wall time counts towards the budget
            elapsed = float(state.get("elapsed_s", 0.0)) + (last["seen"] - last["started"] if last else 0.0)
            now = time.time()
            self._write_state({"resume": stale, "elapsed_s": elapsed, "launch": {"started": now, "seen": now}})
        if stale:
            _say(f"resuming trial(s) left running by the previous launch: {stale}")

    def _state(self) -> dict[str, Any]:
        path = self.folder / STATE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"elapsed_s": 0.0, "resume": []}

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.folder / (STATE + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / STATE)

    def _spent(self, state: dict[str, Any]) -> float:
        """Wall-clock seconds of sweep so far: earlier launches, and this one since it started."""
        launch = state.get("launch")
        return float(state.get("elapsed_s", 0.0)) + (time.time() - launch["started"] if launch else 0.0)

    def _seen(self) -> None:
        """Mark this launch alive now: a relaunch after a crash counts this launch's time up to here."""
        with locked(self.folder):
            state = self._state()
            if state.get("launch"):
                state["launch"]["seen"] = time.time()
                self._write_state(state)

    # -- the loop -------------------------------------------------------------------------------------------
    def loop(self) -> int:
        if _world() > 1:
            from accelerate import PartialState

            PartialState()  # the process group, for the broadcasts below
        self._ensure_prepared()
        stopped = False
        while True:
            pick = broadcast(self._next() if self.main else None)
            if pick is None:
                break
            if self._run_trial(pick) == "stopped":
                stopped = True
                break
        self._leave()
        if stopped:
            _say(f"stopped; relaunch `bash {self.bundle.root}/launch.sh sweep` to resume the running trial")
            return 0
        if WORKER_ENV not in os.environ:
            self.finish()
        return 0

    def finish(self) -> None:
        if not self.main:
            return
        best = results.write_all(self.folder, self.sweep, self.bundle.plan, self.bundle.root)
        done = results.load(self.folder)
        _say(f"{len(done)} trial(s) finished; ranked table in {self.folder / 'results.md'}")
        if best is not None:
            _say(f"best: trial {best['trial']} ({self.sweep['metric']} {best['value']:.4f}); "
                 f"config in {self.folder / 'best.yaml'}")

    def _next(self) -> dict[str, Any] | None:
        """Rank 0: the next trial to run (a resumed one first), or None when the budget is spent."""
        import optuna

        if self.sentinel.exists():
            _say(f"{self.sentinel} found: no new trial is started")
            return None
        with locked(self.folder):
            state = self._state()
            wall = self.sweep["budget"]["wall_time_s"]
            if wall is not None and self._spent(state) >= wall:
                _say(f"wall time budget of {wall:g} s spent: no new trial is started")
                return None
            trial: Any = None
            if state.get("resume"):
                number = state["resume"].pop(0)
                self._write_state(state)
                frozen = self.study.get_trials(deepcopy=False)[number]
                trial = optuna.trial.Trial(self.study, frozen._trial_id)
            elif self.sweep["method"] == "bayes":
                if len(self.study.get_trials(deepcopy=False)) < int(self.sweep["budget"]["trials"]):
                    trial = self.study.ask()
                    trial.set_user_attr("loft_trial", trial.number)
            elif self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
                trial = self.study.ask()
        if trial is None:
            return None
        number = int(trial.user_attrs["loft_trial"])
        if self.sweep["method"] == "bayes":
            base = self.sweep["base_trial"]
            params = suggest(trial, self.sweep["space"])
            config = with_values(base["config"], params)
            config["output_dir"] = base["config"]["output_dir"].rsplit("/", 1)[0] + f"/trial-{number}"
            record = {**base, "trial": number, "overrides": params, "config": config}
        else:
            record = next(t for t in self.sweep["trials"] if t["trial"] == number)
        self.current = trial
        return record

    def _ensure_prepared(self) -> None:
        if (self.bundle.prepared / "train").is_dir():
            return
        if _world() > 1:
            raise StageError(f"{self.bundle.prepared}: no prepared data; run `bash launch.sh prepare` first")
        from ..prepare import run as prepare

        prepare(self.bundle)

    def _run_trial(self, record: dict[str, Any]) -> str:
        n = record["trial"]
        name = f"{self.bundle.plan['name']}-trial-{n}"
        tb = replace(self.bundle, plan=trial_plan(self.bundle.plan, record, name), trial=n)
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(record["overrides"].items()))
        _say(f"trial {n}: {params}")
        run = wandb_runs.start(self.bundle.plan, n, record["overrides"], name) if self.main else None
        verdict: dict[str, Any] | None = None
        try:
            outcome, verdict = self._train_and_record(tb, record)
        finally:
            wandb_runs.finish(run, verdict)
        return outcome

    def _train_and_record(self, tb: Bundle, record: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """Train the trial; on rank 0 tell Optuna and record it. ("stopped" | "done", the trial's verdict)."""
        from ..train.trainer import REPORT, train

        n = record["trial"]
        t0 = time.monotonic()
        if prepare_view(tb.config) != prepare_view(self.bundle.config):
            self._prepare_trial(tb)
        callback = PruneCallback(self.current if self.main else None, self.sweep["metric"], self.sweep["pruner"],
                                 self.main)
        error: str | None = None
        try:
            train(tb, [callback], model_provider=self.shared.provide,
                  final_eval=self.sweep["metric"] == "eval_loss", clear_stop=False)
        except (RuntimeError, ValueError) as e:  # one trial's failure (out of memory, NaN) is its own
            if _world() > 1:
                raise
            error = f"{type(e).__name__}: {e}"
            _say(f"trial {n} failed: {error}")
        finally:
            self.shared.after_trial()
        report_path = tb.out / REPORT
        report = json.loads(report_path.read_text(encoding="utf-8")) if self.main and report_path.is_file() else {}
        seconds = time.monotonic() - t0
        if self.main:
            self._seen()
        # rank 0 wrote the report: every rank learns from it whether the trial stopped (save-and-quit)
        if broadcast(error is None and report.get("status") == "stopped" if self.main else None):
            return "stopped", None
        if not self.main:
            return "done", None
        import optuna

        value = None if error else metric_value(tb.out, self.sweep["metric"])
        if callback.pruned is not None:
            state = "pruned"
            report["status"] = "pruned"
            report["pruned"] = callback.pruned
            report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            self.study.tell(self.current, state=optuna.trial.TrialState.PRUNED)
            value = callback.pruned["value"]
        elif value is None:
            state = "failed"
            error = error or f"no {self.sweep['metric']} was recorded"
            self.study.tell(self.current, state=optuna.trial.TrialState.FAIL)
        else:
            state = "complete"
            self.study.tell(self.current, value)
        with locked(self.folder):  # per_gpu workers finish trials concurrently
            results.append(self.folder, {
                "trial": n, "state": state, "params": record["overrides"], "metric": self.sweep["metric"],
                "value": value, "steps": report.get("global_step"), "time_s": round(seconds, 3),
                "pruned": callback.pruned, "error": error, "optuna_trial": self.current.number,
                "out_dir": tb.config["output_dir"], "config": tb.config, "base_loads": self.shared.loads,
                "world_size": _world()})
            results.write_all(self.folder, self.sweep, self.bundle.plan, self.bundle.root)
        _say(f"trial {n}: {state}, {self.sweep['metric']} {value if value is not None else '—'}")
        reason = callback.pruned["reason"] if callback.pruned else error
        return "done", {"state": state, "metric": self.sweep["metric"], "value": value, "reason": reason,
                        "steps": report.get("global_step")}

    def _prepare_trial(self, tb: Bundle) -> None:
        """A trial whose data or sequence keys differ: its own prepared/, built from the shared cache."""
        from ..prepare import run as prepare

        if self.main:
            _say(f"trial {tb.trial}: its data/sequence settings differ; preparing its own data set")
            prepare(tb)
        _barrier()

    def _leave(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def metric_value(out: Path, metric: str) -> float | None:
    """The trial's metric from metrics.jsonl: the last eval loss, or the mean of the last logged losses."""
    rows = read_jsonl(out / "metrics.jsonl")
    if metric == "eval_loss":
        evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
        value = evals[-1] if evals else None
    else:
        losses = [r["loss"] for r in rows if r.get("loss") is not None][-PruneCallback.WINDOW:]
        value = sum(losses) / len(losses) if losses else None
    return float(value) if value is not None and math.isfinite(value) else None


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()

