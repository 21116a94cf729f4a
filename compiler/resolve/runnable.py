"""Nothing is locked that the runtime cannot run: options that need a CUDA GPU are refused for
`target.gpu: cpu` at build, with the reason, instead of failing (or silently changing) at train time.

The audit over the config schema's choices (the contract test walks every enum value):
    kernels      liger, cut_cross_entropy: Triton kernels (runtime/kernels.py: Liger, Apple's
                 cut-cross-entropy) — GPU only; cut_cross_entropy also not with the aux losses (no logits)
    attention    flash_attention_2 / 3: CUDA only; sdpa, eager, auto run anywhere
    adapter      qlora: bitsandbytes 4-bit — CUDA only
    optimizer    adamw_8bit, paged_adamw_8bit: bitsandbytes — CUDA only; the others run anywhere
    precision    fp16: CUDA AMP (a CPU run would compute in fp32, not what the plan says); bf16, fp32 run anywhere
"""

from __future__ import annotations

from .context import Context

WHY_GPU = "needs a CUDA GPU, and target.gpu is cpu"


def audit(ctx: Context) -> None:
    cfg = ctx.cfg
    aux = cfg["training"]["aux_losses"]
    if cfg["training"]["kernels"]["cut_cross_entropy"] and (
            aux["training_temperature"] != 1.0 or aux["adaptive_label_smoothing"]["enabled"]):
        ctx.error("conflict", ("training", "kernels", "cut_cross_entropy"), "cut_cross_entropy never builds the "
                  "logits, and training.aux_losses need them", expected="one of the two")
    if str(cfg["target"]["gpu"]).lower() != "cpu":
        return
    t, m = cfg["training"], cfg["model"]
    for kernel in ("liger", "cut_cross_entropy"):
        if t["kernels"][kernel]:
            ctx.error("needs-gpu", ("training", "kernels", kernel), f"training.kernels.{kernel} runs Triton "
                      f"kernels: it {WHY_GPU}", expected="false for a CPU run, or a GPU target.gpu")
    if m["attn_implementation"] in ("flash_attention_2", "flash_attention_3"):
        ctx.error("needs-gpu", ("model", "attn_implementation"),
                  f"model.attn_implementation: {m['attn_implementation']} {WHY_GPU}", expected="sdpa for a CPU run")
    if cfg["adapter"]["type"] == "qlora":
        ctx.error("needs-gpu", ("adapter", "type"), f"adapter.type: qlora loads 4-bit weights with bitsandbytes: it "
                  f"{WHY_GPU}", expected="lora (or none) for a CPU run")
    if "8bit" in t["optimizer"]:
        ctx.error("needs-gpu", ("training", "optimizer"), f"training.optimizer: {t['optimizer']} (bitsandbytes) "
                  f"{WHY_GPU}", expected="adamw_torch for a CPU run")
    if t["precision"] == "fp16":
        ctx.error("needs-gpu", ("training", "precision"), f"training.precision: fp16 mixed precision {WHY_GPU} "
                  "(on a CPU it would compute in fp32)", expected="fp32 or bf16 for a CPU run")
