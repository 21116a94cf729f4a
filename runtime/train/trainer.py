"""The train stage: the plan's model, adapter, optimizer and batch shape, run by transformers' Trainer.

What loft adds around the stock Trainer (each through its public extension points):
atomic checkpoints (``_save_checkpoint`` writes to a staging dir that is renamed when complete), resume
from the newest complete checkpoint, save-and-quit (a ``TrainerCallback``), packed batches with
position ids, opt-in auxiliary losses (``compute_loss``), and local metrics/batches records.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import schedule
from ..dashboard import start_beside_training
from ..kernels import apply_cut_cross_entropy
from . import autobatch, checkpoint
from .collate import LoftCollator
from .gpustats import GpuSampler, measured_vs_estimate
from .losses import aux_losses_active, causal_lm_loss
from .metrics import BatchRecorder, MetricsCallback, read_jsonl, report_to
from .model import (
    StageError,
    apply_adapter,
    check_attention,
    check_qlora,
    fit_embeddings,
    load_base_model,
    load_tokenizer,
)
from .spikes import SampleDecoder, SpikeRule, SpikeWatcher
from .stop import StopCallback, StopRequest, clear_sentinel

if TYPE_CHECKING:
    from ..plan import Bundle

REPORT = "train_report.json"


# What a checkpoint depends on: resuming one written under different values would silently mix two runs.
TRAIN_KEYS = ("model", "data", "template", "sequence", "adapter", "training", "deepspeed", "fsdp")


def fingerprint(bundle: Bundle) -> str:
    """sha256 of the plan parts that training depends on (not eval/export/tracking/target)."""
    cfg = bundle.config
    part = {"config": {k: cfg[k] for k in TRAIN_KEYS}, "derived": bundle.derived,
            "template": bundle.plan["template"]["sha256"]}
    return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _say(msg: str) -> None:
    if _rank() == 0:
        print(f"[loft] {msg}", file=sys.stderr, flush=True)


def load_prepared(bundle: Bundle) -> tuple[Any, Any | None]:
    from datasets import load_from_disk

    root = bundle.prepared
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise StageError(f"{train_dir}: no prepared training data; run the prepare stage first "
                         f"(`bash {bundle.root}/launch.sh prepare` or `loft prepare {bundle.root}`)")
    train = load_from_disk(str(train_dir))
    if len(train) == 0:
        raise StageError(f"{train_dir}: the prepared training set is empty; see prepare_report.md")
    eval_dir = root / "eval"
    ev = load_from_disk(str(eval_dir)) if eval_dir.is_dir() and not _empty_split(eval_dir) else None
    return train, (ev if ev is not None and len(ev) > 0 else None)


def _empty_split(path: Path) -> bool:
    """A split saved with no rows: `datasets` writes no shard, and load_from_disk cannot read it back."""
    state = path / "state.json"
    return state.is_file() and json.loads(state.read_text(encoding="utf-8")).get("_data_files") == []


def precision_flags(precision: str, on_gpu: bool) -> tuple[dict[str, Any], str | None]:
    """TrainingArguments precision flags, and a note when the device changes what the plan asked for."""
    if precision == "bf16":
        note = None if on_gpu else "precision bf16 on CPU: CPU autocast in bfloat16 (slow on CPUs without AMX)"
        return {"bf16": True}, note
    if precision == "fp16":
        if on_gpu:
            return {"fp16": True}, None
        return {}, "precision fp16 needs a GPU (CUDA AMP); this CPU run computes in fp32"
    return {}, None


def _batch_shape(bundle: Bundle, on_gpu: bool, probe_factory: Any) -> tuple[int, int, dict[str, Any] | None]:
    """(micro batch, accumulation, autobatch record) — the plan's numbers, or calibrated for ``auto``."""
    derived = bundle.derived
    tcfg = bundle.config["training"]
    micro = derived["micro_batch_size"]
    accum = derived["gradient_accumulation_steps"]
    world = _world()
    if micro != "auto":
        if derived["world_size"] != world:
            _say(f"warning: the plan was built for world size {derived['world_size']} but {world} "
                 "processes are running; the global batch changes accordingly")
        return int(micro), int(accum if accum != "auto" else 1), None
    gbs = int(derived["global_batch_size"] or tcfg["global_batch_size"] or world)
    if not on_gpu:
        acc = max(1, gbs // world)
        _say(f"micro_batch_size: auto is calibrated on a GPU; on CPU it is 1 (accumulation {acc})")
        return 1, acc, {"device": "cpu", "micro_batch_size": 1, "gradient_accumulation_steps": acc,
                        "global_batch_size": acc * world, "calibrated": False}
    result = autobatch.calibrate(probe_factory(), gbs, world)
    _say(f"micro_batch_size: auto → {result.micro_batch_size} (largest fit {result.max_fit}), "
         f"accumulation {result.gradient_accumulation_steps}")
    return result.micro_batch_size, result.gradient_accumulation_steps, {**result.as_dict(), "calibrated": True}


def _steps(bundle: Bundle, global_batch: int) -> dict[str, Any]:
    """The step schedule prepare wrote (prepared/schedule.json); recomputed with the same formula over the
    prepared rows for a sweep trial (its own max_steps, warmup, cadence) and when the batch differs from the
    plan's (micro_batch_size: auto calibrated here, or another world size)."""
    path = bundle.prepared / schedule.FILE
    if not path.is_file():
        raise StageError(f"{path}: no step schedule; run the prepare stage with this runtime first")
    steps = schedule.read(bundle.prepared)
    if bundle.trial is not None:  # prepare wrote the base plan's schedule; a trial has its own training section
        return schedule.resolve(bundle.config["training"], steps["rows"], global_batch)
    if steps["global_batch_size"] != global_batch:
        _say(f"global batch {global_batch} (plan: {steps['global_batch_size']}): steps recomputed for it")
        steps = schedule.resolve(bundle.config["training"], steps["rows"], global_batch)
    return steps


def training_arguments(bundle: Bundle, micro: int, accum: int, has_eval: bool, on_gpu: bool,
                       train_rows: int | None = None, steps: dict[str, Any] | None = None) -> Any:
    """The plan's training section as TrainingArguments, read strictly (plan.lock was checked against the
    schema). `steps` = prepared/schedule.json (runtime/schedule.py); computed here only for a caller that
    gives the row count instead."""
    from transformers import TrainingArguments

    from ..kernels import liger_settings

    cfg = bundle.config
    t = cfg["training"]
    if steps is None:
        steps = schedule.resolve(t, train_rows, micro * accum * _world())
    flags, note = precision_flags(t["precision"], on_gpu)
    if note:
        _say(note)
    extra_opt: dict[str, Any] = {key: float(t[key]) for key in ("adam_beta1", "adam_beta2", "adam_epsilon") if t[key] is not None}
    sched_kwargs: dict[str, Any] = {}
    if t["lr_scheduler"] == "cosine_with_min_lr":  # the floor as a fraction of learning_rate (locked by resolve)
        sched_kwargs = {"min_lr_rate": float(t["min_lr_ratio"])}
    ds = bundle.plan["launch"]["deepspeed_config"]
    optim = str(t["optimizer"])
    if "8bit" in optim or optim.startswith("paged_"):
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise StageError(f"training.optimizer: {optim} needs the bitsandbytes package (and a CUDA GPU): "
                             "pip install bitsandbytes, or use adamw_torch") from None
    if optim == "adamw_torch_fused" and not on_gpu:
        _say("optimizer adamw_torch_fused on CPU: torch's fused AdamW (CPU kernel)")
    use_liger, liger_config = liger_settings(t["kernels"])
    eval_steps, save_steps = steps["eval_steps"], steps["save_steps"]
    extra: dict[str, Any] = {}
    if save_steps:  # else save_strategy "epoch": no step count involved
        extra["save_steps"] = int(save_steps)
    if t["early_stopping_patience"] and has_eval:
        # EarlyStoppingCallback compares eval_loss with the Trainer's best; the last model is kept
        # (load_best_model_at_end stays off: loft's checkpoints are renamed after saving).
        extra.update(metric_for_best_model="eval_loss", greater_is_better=False)
    fsdp = cfg["fsdp"]
    if fsdp["enabled"] and os.environ.get("ACCELERATE_USE_FSDP", "").lower() not in ("1", "true"):
        extra["fsdp"] = f"{fsdp['sharding']} auto_wrap" + (" offload" if fsdp["offload_params"] else "")
        extra["fsdp_config"] = {"version": int(fsdp["version"])}
    return TrainingArguments(
        output_dir=str(bundle.out / "checkpoints"),
        run_name=bundle.plan["name"],
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accum,
        learning_rate=float(t["learning_rate"]),
        lr_scheduler_type=t["lr_scheduler"],
        lr_scheduler_kwargs=sched_kwargs,
        warmup_steps=int(steps["warmup_steps"] or 0),
        num_train_epochs=float(t["epochs"]),
        max_steps=int(steps["total_steps"]) if steps["total_steps"] else -1,
        optim=optim,
        weight_decay=float(t["weight_decay"]),
        max_grad_norm=float(t["max_grad_norm"]),
        activation_checkpointing=bool(t["gradient_checkpointing"]),
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_strategy="steps",
        logging_steps=int(t["logging_steps"]),
        eval_strategy=("steps" if eval_steps else "epoch") if has_eval else "no",
        eval_steps=int(eval_steps) if (has_eval and eval_steps) else None,
        prediction_loss_only=True,  # eval loss only: never gather [tokens × vocab] logits
        save_strategy="steps" if save_steps else "epoch",
        save_total_limit=None,  # loft rotates complete checkpoints itself (checkpoint.rotate)
        seed=int(t["seed"]),
        data_seed=int(t["seed"]),
        dataloader_num_workers=int(t["dataloader_num_workers"]),
        remove_unused_columns=False,
        label_names=["labels"],
        include_num_input_tokens_seen="all" if cfg["sequence"]["packing"] else "non_padding",
        report_to=report_to(cfg["tracking"]) or "none",
        deepspeed=str(bundle.path(ds)) if ds else None,
        use_cpu=not on_gpu,
        use_liger_kernel=use_liger,
        liger_kernel_config=liger_config,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        **flags,
        **extra,
        **extra_opt,
    )


def make_trainer_class() -> type:
    from transformers import Trainer

    class LoftTrainer(Trainer):
        """Trainer with atomic checkpoints, batch records and opt-in auxiliary losses."""

        loft_aux: dict[str, Any] = {}
        loft_batches: BatchRecorder | None = None
        _loft_staging = False

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            sample_ids = inputs.pop("sample_ids", None)
            ambiguity = inputs.pop("ambiguity", None)
            if model.training and sample_ids is not None and self.loft_batches is not None:
                self.loft_batches.add(sample_ids)
            if not (model.training and aux_losses_active(self.loft_aux)):
                self.loss_is_scaled_for_ga = None
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            als = self.loft_aux["adaptive_label_smoothing"]
            loss = causal_lm_loss(
                outputs.logits, labels, temperature=float(self.loft_aux["training_temperature"]),
                ambiguity=ambiguity if als["enabled"] else None,
                max_smoothing=float(als["max_smoothing"]), num_items_in_batch=num_items_in_batch)
            self.loss_is_scaled_for_ga = num_items_in_batch is not None
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

        def _get_output_dir(self, trial: Any) -> str:
            if self._loft_staging:
                return str(checkpoint.staging_dir(Path(str(self.args.output_dir))))
            return super()._get_output_dir(trial)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            ckpts = Path(str(self.args.output_dir))
            self._loft_staging = True
            try:
                super()._save_checkpoint(model, trial)
                staged = checkpoint.staging_dir(ckpts) / f"checkpoint-{self.state.global_step}"
                checkpoint.save_log_window(staged, _rank(), float(self._tr_loss.item()),
                                           int(self._globalstep_last_logged))
            finally:
                self._loft_staging = False
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                checkpoint.publish(ckpts, self.state.global_step, {"plan": self.loft_fingerprint})
                checkpoint.rotate(ckpts, self.loft_keep)
            self.accelerator.wait_for_everyone()

        def _load_rng_state(self, resume_from: str | None) -> None:
            # called once on resume, after the Trainer zeroed its running loss and before the first step
            super()._load_rng_state(resume_from)
            window = checkpoint.load_log_window(Path(resume_from), _rank()) if resume_from else None
            if window is not None:
                self._tr_loss.fill_(window[0])
                self._globalstep_last_logged = window[1]

        loft_keep: int | None = None
        loft_fingerprint: str = ""

    return LoftTrainer


def _write_report(out: Path, report: dict[str, Any]) -> None:
    if _rank() != 0:
        return
    tmp = out / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / REPORT)


ModelProvider = Callable[["Bundle", Any], Any]  # (bundle, tokenizer) -> the model to train


def run(bundle: Bundle, callbacks: Sequence[Any] = (), allow_device_mismatch: bool = False) -> int:
    """Train as the plan says; resume from the newest complete checkpoint. Returns the exit code."""
    code = train(bundle, callbacks, allow_device_mismatch=allow_device_mismatch)
    _leave_process_group()
    return code


def standalone_model(bundle: Bundle, tokenizer: Any) -> Any:
    """The base model as the plan names it, with its adapter. Seeded twice: before the weights (a random
    base) and right before the adapter, so a sweep that keeps its base loaded draws the same adapter."""
    from transformers import set_seed

    seed = int(bundle.config["training"]["seed"])
    set_seed(seed)
    base = apply_cut_cross_entropy(load_base_model(bundle), bundle.config["training"]["kernels"])
    if fit_embeddings(base, tokenizer):
        _say(f"model.special_tokens added tokens: embeddings resized to {len(tokenizer)}")
    set_seed(seed)
    return apply_adapter(base, bundle)


def _leave_process_group() -> None:
    """Every rank leaves the process group together before exiting: a gloo/NCCL group still alive at
    interpreter exit can abort a rank ("terminate called without an active exception") after a clean stop.
    Only on success: after an error on one rank, a barrier would wait forever for the others."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train(bundle: Bundle, callbacks: Sequence[Any] = (), model_provider: ModelProvider | None = None,
          final_eval: bool = False, allow_device_mismatch: bool = False, clear_stop: bool = True) -> int:
    """One training run. `model_provider` gives the model (a sweep passes its shared base; default: load it);
    `final_eval` evaluates the final model when the last evaluation was at an earlier step (a sweep ranks
    trials by the final eval loss); `clear_stop=False` keeps a STOP file (a sweep clears it once per launch,
    so a STOP touched while one trial starts still stops the sweep's other workers)."""
    from ..device import check as check_device

    on_gpu = check_device(bundle.plan, allow=allow_device_mismatch)  # before anything is loaded
    check_qlora(bundle)  # before any weights or data are read
    check_attention(bundle)
    cfg = bundle.config
    out = bundle.out
    ckpts = out / "checkpoints"
    sentinel = bundle.root / "STOP"
    plan_id = fingerprint(bundle)
    previous = json.loads((out / REPORT).read_text()) if (out / REPORT).is_file() else {}
    if previous.get("status") == "completed" and previous.get("plan") == plan_id and (out / "final").is_dir():
        _say(f"already trained with this plan ({previous.get('global_step')} steps, model in {out / 'final'}); "
             f"delete {out / 'final'} to train again")
        return 0
    resume = checkpoint.newest_loadable(ckpts, _say)
    if resume is not None and checkpoint.marker(resume).get("plan", plan_id) != plan_id:
        raise StageError(f"{resume} was written by a different plan (training settings changed since); "
                         f"move {ckpts} away to start over, or rebuild with the old config to resume")
    aux = cfg["training"]["aux_losses"]
    als = aux["adaptive_label_smoothing"]

    train_ds, eval_ds = load_prepared(bundle)
    if als["enabled"] and "ambiguity" not in train_ds.column_names:
        raise StageError("training.aux_losses.adaptive_label_smoothing is enabled but the prepared data has no "
                         "`ambiguity` column; re-run prepare with this plan")
    tokenizer = load_tokenizer(bundle)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    collator = LoftCollator(pad_token_id=int(pad_id or 0), packing=bool(cfg["sequence"]["packing"]),
                            with_ambiguity=bool(als["enabled"]))

    model = (model_provider or standalone_model)(bundle, tokenizer)
    if _rank() == 0 and hasattr(model, "print_trainable_parameters"):
        model.print_trainable_parameters()

    def probe_factory() -> autobatch.Probe:
        model.to("cuda")
        return autobatch.cuda_probe(model, [train_ds[i] for i in range(min(len(train_ds), 256))], collator)

    micro, accum, auto_record = _batch_shape(bundle, on_gpu, probe_factory)
    steps = _steps(bundle, micro * accum * _world())
    args = training_arguments(bundle, micro, accum, eval_ds is not None, on_gpu, steps=steps)

    resume_step = None
    if resume is not None:
        resume_step = int(json.loads((resume / "trainer_state.json").read_text())["global_step"])
    if _rank() == 0:
        checkpoint.clean_staging(ckpts)
        if clear_stop:
            clear_sentinel(sentinel)

    stop = StopRequest(sentinel)
    stop_cb = StopCallback(stop)
    batches = BatchRecorder(out, _rank(), resume_step)
    cbs: list[Any] = [stop_cb, batches, *callbacks]
    patience = cfg["training"]["early_stopping_patience"]
    if patience:
        if eval_ds is None:
            raise StageError("training.early_stopping_patience needs eval data, but prepare produced no eval "
                             "split; set data.eval_split")
        from transformers import EarlyStoppingCallback

        cbs.append(EarlyStoppingCallback(early_stopping_patience=int(patience)))
    sampler = GpuSampler()
    if _rank() == 0:
        watcher = SpikeWatcher(out, SpikeRule.from_plan(cfg.get("tracking")), batches,
                               SampleDecoder(train_ds, tokenizer))
        cbs.insert(0, MetricsCallback(out, resume_step, sampler, watcher))
        start_beside_training(bundle, _say)

    trainer_cls = make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          data_collator=collator, processing_class=tokenizer, callbacks=cbs)
    trainer.loft_aux = aux
    trainer.loft_batches = batches
    trainer.loft_keep = cfg["training"]["save_total_limit"]
    trainer.loft_fingerprint = plan_id

    if resume is not None:
        _say(f"resuming from {resume} (step {resume_step})")
    stop.install()
    _say(f"to stop and save a checkpoint: touch {sentinel}  (or kill -USR1 {os.getpid()}, or Ctrl-C once)")
    started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        stop.restore()
    state = trainer.state
    finished = stop_cb.stopped_at is None or state.global_step >= state.max_steps
    if final_eval and finished and eval_ds is not None:
        evals = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "eval_loss" in r]
        if not evals or evals[-1] != state.global_step:
            trainer.evaluate()  # MetricsCallback records it in metrics.jsonl
    losses = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if r.get("loss") is not None]
    report: dict[str, Any] = {
        "status": "completed" if finished else "stopped",
        "global_step": state.global_step, "max_steps": state.max_steps,
        "resumed_from": str(resume) if resume else None,
        "micro_batch_size": micro, "gradient_accumulation_steps": accum, "world_size": _world(),
        "global_batch_size": micro * accum * _world(), "autobatch": auto_record,
        "device": "cuda" if on_gpu else "cpu", "tokens": int(state.num_input_tokens_seen or 0),
        "train_runtime_s": round(time.monotonic() - started, 3),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "train_loss": result.training_loss if result is not None else None,
        "newest_checkpoint": str(checkpoint.newest_complete(ckpts) or "") or None,
        "stop_reason": stop.reason, "plan": plan_id,
        "early_stopped": bool(patience) and finished and state.global_step < state.max_steps,
        "best_eval_loss": state.best_metric if patience else None,
    }
    report["measured"] = measured_vs_estimate(sampler.peaks(), report["tokens"], report["train_runtime_s"],
                                              bundle.plan.get("estimate") or {})
    if not finished:
        report["final_dir"] = None
        _write_report(out, report)
        trial = f" --trial {bundle.trial}" if bundle.trial is not None else ""
        _say(f"stopped at step {state.global_step}; checkpoint saved in {report['newest_checkpoint']}. "
             f"Resume with: bash {bundle.root}/launch.sh   (or: loft train {bundle.root}{trial})")
        return 0
    final = out / "final"
    trainer.save_model(str(final))
    if trainer.args.should_save:
        tokenizer.save_pretrained(str(final))
    report["final_dir"] = str(final)
    _write_report(out, report)
    _say(f"training done: {state.global_step} steps; model in {final}")
    return 0
