"""The model section: base model, tokenizer, quantized loading, special tokens, precision, attention."""

from __future__ import annotations

import json

from ...errors import did_you_mean
from .context import Translation

ATTN = {"flash_attention_2": "flash_attention_2", "flash_attention_3": "flash_attention_3", "sdpa": "sdpa",
        "eager": "eager"}


def model(t: Translation) -> None:
    base = t.d.get("base_model")
    if not isinstance(base, str) or not base.strip():
        t.err(["base_model"] if "base_model" in t.d else [], "`base_model` is required: the hub id or "
              "directory of the model to fine-tune", code="missing-key", expected="base_model: org/name")
        base = ""
    else:
        t.put("model.base", base.strip(), "base_model")
    bmc = t.d.get("base_model_config")
    if bmc and bmc != base:
        t.err(["base_model_config"], "a model config other than base_model's own is not supported",
              hint="loft reads config.json from model.base")
    if t.d.get("revision_of_model"):
        t.put("model.revision", str(t.d["revision_of_model"]), "revision_of_model")
    tok = t.d.get("tokenizer_config")
    if tok and tok != base:
        t.put("model.tokenizer", str(tok), "tokenizer_config")
    if t.d.get("trust_remote_code") is True:
        t.put("model.trust_remote_code", True, "trust_remote_code")
    mt = t.d.get("model_type")
    if isinstance(mt, str) and mt and not (mt.endswith("ForCausalLM") or mt == "AutoModelForCausalLM"):
        t.err(["model_type"], f"{mt} is not a causal-LM class: loft loads every model with "
              "AutoModelForCausalLM (text-only causal LM fine-tuning)")
    tt = t.d.get("tokenizer_type")
    if isinstance(tt, str) and tt and tt not in ("AutoTokenizer", "PreTrainedTokenizerFast"):
        t.warn(["tokenizer_type"], f"loft loads the tokenizer with AutoTokenizer, not {tt} (the same "
               "vocabulary; the fast implementation)")
    mq, mqk = t.d.get("model_quantization_config"), t.d.get("model_quantization_config_kwargs")
    if mq is not None:
        if mq == "Mxfp4Config" and isinstance(mqk, dict) and mqk.get("dequantize") is True and len(mqk) == 1:
            t.warn(["model_quantization_config"], "Mxfp4Config(dequantize=True) loads the MXFP4 checkpoint "
                   "dequantized; loft loads it in model.dtype, the same weights", code="axolotl-differs")
        else:
            t.err(["model_quantization_config"], f"loading with {mq}({mqk or ''}) is not supported",
                  hint="only Mxfp4Config with dequantize: true (= plain loading) translates")
    elif mqk:
        t.err(["model_quantization_config_kwargs"], "has no effect without model_quantization_config",
              code="contradiction")
    bnb = t.d.get("bnb_config_kwargs")
    if bnb:
        same = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True, "load_in_4bit": True}
        other = [k for k, v in bnb.items() if same.get(k, object()) != v] if isinstance(bnb, dict) else ["?"]
        if other:
            t.err(["bnb_config_kwargs"], f"bitsandbytes settings other than loft's qlora (nf4, double "
                  f"quantization) are not supported: {', '.join(other)}")
    if t.d.get("quantize_moe_experts") is True:
        if t.d.get("adapter") == "qlora" or t.d.get("load_in_4bit") is True:
            t.warn(["quantize_moe_experts"], "loft's qlora quantizes the layers bitsandbytes supports; MoE "
                   "experts stored as fused tensors may stay in bf16 (more memory, the same adapter "
                   "training)", code="axolotl-differs")
        elif t.d.get("adapter") == "lora" and t.d.get("load_in_8bit") is True:
            t.warn(["quantize_moe_experts"], "8-bit experts are a memory saving loft does not offer: loft trains "
                   "the same LoRA adapter on unquantized weights (see the estimate)", code="axolotl-differs")
        else:
            t.err(["quantize_moe_experts"], "quantizing experts needs adapter: qlora (or lora with load_in_8bit)",
                  code="contradiction")
    st = t.d.get("special_tokens")
    if isinstance(st, dict) and st:
        allowed = ("bos_token", "eos_token", "pad_token", "unk_token")
        out = {}
        for k, v in st.items():
            if k not in allowed:
                hint = did_you_mean(k, allowed)
                t.err(["special_tokens", k], "is not a special token loft can set" if k !=
                      "additional_special_tokens" else "adding tokens is not supported",
                      hint=hint, expected=" | ".join(allowed))
            elif v is not None:
                out[k] = str(v)
        if out:
            t.put("model.special_tokens", out, "special_tokens")
    elif st is not None and not isinstance(st, dict):
        t.err(["special_tokens"], "must be a mapping such as {pad_token: '<pad>'}", code="type")
    vocabulary(t)
    for key in ("model_config", "overrides_of_model_config"):
        mc = t.d.get(key)
        if isinstance(mc, dict) and mc:
            t.put("model.config_overrides", json.loads(json.dumps(mc)), key)
    rope = t.d.get("rope_scaling")
    if isinstance(rope, dict) and rope:  # Axolotl's older spelling of model_config: {rope_scaling: ...}
        overrides = t.cfg.get("model", {}).get("config_overrides", {})
        t.put("model.config_overrides", {**overrides, "rope_scaling": json.loads(json.dumps(rope))}, "rope_scaling")


def vocabulary(t: Translation) -> None:
    """`tokens`: a list of new vocabulary entries (Axolotl adds them with tokenizer.add_tokens)."""
    tokens = t.d.get("tokens")
    if tokens is None or tokens == []:
        return
    if isinstance(tokens, dict):
        t.err(["tokens"], "must be a list of new vocabulary entries, not a mapping (Axolotl rejects it "
              "too)", code="type", hint="bos/eos/pad/unk go under special_tokens: {pad_token: ...}")
    elif isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens):
        t.put("model.added_tokens", list(dict.fromkeys(str(t) for t in tokens)), "tokens")
    else:
        t.err(["tokens"], "must be a list of non-empty strings", code="type")


def precision(t: Translation) -> None:
    bf16, fp16 = t.d.get("bf16", "auto"), t.d.get("fp16")
    src: list[str] = [k for k in ("bf16", "fp16", "bfloat16", "float16", "float32") if k in t.d]
    if fp16 is True and bf16 is True:
        t.err(["fp16"], "bf16 and fp16 are both true", code="contradiction", hint="keep one")
        return
    if fp16 is True:
        prec = dtype = "fp16"
    elif bf16 is True or bf16 == "auto" or t.d.get("bfloat16") is True:
        prec = dtype = "bf16"
    elif t.d.get("float16") is True:
        prec = dtype = "fp16"
        t.warn(["float16"], "Axolotl trains pure fp16 weights without autocast; loft loads fp16 weights "
               "and trains with fp16 mixed precision (loss scaling)", code="axolotl-differs")
    else:
        prec = dtype = "fp32"
    if bf16 not in (True, False, "auto", None):
        t.err(["bf16"], f"expected true, false or auto, got {bf16!r}", code="type")
    t.put("training.precision", prec, *src)
    t.put("model.dtype", dtype, *src)
    if t.d.get("tf32") is True:
        t.warn(["tf32"], "TF32 matmuls are a GPU speed setting; loft keeps PyTorch's default")


def attention(t: Translation) -> None:
    impl = t.d.get("attn_implementation")
    legacy = [k for k in ("flash_attention", "sdp_attention", "xformers_attention", "flex_attention",
                          "eager_attention") if t.d.get(k) is True]
    if len(legacy) > 1:
        t.err([legacy[1]], f"only one attention flag may be set; found {', '.join(legacy)}",
              code="contradiction")
        return
    if impl is None and legacy:
        impl = {"flash_attention": "flash_attention_2", "sdp_attention": "sdpa",
                "xformers_attention": "xformers", "flex_attention": "flex_attention",
                "eager_attention": "eager"}[legacy[0]]
    key = "attn_implementation" if t.d.get("attn_implementation") \
        else (legacy[0] if legacy else "attn_implementation")
    if impl is None:
        t.put("model.attn_implementation", "sdpa")
        return
    impl = str(impl)
    if impl in ATTN:
        out = ATTN[impl]
    elif impl in ("xformers", "flex_attention"):
        out = "sdpa"
        t.warn([key], f"{impl} attention becomes sdpa: the same attention, a different kernel",
               code="axolotl-differs")
    elif "flash-attn3" in impl or "flash_attn3" in impl:
        out = "flash_attention_3"
        t.warn([key], f"the hub kernel {impl} becomes transformers' flash_attention_3",
               code="axolotl-differs")
    else:
        t.err([key], f"attention implementation {impl!r} is not supported",
              expected=" | ".join([*ATTN, "xformers", "flex_attention"]))
        return
    t.put("model.attn_implementation", out, key)
