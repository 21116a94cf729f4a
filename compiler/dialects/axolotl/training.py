"""The sequence and training sections: length, packing, batch, schedule, optimizer, eval/save cadence."""

from __future__ import annotations

import re

from ...errors import did_you_mean
from .context import Translation, num

OPTIMIZERS: dict[str, tuple[str, str]] = {  # Axolotl/transformers name -> (loft name, warning or "")
    "adamw_torch": ("adamw_torch", ""),
    "adamw_torch_fused": ("adamw_torch_fused", ""),
    "adamw_hf": ("adamw_torch", ""),
    "adamw_8bit": ("adamw_8bit", ""),
    "adamw_bnb_8bit": ("adamw_8bit", ""),
    "paged_adamw_8bit": ("paged_adamw_8bit", ""),
    "adafactor": ("adafactor", ""),
    "sgd": ("sgd", ""),
    "paged_adamw_32bit": ("adamw_torch", "paged 32-bit AdamW becomes adamw_torch: the same update; "
                                         "paging only moves optimizer state under memory pressure"),
    "paged_adamw": ("adamw_torch", "paged AdamW becomes adamw_torch: the same update without paging"),
    "adamw_torch_8bit": ("adamw_8bit", "torchao's 8-bit AdamW becomes bitsandbytes' 8-bit AdamW "
                                       "(same algorithm, different state quantization)"),
    "adamw_torch_4bit": ("adamw_8bit", "torchao's 4-bit AdamW becomes bitsandbytes' 8-bit AdamW: loft has "
                                       "no 4-bit optimizer; state is more precise and uses twice the memory"),
    "ao_adamw_8bit": ("adamw_8bit", "torchao's 8-bit AdamW becomes bitsandbytes' 8-bit AdamW"),
}
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr",
              "cosine_with_restarts", "polynomial", "inverse_sqrt", "warmup_stable_decay")
_RANGE = re.compile(r"\[\s*-?\d*\s*:\s*-?\d*\s*\]$")  # Axolotl's `name$[start:end]` tensor slice


def sequence(t: Translation) -> None:
    sl = t.d.get("sequence_len", 512)
    if not isinstance(sl, int) or isinstance(sl, bool) or sl < 1:
        t.err(["sequence_len"], f"expected a positive integer, got {sl!r}", code="type")
    else:
        t.put("sequence.max_length", sl, *(["sequence_len"] if "sequence_len" in t.d else []))
    t.put("sequence.packing", t.d.get("sample_packing") is True,
          *(["sample_packing"] if "sample_packing" in t.d else []))
    # Axolotl drops samples longer than sequence_len (excess_length_strategy defaults to drop); a
    # streamed pretraining corpus is cut into sequence_len chunks instead.
    strategy = {"drop": "drop", "truncate": "truncate"}.get(str(t.d.get("excess_length_strategy") or "drop"))
    if strategy is None:
        t.err(["excess_length_strategy"], "expected drop or truncate", code="type")
        return
    if t.d.get("pretraining_dataset") and not t.d.get("datasets"):
        strategy = "split"
    t.put("sequence.strategy", strategy)
    if t.d.get("pad_to_sequence_len") is True:
        t.warn(["pad_to_sequence_len"], "padding to sequence_len has no effect on the trained model "
               "(padding carries no loss); loft pads only as needed")


def training(t: Translation) -> None:
    mbs = t.d.get("micro_batch_size", 1)
    gas = t.d.get("gradient_accumulation_steps")
    bs = t.d.get("batch_size")
    for k, v in (("micro_batch_size", mbs), ("gradient_accumulation_steps", gas), ("batch_size", bs)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            t.err([k], f"expected a positive integer, got {v!r}", code="type")
            return
    t.put("training.micro_batch_size", mbs, *(["micro_batch_size"] if "micro_batch_size" in t.d else []))
    if bs is not None and gas is not None:
        t.err(["batch_size"], "set only one of gradient_accumulation_steps and batch_size (Axolotl "
              "rejects both too)", code="contradiction")
    elif bs is not None:
        # Axolotl: gradient_accumulation_steps = batch_size // micro_batch_size, per device (its trainer
        # then multiplies batch_size by the world size), so batch_size is NOT divided by the GPU count.
        accum = max(1, bs // mbs)
        if bs % mbs:
            t.warn(["batch_size"], f"batch_size {bs} is not a multiple of micro_batch_size {mbs}: Axolotl "
                   f"and loft accumulate {accum} micro-batches ({accum * mbs} samples per device)",
                   code="axolotl-differs")
        t.put("training.gradient_accumulation_steps", accum, "batch_size", "micro_batch_size")
    else:
        t.put("training.gradient_accumulation_steps", gas if gas is not None else 1,
              *(["gradient_accumulation_steps"] if gas is not None else []))
    ne = t.d.get("num_epochs", 1)
    nv = num(ne)
    if nv is None or nv <= 0:
        t.err(["num_epochs"], f"expected a positive number, got {ne!r}", code="type")
    else:
        t.put("training.epochs", int(nv) if nv.is_integer() else nv, *(["num_epochs"] if "num_epochs"
                                                                       in t.d else []))
    if t.d.get("max_steps") is not None:
        ms = t.d["max_steps"]
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 1:
            t.err(["max_steps"], f"expected a positive integer, got {ms!r}", code="type")
        else:
            t.put("training.max_steps", ms, "max_steps")
    ws, wr = t.d.get("warmup_steps"), t.d.get("warmup_ratio")
    if ws is not None and wr is not None:
        t.err(["warmup_steps"], "warmup_steps and warmup_ratio are both set (Axolotl rejects this too)",
              code="contradiction", hint="keep one")
    elif ws is not None:
        wv = num(ws)
        if wv is None or wv < 0 or not wv.is_integer():
            hint = f"did you mean warmup_ratio: {ws}?" if wv is not None and 0 < wv < 1 else ""
            t.err(["warmup_steps"], f"must be a whole number of steps, got {ws!r}", code="type", hint=hint)
        else:
            t.put("training.warmup_steps", int(wv), "warmup_steps")
    elif wr is not None:
        wv = num(wr)
        if wv is None or not 0 <= wv <= 1:
            t.err(["warmup_ratio"], f"expected a fraction between 0 and 1, got {wr!r}", code="type")
        else:
            t.put("training.warmup_ratio", wv, "warmup_ratio")
    else:
        t.put("training.warmup_ratio", 0.03)
    lr = t.d.get("learning_rate")
    lv = num(lr)
    if lr is None:
        t.err([], "`learning_rate` is required (Axolotl requires it too)", code="missing-key")
    elif lv is None or lv <= 0:
        t.err(["learning_rate"], f"expected a positive number, got {lr!r}", code="type")
    else:
        t.put("training.learning_rate", lv, "learning_rate")
    for key, out in (("weight_decay", "training.weight_decay"), ("max_grad_norm", "training.max_grad_norm"),
                     ("adam_beta1", "training.adam_beta1"), ("adam_beta2", "training.adam_beta2"),
                     ("adam_epsilon", "training.adam_epsilon")):
        v = t.d.get(key)
        if v is None:
            continue
        fv = num(v)
        if fv is None or fv < 0:
            t.err([key], f"expected a non-negative number, got {v!r}", code="type")
        else:
            t.put(out, fv, key)
    if "weight_decay" not in t.d:
        t.put("training.weight_decay", 0.0)
    opt = t.d.get("optimizer") or "adamw_torch_fused"
    if isinstance(opt, str) and opt in OPTIMIZERS:
        name, note = OPTIMIZERS[str(opt)]
        t.put("training.optimizer", name, *(["optimizer"] if "optimizer" in t.d else []))
        if note:
            t.warn(["optimizer"], note, code="axolotl-differs")
    else:
        t.err(["optimizer"], f"optimizer {opt!r} is not supported", expected=", ".join(sorted(OPTIMIZERS)),
              hint=did_you_mean(str(opt), list(OPTIMIZERS)))
    sch = t.d.get("lr_scheduler") or "cosine"
    floor = t.d.get("cosine_min_lr_ratio")
    if floor is not None and sch == "cosine":
        fv = num(floor)
        if fv is None or not 0 <= fv <= 1:
            t.err(["cosine_min_lr_ratio"], f"expected a fraction of learning_rate in [0, 1], got {floor!r}",
                  code="type")
        else:  # Axolotl's cosine-with-floor = transformers' cosine_with_min_lr(min_lr_rate)
            sch = "cosine_with_min_lr"
            t.put("training.min_lr_ratio", fv, "cosine_min_lr_ratio")
    elif floor is not None:
        t.warn(["cosine_min_lr_ratio"], f"only applies to lr_scheduler: cosine (here {sch}); Axolotl "
               "ignores it, so does loft", code="axolotl-ignored")
    if sch in SCHEDULERS:
        t.put("training.lr_scheduler", sch, *(["lr_scheduler"] if "lr_scheduler" in t.d else []),
              *(["cosine_min_lr_ratio"] if sch == "cosine_with_min_lr" and floor is not None else []))
    else:
        t.err(["lr_scheduler"], f"lr_scheduler {sch!r} is not supported", expected=", ".join(SCHEDULERS),
              hint=did_you_mean(str(sch), SCHEDULERS))
    for key, out in (("seed", "training.seed"), ("logging_steps", "training.logging_steps")):
        if isinstance(t.d.get(key), int):  # the type is Axolotl's schema's check; bounds are loft's schema's
            t.put(out, t.d[key], key)
    # Axolotl keeps the last 4 checkpoints when save_total_limit is unset or 0 (its trainer builder)
    limit = t.d.get("save_total_limit")
    t.put("training.save_total_limit", limit if isinstance(limit, int) and limit else 4, *t.given("save_total_limit"))
    gc = t.d.get("gradient_checkpointing")
    if gc in ("offload", "offload_disk", "unsloth"):
        t.warn(["gradient_checkpointing"], f"gradient_checkpointing: {gc} becomes plain gradient "
               "checkpointing (same math, activations stay on the GPU)", code="axolotl-differs")
    t.put("training.gradient_checkpointing", bool(gc), *(["gradient_checkpointing"]
                                                         if "gradient_checkpointing" in t.d else []))
    gck = t.d.get("gradient_checkpointing_kwargs")
    if isinstance(gck, dict) and gck.get("use_reentrant") is True:
        t.warn(["gradient_checkpointing_kwargs"], "loft uses non-reentrant checkpointing (the same "
               "gradients)")
    if t.d.get("eval_max_new_tokens"):
        t.put("eval.max_new_tokens", t.d["eval_max_new_tokens"], "eval_max_new_tokens")
    esp = t.d.get("early_stopping_patience")
    if esp is not None and esp is not False and esp != 0:
        if not isinstance(esp, int) or isinstance(esp, bool) or esp < 1:
            t.err(["early_stopping_patience"], f"expected a positive whole number, got {esp!r}", code="type")
        else:
            t.put("training.early_stopping_patience", esp, "early_stopping_patience")
    unfrozen(t)


def unfrozen(t: Translation) -> None:
    """`unfrozen_parameters`: Axolotl escapes the periods and searches each pattern in parameter names."""
    up = t.d.get("unfrozen_parameters")
    if up is None or up == []:
        return
    if isinstance(up, str):
        up = [up]
    if not isinstance(up, list) or not all(isinstance(p, str) and p for p in up):
        t.err(["unfrozen_parameters"], "must be a list of parameter-name patterns", code="type")
        return
    if t.d.get("adapter"):
        t.err(["unfrozen_parameters"], "is supported for a full fine-tune only, not with adapter: "
              f"{t.d.get('adapter')}: Axolotl applies the patterns after the adapter wraps the model "
              "(names then start with base_model.model.), so they freeze or unfreeze adapter and base "
              "tensors alike", hint="drop the adapter for a partial full fine-tune, or use "
              "lora_modules_to_save to train whole modules next to LoRA")
        return
    out = []
    for i, pattern in enumerate(up):
        if _RANGE.search(pattern):
            t.err(["unfrozen_parameters", i], "a parameter index range (`$[:32000]`) trains part of a "
                  "tensor; loft trains whole parameters only")
            return
        out.append(pattern.replace(".", r"\."))
    t.put("training.unfrozen_parameters", out, "unfrozen_parameters")


def cadence(t: Translation) -> None:
    """evals_per_epoch / saves_per_epoch / eval_steps / save_steps and the *_strategy keys."""
    vss = num(t.d.get("val_set_size")) or 0.0
    for what in ("eval", "save"):
        steps_k, per_k, strat_k = f"{what}_steps", f"{what}s_per_epoch", f"{what}_strategy"
        steps, per, strat = t.d.get(steps_k), t.d.get(per_k), t.d.get(strat_k)
        if steps is not None and per:
            t.err([per_k], f"{steps_k} and {per_k} are both set (Axolotl rejects this too)",
                  code="contradiction", hint="keep one")
            continue
        if strat is not None and strat not in ("steps", "epoch", "no", "best"):
            t.err([strat_k], f"expected steps, epoch or no, got {strat!r}", code="type")
            continue
        if strat == "no":
            t.warn([strat_k], f"{strat_k}: no — loft {'evaluates when an eval split exists' if what == 'eval' else 'always saves checkpoints'}; "
                   "this has no effect on the trained model")
            continue
        if strat == "best":
            t.warn([strat_k], "saving only the best checkpoint is not supported; loft saves every "
                   f"{what} interval (no effect on the trained model)")
        if what == "eval" and vss == 0 and (steps or per):
            t.warn([steps_k if steps else per_k], "has no effect: there is no eval split (val_set_size is 0)")
            continue
        if steps is not None:
            sv = num(steps)
            if sv is None or sv <= 0:
                t.err([steps_k], f"expected a positive number, got {steps!r}", code="type")
            elif not sv.is_integer():
                t.err([steps_k], f"a fractional {steps_k} ({steps}) is not supported",
                      hint=f"use {per_k} or a whole number of steps")
            else:
                t.put(f"training.{steps_k}", int(sv), steps_k)
        elif per is not None:
            if not isinstance(per, int) or isinstance(per, bool) or per < 0:
                t.err([per_k], f"expected a whole number, got {per!r}", code="type")
            elif per > 1:
                t.put(f"training.{per_k}", per, per_k)
            # 1 (and Axolotl's 0 = unset) is loft's default: once per epoch
        elif strat == "steps":
            t.err([strat_k], f"{strat_k}: steps needs {steps_k}", code="missing-key")
