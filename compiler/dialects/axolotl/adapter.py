"""The adapter section: LoRA / QLoRA / full fine-tune, rank, alpha, targets."""

from __future__ import annotations

from .context import Translation, num, off


def adapter(t: Translation) -> None:
    a = t.d.get("adapter")
    in4, in8 = t.d.get("load_in_4bit") is True, t.d.get("load_in_8bit") is True
    if a in (None, ""):
        if in4 or in8:
            k = "load_in_4bit" if in4 else "load_in_8bit"
            t.err([k], "quantized loading needs an adapter (Axolotl rejects this too)", code="contradiction",
                  hint="set adapter: qlora, or remove the load_in_* flag for a full fine-tune")
        lora_set = [k for k in ("lora_r", "lora_alpha", "lora_target_modules", "lora_target_linear",
                                "lora_target_parameters", "lora_modules_to_save") if not off(t.d.get(k))]
        if lora_set:
            t.warn([lora_set[0]], f"{', '.join(lora_set)} have no effect without `adapter` (a full "
                   "fine-tune)")
        t.put("adapter.type", "none", *(["adapter"] if "adapter" in t.d else []))
        return
    if a not in ("lora", "qlora"):
        t.err(["adapter"], f"adapter {a!r} is not supported", expected="lora | qlora | (none)")
        return
    if in8 and in4:
        t.err(["load_in_8bit"], "load_in_8bit and load_in_4bit are both true", code="contradiction")
        return
    if in8:
        t.warn(["load_in_8bit"], "8-bit base weights are a memory saving loft does not offer: loft trains "
               "the same LoRA adapter on unquantized weights (model.dtype), which needs more GPU memory "
               "(see the estimate)", code="axolotl-differs")
    kind = "qlora" if (a == "qlora" or in4) else "lora"
    if a == "lora" and in4:
        t.warn(["load_in_4bit"], "lora on 4-bit weights is QLoRA: translated to adapter.type: qlora",
               code="axolotl-differs")
    if a == "qlora" and not in4:
        t.warn(["adapter"], "Axolotl requires load_in_4bit: true for qlora; loft's qlora always loads "
               "4-bit weights", code="axolotl-differs")
    t.put("adapter.type", kind, "adapter", *(["load_in_4bit"] if in4 else []))
    r, alpha = t.d.get("lora_r"), t.d.get("lora_alpha")
    if r is None:
        t.err(["adapter"], "lora_r is required with an adapter", code="missing-key", expected="lora_r: 16")
    elif not isinstance(r, int) or isinstance(r, bool) or r < 1:
        t.err(["lora_r"], f"expected a positive integer, got {r!r}", code="type")
    else:
        t.put("adapter.r", r, "lora_r")
    if alpha is not None:
        if num(alpha) is None:
            t.err(["lora_alpha"], f"expected a number, got {alpha!r}", code="type")
        else:
            a_num = num(alpha)
            assert a_num is not None
            t.put("adapter.alpha", int(a_num) if a_num.is_integer() else a_num, "lora_alpha")
    elif r is not None:
        t.warn(["lora_r"], "lora_alpha is not set: PEFT's default alpha is 8", code="axolotl-default")
        t.put("adapter.alpha", 8)
    drop = t.d.get("lora_dropout")
    dv = num(drop) if drop is not None else 0.0
    if dv is None:
        t.err(["lora_dropout"], f"expected a number, got {drop!r}", code="type")
    else:
        t.put("adapter.dropout", dv, *(["lora_dropout"] if "lora_dropout" in t.d else []))
    tm, linear = t.d.get("lora_target_modules"), t.d.get("lora_target_linear")
    if linear is True:
        t.put("adapter.target_modules", "all-linear", "lora_target_linear")
        if tm:
            t.warn(["lora_target_modules"], "lora_target_linear: true already targets every linear layer; "
                   "the listed modules are included", code="axolotl-differs")
    elif isinstance(tm, list) and tm:
        t.put("adapter.target_modules", [str(x) for x in tm], "lora_target_modules")
    elif isinstance(tm, str) and tm:
        t.put("adapter.target_modules", tm, "lora_target_modules")
    elif t.d.get("lora_target_parameters"):
        t.put("adapter.target_modules", [], "lora_target_parameters")  # only the expert tensors
    else:
        t.err(["adapter"], "no LoRA targets: set lora_target_linear: true or lora_target_modules",
              code="missing-key", hint="Axolotl would fall back to PEFT's per-architecture default, "
              "which loft does not guess")
    for key, out in (("lora_target_parameters", "adapter.target_parameters"),
                     ("lora_modules_to_save", "adapter.modules_to_save")):
        v = t.d.get(key)
        if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
            if v:
                t.put(out, list(dict.fromkeys(str(x) for x in v)), key)
        elif v is not None:
            t.err([key], "must be a list of names", code="type")
    for key, out in (("peft_use_rslora", "adapter.rslora"), ("peft_use_dora", "adapter.dora")):
        if t.d.get(key) is True:
            t.put(out, True, key)
