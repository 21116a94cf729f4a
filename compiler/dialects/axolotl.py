"""Translate an Axolotl config into a loft config: Axolotl's semantics, not just its key names.

`translate(doc)` returns the loft config dict (with `loft: 1`) and the warnings; it raises one
`ConfigError` listing every problem at once: keys loft cannot honour because they change training,
misspelled or unknown keys (with a did-you-mean against Axolotl's own key names), and contradictions.
What each key becomes is listed in `axolotl_keys.py`; the places where loft differs are in
docs/axolotl.md. Everything here is a pure function of the document, except that a `deepspeed:` JSON
path is read when the file exists next to the config (or in an Axolotl checkout above it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError, Diagnostic, did_you_mean, key_path
from ..parse import Document
from . import axolotl_keys as K

# Axolotl chat_template name -> loft library names to try, in order (the first the library has wins).
TEMPLATE_NAMES: dict[str, tuple[str, ...]] = {
    "chatml": ("chatml",),
    "llama3": ("llama3", "llama3.1"),
    "llama3_2": ("llama3.2",),
    "llama4": ("llama4",),
    "mistral_v1": ("mistral-v1",),
    "mistral_v2v3": ("mistral-v3",),
    "mistral_v3_tekken": ("mistral-nemo",),
    "mistral_v7_tekken": ("mistral-v7", "mistral-small"),
    "gemma": ("gemma2", "gemma"),
    "gemma3": ("gemma3",),
    "gemma3n": ("gemma3n", "gemma3"),
    "cohere": ("command-r",),
    "phi_3": ("phi3", "phi3.5"),
    "phi_35": ("phi3.5",),
    "phi_4": ("phi4",),
    "deepseek_v2": ("deepseek-v2",),
    "deepseek_v3": ("deepseek-v3", "deepseek-r1"),
    "qwen_25": ("qwen2.5",),
    "qwen3": ("qwen3",),
    "qwen3_5": ("qwen3.5",),
    "smollm2": ("smollm2",),
    "smollm3": ("smollm3",),
    "zephyr": ("zephyr",),
    "alpaca": ("alpaca",),
    "falcon_h1": ("falcon-h1",),
    "exaone": ("exaone",),
    "metharme": ("metharme",),
    "jamba": ("jamba",),
}
# Names in the contract (docs/architecture.md), used when the library index is not installed yet.
_CONTRACT_TEMPLATES = ("qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-v3", "mistral-nemo", "gemma2",
                       "gemma3", "phi3.5", "smollm2", "smollm3", "zephyr", "command-r", "deepseek-r1", "chatml")
_VISION_TEMPLATES = ("llama3_2_vision", "pixtral", "llava", "qwen2_vl", "gemma3n_vision")
# Axolotl templates that are copies of one model family's own tokenizer template: with no loft library
# equivalent, the model's own template (template: auto) is the same text.
_FAMILY_OWN_TEMPLATES = ("qwen3_5", "llama4", "gemma4", "falcon_h1", "phi_4", "exaone", "deepseek_v3",
                         "gemma3n", "jamba", "command_a", "granite", "olmo3", "lfm2")

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
ATTN = {"flash_attention_2": "flash_attention_2", "flash_attention_3": "flash_attention_3", "sdpa": "sdpa",
        "eager": "eager"}
# Axolotl's published DeepSpeed JSONs (deepspeed_configs/*.json): used when the file is not found.
KNOWN_DEEPSPEED: dict[str, dict[str, Any]] = {
    "zero1.json": {"stage": 1, "offload_optimizer": False, "offload_params": False},
    "zero1_torch_compile.json": {"stage": 1, "offload_optimizer": False, "offload_params": False},
    "zero2.json": {"stage": 2, "offload_optimizer": True, "offload_params": False},
    "zero2_torch_compile.json": {"stage": 2, "offload_optimizer": True, "offload_params": False},
    "zero3.json": {"stage": 3, "offload_optimizer": False, "offload_params": False},
    "zero3_bf16.json": {"stage": 3, "offload_optimizer": False, "offload_params": False},
    "zero3_bf16_cpuoffload_all.json": {"stage": 3, "offload_optimizer": True, "offload_params": True},
    "zero3_bf16_cpuoffload_params.json": {"stage": 3, "offload_optimizer": False, "offload_params": True},
}
DATASET_FORMATS = ("chat_template", "alpaca", "completion", "input_output", "sharegpt", "pretrain")
# Dataset keys that only mean something for some types (others: Axolotl ignores them; a warning).
_CHAT_KEYS = ("field_messages", "message_property_mappings", "message_field_role", "message_field_content",
              "roles_to_train", "train_on_eos", "roles", "chat_template", "chat_template_jinja", "field_thinking",
              "template_thinking_key")
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "chat_template": _CHAT_KEYS,
    "alpaca": ("field_instruction", "field_input", "field_output"),
    "completion": ("field",),
    "pretrain": ("text_column",),
    "sharegpt": _CHAT_KEYS,
}
_TYPE_SPECIFIC = frozenset(k for keys in _TYPE_KEYS.values() for k in keys)
_SPLIT = re.compile(r"^\s*(?P<split>[A-Za-z0-9_.-]+)\s*(\[\s*(?P<start>[^:\]]*)\s*:\s*(?P<end>[^\]]*)\s*\])?\s*$")
_SECRET_KEY = re.compile(r"(api_key|secret|password|access_token|auth_token|hf_token|hub_token)$")
_SECRET_OK = {"hf_use_auth_token"}


def translate(doc: Document) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Axolotl document -> (loft config dict, warnings). Raises ConfigError with every error at once."""
    cfg, warnings, _ = translate_with_sources(doc)
    return cfg, warnings


def translate_with_sources(doc: Document) -> tuple[dict[str, Any], list[Diagnostic], dict[str, list[str]]]:
    """Like `translate`, plus {loft dotted key: [Axolotl keys it came from]} for `loftc convert` comments."""
    t = _Translation(doc)
    t.run()
    if t.errors:
        raise ConfigError(t.errors)
    return t.cfg, t.warnings, t.sources


def library_templates() -> dict[str, str]:
    """{name or alias: library name} for loft's chat template library (chat_templates/index.json); the
    contract's names when the index is not installed."""
    try:
        from ..templates import families as library_families

        families: Any = library_families()
    except (OSError, ValueError, KeyError, ImportError):
        families = {}
    out: dict[str, str] = {}
    if isinstance(families, dict) and families:
        for name, fam in families.items():
            out[str(name)] = str(name)
            for alias in (fam.get("aliases") or []) if isinstance(fam, dict) else []:
                out.setdefault(str(alias), str(name))
        return out
    return {n: n for n in _CONTRACT_TEMPLATES}


def safe_name(text: str, default: str) -> str:
    """A loft name (letters, digits, . _ -; starting with a letter or digit; at most 100 characters)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:100].rstrip("-._")
    return name or default


def _off(v: Any) -> bool:
    """Unset, or set to Axolotl's 'off' value: such keys change nothing."""
    return v is None or v is False or v == "" or v == [] or v == {} or (isinstance(v, (int, float)) and
                                                                        not isinstance(v, bool) and v == 0)


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


@dataclass
class _Translation:
    doc: Document
    d: dict[str, Any] = field(init=False)
    cfg: dict[str, Any] = field(default_factory=dict)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.d = self.doc.data

    # -- helpers -------------------------------------------------------------------------------------
    def err(self, keys: tuple[object, ...] | list[object], msg: str, code: str = "axolotl-unsupported",
            hint: str = "", expected: str = "") -> None:
        self.errors.append(self.doc.diag(msg, list(keys), code=code, hint=hint, expected=expected))

    def warn(self, keys: tuple[object, ...] | list[object], msg: str, code: str = "axolotl-no-effect",
             hint: str = "") -> None:
        self.warnings.append(self.doc.diag(msg, list(keys), code=code, hint=hint, severity="warning"))

    def put(self, dotted: str, value: Any, *src: str) -> None:
        node = self.cfg
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        if src:
            self.sources.setdefault(dotted, []).extend(s for s in src if s not in self.sources.get(dotted, []))

    def get(self, key: str, default: Any = None) -> Any:
        v = self.d.get(key, default)
        return default if v is None else v

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> None:
        self.cfg["loft"] = 1
        self.check_keys()
        self.model()
        self.precision()
        self.attention()
        self.adapter()
        self.datasets()
        self.sequence()
        self.training()
        self.cadence()
        self.distributed()
        self.kernels()
        self.tracking()
        self.outputs()

    def check_keys(self) -> None:
        """Every top-level key is known; unsupported ones that are on are errors; no-effect ones warn."""
        names = K.all_keys()
        for key, value in self.d.items():
            if _SECRET_KEY.search(key) and key not in _SECRET_OK and isinstance(value, str) and value.strip():
                self.err([key], "holds a secret value; loft never copies secrets into a config or a bundle",
                         code="secret", hint="delete it and export it in the environment instead "
                                             "(loft records only the variable's NAME)")
                continue
            kind = K.kind_of(key)
            if kind is None:
                hint = K.HINTS.get(key) or did_you_mean(key, names)
                eta, lr = _num(value), _num(self.d.get("learning_rate"))
                if key == "eta_min" and eta is not None and lr:
                    hint += f": here cosine_min_lr_ratio: {eta / lr:.4g} with lr_scheduler: cosine"
                self.err([key], "is not an Axolotl config key, so loft cannot tell what it should do",
                         code="unknown-key", hint=hint or "see docs/axolotl.md for the keys loft reads")
            elif kind == "unsupported":
                if key == "vllm" and not self.d.get("rl"):
                    continue  # vLLM settings without RL have no effect in Axolotl either
                if key == "trl" and not self.d.get("rl"):
                    continue
                if key == "loraplus_lr_embedding" and not self.d.get("loraplus_lr_ratio"):
                    continue
                if key in ("dp_shard_size", "dp_replicate_size") and value == 1:
                    continue
                if not _off(value):
                    self.err([key], f"is not supported: {K.why(key)}", expected="remove it, or keep using Axolotl "
                             "for this config")
            elif kind == "no-effect" and not _off(value):
                if key in K.AXOLOTL_IGNORES:
                    self.warn([key], K.AXOLOTL_IGNORES[key] + "; loft ignores it too", code="axolotl-ignored")
                elif key == "shuffle_merged_datasets" and value is True:
                    continue  # loft shuffles too
                else:
                    self.warn([key], f"has no effect on the trained model in loft ({K.why(key)}); ignored")

    # -- model ---------------------------------------------------------------------------------------
    def model(self) -> None:
        base = self.d.get("base_model")
        if not isinstance(base, str) or not base.strip():
            self.err(["base_model"] if "base_model" in self.d else [], "`base_model` is required: the hub id or "
                     "directory of the model to fine-tune", code="missing-key", expected="base_model: org/name")
            base = ""
        else:
            self.put("model.base", base.strip(), "base_model")
        bmc = self.d.get("base_model_config")
        if bmc and bmc != base:
            self.err(["base_model_config"], "a model config other than base_model's own is not supported",
                     hint="loft reads config.json from model.base")
        if self.d.get("revision_of_model"):
            self.put("model.revision", str(self.d["revision_of_model"]), "revision_of_model")
        tok = self.d.get("tokenizer_config")
        if tok and tok != base:
            self.put("model.tokenizer", str(tok), "tokenizer_config")
        if self.d.get("trust_remote_code") is True:
            self.put("model.trust_remote_code", True, "trust_remote_code")
        mt = self.d.get("model_type")
        if isinstance(mt, str) and mt and not (mt.endswith("ForCausalLM") or mt == "AutoModelForCausalLM"):
            self.err(["model_type"], f"{mt} is not a causal-LM class: loft loads every model with "
                     "AutoModelForCausalLM (text-only causal LM fine-tuning)")
        tt = self.d.get("tokenizer_type")
        if isinstance(tt, str) and tt and tt not in ("AutoTokenizer", "PreTrainedTokenizerFast"):
            self.warn(["tokenizer_type"], f"loft loads the tokenizer with AutoTokenizer, not {tt} (the same "
                      "vocabulary; the fast implementation)")
        mq, mqk = self.d.get("model_quantization_config"), self.d.get("model_quantization_config_kwargs")
        if mq is not None:
            if mq == "Mxfp4Config" and isinstance(mqk, dict) and mqk.get("dequantize") is True and len(mqk) == 1:
                self.warn(["model_quantization_config"], "Mxfp4Config(dequantize=True) loads the MXFP4 checkpoint "
                          "dequantized; loft loads it in model.dtype, the same weights", code="axolotl-differs")
            else:
                self.err(["model_quantization_config"], f"loading with {mq}({mqk or ''}) is not supported",
                         hint="only Mxfp4Config with dequantize: true (= plain loading) translates")
        elif mqk:
            self.err(["model_quantization_config_kwargs"], "has no effect without model_quantization_config",
                     code="contradiction")
        bnb = self.d.get("bnb_config_kwargs")
        if bnb:
            same = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True, "load_in_4bit": True}
            other = [k for k, v in bnb.items() if same.get(k, object()) != v] if isinstance(bnb, dict) else ["?"]
            if other:
                self.err(["bnb_config_kwargs"], f"bitsandbytes settings other than loft's qlora (nf4, double "
                         f"quantization) are not supported: {', '.join(other)}")
        if self.d.get("quantize_moe_experts") is True:
            if self.d.get("adapter") == "qlora" or self.d.get("load_in_4bit") is True:
                self.warn(["quantize_moe_experts"], "loft's qlora quantizes the layers bitsandbytes supports; MoE "
                          "experts stored as fused tensors may stay in bf16 (more memory, the same adapter "
                          "training)", code="axolotl-differs")
            else:
                self.err(["quantize_moe_experts"], "quantizing experts needs adapter: qlora", code="contradiction")
        st = self.d.get("special_tokens")
        if isinstance(st, dict) and st:
            allowed = ("bos_token", "eos_token", "pad_token", "unk_token")
            out = {}
            for k, v in st.items():
                if k not in allowed:
                    hint = did_you_mean(k, allowed)
                    self.err(["special_tokens", k], "is not a special token loft can set" if k !=
                             "additional_special_tokens" else "adding tokens is not supported",
                             hint=hint, expected=" | ".join(allowed))
                elif v is not None:
                    out[k] = str(v)
            if out:
                self.put("model.special_tokens", out, "special_tokens")
        elif st is not None and not isinstance(st, dict):
            self.err(["special_tokens"], "must be a mapping such as {pad_token: '<pad>'}", code="type")
        self.vocabulary()
        for key in ("model_config", "overrides_of_model_config"):
            mc = self.d.get(key)
            if isinstance(mc, dict) and mc:
                self.put("model.config_overrides", json.loads(json.dumps(mc)), key)
            elif mc is not None and not isinstance(mc, dict):
                self.err([key], "must be a mapping of config.json keys, e.g. {output_router_logits: true}",
                         code="type")

    def vocabulary(self) -> None:
        """`tokens`: a list of new vocabulary entries (Axolotl adds them with tokenizer.add_tokens)."""
        tokens = self.d.get("tokens")
        if tokens is None or tokens == []:
            return
        if isinstance(tokens, dict):
            self.err(["tokens"], "must be a list of new vocabulary entries, not a mapping (Axolotl rejects it "
                     "too)", code="type", hint="bos/eos/pad/unk go under special_tokens: {pad_token: ...}")
        elif isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens):
            self.put("model.added_tokens", list(dict.fromkeys(str(t) for t in tokens)), "tokens")
        else:
            self.err(["tokens"], "must be a list of non-empty strings", code="type")

    def precision(self) -> None:
        bf16, fp16 = self.d.get("bf16", "auto"), self.d.get("fp16")
        src: list[str] = [k for k in ("bf16", "fp16", "bfloat16", "float16", "float32") if k in self.d]
        if fp16 is True and bf16 is True:
            self.err(["fp16"], "bf16 and fp16 are both true", code="contradiction", hint="keep one")
            return
        if fp16 is True:
            prec = dtype = "fp16"
        elif bf16 is True or bf16 == "auto" or self.d.get("bfloat16") is True:
            prec = dtype = "bf16"
        elif self.d.get("float16") is True:
            prec = dtype = "fp16"
            self.warn(["float16"], "Axolotl trains pure fp16 weights without autocast; loft loads fp16 weights "
                      "and trains with fp16 mixed precision (loss scaling)", code="axolotl-differs")
        else:
            prec = dtype = "fp32"
        if bf16 not in (True, False, "auto", None):
            self.err(["bf16"], f"expected true, false or auto, got {bf16!r}", code="type")
        self.put("training.precision", prec, *src)
        self.put("model.dtype", dtype, *src)
        if self.d.get("tf32") is True:
            self.warn(["tf32"], "TF32 matmuls are a GPU speed setting; loft keeps PyTorch's default")

    def attention(self) -> None:
        impl = self.d.get("attn_implementation")
        legacy = [k for k in ("flash_attention", "sdp_attention", "xformers_attention", "flex_attention",
                              "eager_attention") if self.d.get(k) is True]
        if len(legacy) > 1:
            self.err([legacy[1]], f"only one attention flag may be set; found {', '.join(legacy)}",
                     code="contradiction")
            return
        if impl is None and legacy:
            impl = {"flash_attention": "flash_attention_2", "sdp_attention": "sdpa",
                    "xformers_attention": "xformers", "flex_attention": "flex_attention",
                    "eager_attention": "eager"}[legacy[0]]
        key = "attn_implementation" if self.d.get("attn_implementation") \
            else (legacy[0] if legacy else "attn_implementation")
        if impl is None:
            self.put("model.attn_implementation", "sdpa")
            return
        impl = str(impl)
        if impl in ATTN:
            out = ATTN[impl]
        elif impl in ("xformers", "flex_attention"):
            out = "sdpa"
            self.warn([key], f"{impl} attention becomes sdpa: the same attention, a different kernel",
                      code="axolotl-differs")
        elif "flash-attn3" in impl or "flash_attn3" in impl:
            out = "flash_attention_3"
            self.warn([key], f"the hub kernel {impl} becomes transformers' flash_attention_3",
                      code="axolotl-differs")
        else:
            self.err([key], f"attention implementation {impl!r} is not supported",
                     expected=" | ".join([*ATTN, "xformers", "flex_attention"]))
            return
        self.put("model.attn_implementation", out, key)

    # -- adapter -------------------------------------------------------------------------------------
    def adapter(self) -> None:
        a = self.d.get("adapter")
        in4, in8 = self.d.get("load_in_4bit") is True, self.d.get("load_in_8bit") is True
        if a in (None, ""):
            if in4 or in8:
                k = "load_in_4bit" if in4 else "load_in_8bit"
                self.err([k], "quantized loading needs an adapter (Axolotl rejects this too)", code="contradiction",
                         hint="set adapter: qlora, or remove the load_in_* flag for a full fine-tune")
            lora_set = [k for k in ("lora_r", "lora_alpha", "lora_target_modules", "lora_target_linear",
                                    "lora_target_parameters", "lora_modules_to_save") if not _off(self.d.get(k))]
            if lora_set:
                self.warn([lora_set[0]], f"{', '.join(lora_set)} have no effect without `adapter` (a full "
                          "fine-tune)")
            self.put("adapter.type", "none", *(["adapter"] if "adapter" in self.d else []))
            return
        if a not in ("lora", "qlora"):
            self.err(["adapter"], f"adapter {a!r} is not supported", expected="lora | qlora | (none)")
            return
        if in8 and in4:
            self.err(["load_in_8bit"], "load_in_8bit and load_in_4bit are both true", code="contradiction")
            return
        if in8:
            self.warn(["load_in_8bit"], "8-bit base weights are a memory saving loft does not offer: loft trains "
                      "the same LoRA adapter on unquantized weights (model.dtype), which needs more GPU memory "
                      "(see the estimate)", code="axolotl-differs")
        kind = "qlora" if (a == "qlora" or in4) else "lora"
        if a == "lora" and in4:
            self.warn(["load_in_4bit"], "lora on 4-bit weights is QLoRA: translated to adapter.type: qlora",
                      code="axolotl-differs")
        if a == "qlora" and not in4:
            self.warn(["adapter"], "Axolotl requires load_in_4bit: true for qlora; loft's qlora always loads "
                      "4-bit weights", code="axolotl-differs")
        self.put("adapter.type", kind, "adapter", *(["load_in_4bit"] if in4 else []))
        r, alpha = self.d.get("lora_r"), self.d.get("lora_alpha")
        if r is None:
            self.err(["adapter"], "lora_r is required with an adapter", code="missing-key", expected="lora_r: 16")
        elif not isinstance(r, int) or isinstance(r, bool) or r < 1:
            self.err(["lora_r"], f"expected a positive integer, got {r!r}", code="type")
        else:
            self.put("adapter.r", r, "lora_r")
        if alpha is not None:
            if _num(alpha) is None:
                self.err(["lora_alpha"], f"expected a number, got {alpha!r}", code="type")
            else:
                a_num = _num(alpha)
                assert a_num is not None
                self.put("adapter.alpha", int(a_num) if a_num.is_integer() else a_num, "lora_alpha")
        elif r is not None:
            self.warn(["lora_r"], "lora_alpha is not set: PEFT's default alpha is 8", code="axolotl-default")
            self.put("adapter.alpha", 8)
        drop = self.d.get("lora_dropout")
        dv = _num(drop) if drop is not None else 0.0
        if dv is None:
            self.err(["lora_dropout"], f"expected a number, got {drop!r}", code="type")
        else:
            self.put("adapter.dropout", dv, *(["lora_dropout"] if "lora_dropout" in self.d else []))
        tm, linear = self.d.get("lora_target_modules"), self.d.get("lora_target_linear")
        if linear is True:
            self.put("adapter.target_modules", "all-linear", "lora_target_linear")
            if tm:
                self.warn(["lora_target_modules"], "lora_target_linear: true already targets every linear layer; "
                          "the listed modules are included", code="axolotl-differs")
        elif isinstance(tm, list) and tm:
            self.put("adapter.target_modules", [str(x) for x in tm], "lora_target_modules")
        elif isinstance(tm, str) and tm:
            self.put("adapter.target_modules", tm, "lora_target_modules")
        elif self.d.get("lora_target_parameters"):
            self.put("adapter.target_modules", [], "lora_target_parameters")  # only the expert tensors
        else:
            self.err(["adapter"], "no LoRA targets: set lora_target_linear: true or lora_target_modules",
                     code="missing-key", hint="Axolotl would fall back to PEFT's per-architecture default, "
                     "which loft does not guess")
        for key, out in (("lora_target_parameters", "adapter.target_parameters"),
                         ("lora_modules_to_save", "adapter.modules_to_save")):
            v = self.d.get(key)
            if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
                if v:
                    self.put(out, list(dict.fromkeys(str(x) for x in v)), key)
            elif v is not None:
                self.err([key], "must be a list of names", code="type")
        for key, out in (("peft_use_rslora", "adapter.rslora"), ("peft_use_dora", "adapter.dora")):
            if self.d.get(key) is True:
                self.put(out, True, key)

    # -- data ----------------------------------------------------------------------------------------
    def datasets(self) -> None:
        raw = self.d.get("datasets")
        pre = self.d.get("pretraining_dataset")
        entries: list[tuple[str, int, Any]] = []
        if isinstance(raw, list):
            entries += [("datasets", i, ds) for i, ds in enumerate(raw)]
        elif raw is not None:
            self.err(["datasets"], "must be a list of datasets", code="type")
        if isinstance(pre, list):
            entries += [("pretraining_dataset", i, ds) for i, ds in enumerate(pre)]
        elif pre is not None:
            self.err(["pretraining_dataset"], "must be a list of datasets", code="type")
        if not entries:
            if raw is None and pre is None:
                self.err([], "no `datasets` (or `pretraining_dataset`) to train on", code="missing-key")
            return
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        templates: dict[str, tuple[str, int]] = {}
        formats: set[str] = set()
        for top, i, ds in entries:
            loc: list[object] = [top, i]
            if not isinstance(ds, dict):
                self.err(loc, "each dataset must be a mapping with at least `path` and `type`", code="type")
                continue
            item = self.dataset(loc, ds, pretraining=(top == "pretraining_dataset"))
            if item is None:
                continue
            tmpl = ds.get("chat_template")
            if isinstance(tmpl, str) and tmpl:
                templates.setdefault(tmpl, (top, i))
            formats.add(item["format"])
            base = item.pop("_stem")
            name, n = base, 2
            while name in names:
                name, n = f"{base}-{n}", n + 1
            names.add(name)
            out.append({"name": name, **item})
        if out and len(out) == len(entries):
            self.put("data.datasets", out, *sorted({top for top, _, _ in entries}))
        self.template(templates, formats)
        vss = self.d.get("val_set_size")
        if vss is not None:
            v = _num(vss)
            if v is None or v < 0:
                self.err(["val_set_size"], f"expected a fraction (0 to 1) or a row count, got {vss!r}", code="type")
            else:
                self.put("data.eval_split", int(v) if v >= 1 else v, "val_set_size")
        nproc = self.d.get("dataset_processes", self.d.get("dataset_num_proc"))
        if isinstance(nproc, int) and not isinstance(nproc, bool) and nproc > 0:
            self.put("data.num_proc", nproc, "dataset_processes")

    def dataset(self, loc: list[object], ds: dict[str, Any], pretraining: bool) -> dict[str, Any] | None:
        """One Axolotl dataset entry -> one loft dataset (without its unique name yet)."""
        bad = False
        for k, v in ds.items():
            kind = K.DATASET_KEYS.get(k)
            if kind is None:
                hint = did_you_mean(k, list(K.DATASET_KEYS))
                self.err([*loc, k], "is not an Axolotl dataset key", code="unknown-key", hint=hint)
                bad = True
            elif kind == "unsupported" and not _off(v):
                why = {"drop_system_message": "dropping system turns is not supported",
                       "conversation": "fastchat conversation templates are not supported; use type: chat_template",
                       "field_system": "a custom system field is not supported"}.get(
                    k, "this dataset option is not supported")
                self.err([*loc, k], f"is not supported: {why}")
                bad = True
            elif kind == "no-effect" and not _off(v):
                self.warn([*loc, k], "has no effect in loft (the file format is taken from the extension)"
                          if k == "ds_type" else "has no effect in loft")
        path = ds.get("path")
        if not isinstance(path, str) or not path.strip() or path.startswith("<"):
            self.err([*loc, "path"] if "path" in ds else loc, f"dataset path {path!r} is missing or a placeholder",
                     code="missing-key", expected="a hub dataset id or a local file")
            return None
        typ = ds.get("type", "pretrain" if pretraining else None)
        if isinstance(typ, dict):
            self.err([*loc, "type"], "user-defined prompt formats are not supported", hint="use alpaca, "
                     "completion, input_output or chat_template")
            return None
        if typ is None:
            self.err([*loc, "type"] if "type" in ds else loc, "every dataset needs a `type`", code="missing-key",
                     expected=" | ".join(DATASET_FORMATS))
            return None
        typ = str(typ)
        item: dict[str, Any] = {"path": path.strip()}
        stem = PurePosixPath(path.strip().rstrip("/")).name
        for ext in (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt"):
            if stem.endswith(ext):
                stem = stem[: -len(ext)]
        item["_stem"] = safe_name(stem, "data")
        base, _, style = typ.partition(":")
        base = base.split(".")[0] if base.startswith("sharegpt") else base
        if base == "chat_template" and typ not in ("chat_template", "chat_template.default"):
            self.err([*loc, "type"], f"dataset type {typ!r} is not supported", expected="chat_template")
            return None
        if typ == "chat_template.default" and not self.d.get("rl"):
            typ = base = "chat_template"
        if base == "chat_template":
            item["format"] = "messages"
            self.messages(loc, ds, item)
        elif base == "sharegpt":
            item["format"] = "sharegpt"
            self.messages(loc, ds, item)
            self.warn([*loc, "type"], "Axolotl removed `sharegpt` types (use chat_template); loft still reads "
                      "ShareGPT rows (conversations / from / value)", code="axolotl-differs")
        elif base == "alpaca" and not style:
            item["format"] = "alpaca"
            fields = {f: ds[f"field_{f}"] for f in ("instruction", "input", "output")
                      if isinstance(ds.get(f"field_{f}"), str)}
            if fields:
                item["fields"] = fields
        elif base == "completion":
            item["format"] = "completion"
            if isinstance(ds.get("field"), str) and ds["field"] != "text":
                item["fields"] = {"text": ds["field"]}
        elif base == "pretrain":
            item["format"] = "completion"
            col = ds.get("text_column")
            if isinstance(col, str) and col != "text":
                item["fields"] = {"text": col}
        elif base == "input_output":
            item["format"] = "input_output"
        else:
            self.err([*loc, "type"], f"dataset type {typ!r} is not supported",
                     expected="chat_template | alpaca | completion | input_output | sharegpt",
                     hint=did_you_mean(typ, DATASET_FORMATS))
            return None
        relevant = _TYPE_KEYS.get(base, ())
        for k, v in ds.items():
            if k in _TYPE_SPECIFIC and k not in relevant and not _off(v):
                self.warn([*loc, k], f"has no effect with type: {typ} (Axolotl ignores it too)",
                          code="axolotl-ignored")
        jinja = ds.get("chat_template_jinja")
        if jinja and jinja != self.d.get("chat_template_jinja"):
            self.err([*loc, "chat_template_jinja"], "a per-dataset Jinja template is not supported: loft renders "
                     "every dataset with one template", hint="set chat_template_jinja at the top level")
            bad = True
        split = ds.get("split")
        if split is not None:
            self.split(loc, str(split), item)
        if ds.get("revision"):
            item["revision"] = str(ds["revision"])
        self.load_options(loc, ds, item, pretraining)
        if ds.get("trust_remote_code") is True:
            self.err([*loc, "trust_remote_code"], "dataset loading scripts are not supported (remote code)")
            bad = True
        if self.d.get("train_on_inputs") is True and "roles_to_train" not in item and \
                item["format"] in ("messages", "sharegpt", "alpaca", "input_output"):
            item["roles_to_train"] = ["system", "user", "assistant", "tool"]
            self.sources.setdefault("data.datasets", []).append("train_on_inputs")
        return None if bad else item

    def load_options(self, loc: list[object], ds: dict[str, Any], item: dict[str, Any], pretraining: bool) -> None:
        """`name` (hub configuration) and `data_files` go to datasets.load_dataset, as in Axolotl."""
        name, files = ds.get("name"), ds.get("data_files")
        if isinstance(name, str) and name:
            item["config_name"] = name
        elif name is not None:
            self.err([*loc, "name"], "must be the hub dataset's configuration name", code="type")
        if isinstance(files, str) and files:
            item["data_files"] = files
        elif isinstance(files, list) and files and all(isinstance(f, str) and f for f in files):
            item["data_files"] = [str(f) for f in files]
        elif files is not None:
            self.err([*loc, "data_files"], "must be a file path or a list of file paths", code="type")
        if pretraining:
            self.warn(loc, "Axolotl streams pretraining_dataset; loft downloads the split and prepares it before "
                      "training (the same texts, cut into sequence_len chunks); bound it with split: train[:N]",
                      code="axolotl-differs")

    def messages(self, loc: list[object], ds: dict[str, Any], item: dict[str, Any]) -> None:
        fm = ds.get("field_messages")
        if isinstance(fm, str) and fm:
            item["field_messages"] = fm
        mapping: dict[str, str] = {}
        mpm = ds.get("message_property_mappings")
        if isinstance(mpm, dict):
            mapping.update({str(k): str(v) for k, v in mpm.items() if v is not None})
        elif mpm is not None:
            self.err([*loc, "message_property_mappings"], "must be a mapping such as {role: from, content: value}",
                     code="type")
        for legacy, prop in (("message_field_role", "role"), ("message_field_content", "content")):
            v = ds.get(legacy)
            if isinstance(v, str) and v:
                if prop in mapping and mapping[prop] != v:
                    self.err([*loc, legacy], f"contradicts message_property_mappings.{prop}", code="contradiction")
                mapping[prop] = v
        if isinstance(ds.get("field_thinking"), str):
            mapping[str(ds.get("template_thinking_key") or "reasoning_content")] = ds["field_thinking"]
        if mapping and mapping != {"role": "role", "content": "content"}:
            item["message_fields"] = {"role": "role", "content": "content", **mapping}
        roles = ds.get("roles")
        if isinstance(roles, dict) and roles:
            out: dict[str, str] = {}
            for target, srcs in roles.items():
                for s in (srcs if isinstance(srcs, list) else [srcs]):
                    out[str(s)] = str(target)
            item["roles"] = out
        rtt = ds.get("roles_to_train")
        if isinstance(rtt, list):
            item["roles_to_train"] = [str(r) for r in rtt]
        eos = ds.get("train_on_eos")
        if eos is not None:
            if eos not in ("turn", "last", "all", "none"):
                self.err([*loc, "train_on_eos"], f"expected turn, last or all, got {eos!r}", code="type")
            else:
                item["train_on_eos"] = eos

    def split(self, loc: list[object], split: str, item: dict[str, Any]) -> None:
        """'train[:20%]' -> split train, subset 0.2; 'train[:500]' -> subset 500 (the first rows)."""
        m = _SPLIT.match(split)
        if not m:
            self.err([*loc, "split"], f"cannot read the split {split!r}", code="type",
                     expected="train, or train[:N], train[:N%]")
            return
        item["split"] = m.group("split")
        start, end = (m.group("start") or "").strip(), (m.group("end") or "").strip()
        if m.group(2) is None:
            return
        if start:
            self.err([*loc, "split"], f"a slice that skips rows ({split!r}) is not supported",
                     hint="loft takes the first rows (subset)")
            return
        if not end:
            return
        try:
            if end.endswith("%"):
                frac = float(end[:-1]) / 100
                if not 0 < frac <= 1:
                    raise ValueError
                if frac < 1:
                    item["subset"] = frac
            else:
                item["subset"] = int(end)
        except ValueError:
            self.err([*loc, "split"], f"cannot read the slice in {split!r}", code="type")

    def template(self, per_dataset: dict[str, tuple[str, int]], formats: set[str]) -> None:
        glob = self.d.get("chat_template")
        jinja = self.d.get("chat_template_jinja")
        names = set(per_dataset)
        if isinstance(glob, str) and glob:
            names.add(glob)
        if len(names) > 1:
            top, i = next(iter(per_dataset.values()))
            self.err([top, i, "chat_template"], f"datasets use different chat templates ({', '.join(sorted(names))});"
                     " loft renders every dataset with one template", code="contradiction")
            return
        src = "chat_template"
        name = next(iter(names)) if names else None
        if isinstance(jinja, str) and jinja and (name in (None, "jinja")):
            if "\n" in jinja or "{%" in jinja or "{{" in jinja:
                self.err(["chat_template_jinja"], "an inline Jinja template is not supported in a translated "
                         "config", hint="save it as a .jinja file and set chat_template_jinja to its path, or "
                         "run `loftc convert` and point `template:` at the file")
                return
            self.put("template", jinja, "chat_template_jinja")
            return
        if name == "jinja":
            self.err(["chat_template"], "chat_template: jinja needs chat_template_jinja", code="missing-key")
            return
        if "alpaca" in formats and name in (None, "tokenizer_default", "alpaca"):
            if len(formats - {"alpaca", "completion"}) > 0:
                self.err(["datasets"], "Axolotl formats alpaca rows with the Alpaca prompt and chat rows with the "
                         "chat template; loft renders every dataset with one template", code="contradiction")
                return
            if "alpaca" in library_templates():
                self.put("template", "alpaca", *(["chat_template"] if glob else ["datasets"]))
            else:
                self.warn(["datasets"], "Axolotl formats alpaca rows with the Alpaca prompt (### Instruction: / "
                          "### Response:); loft's library has no alpaca template, so loft renders them with the "
                          "model's chat template (template: auto)", code="axolotl-differs")
                self.put("template", "auto")
            return
        if name is None or name == "tokenizer_default":
            self.put("template", "auto", *([src] if name else []))
            return
        if name.startswith("tokenizer_default_fallback_"):
            self.warn([src], f"{name}: loft uses the model's own template (template: auto); when the model has "
                      "none, set `template:` explicitly", code="axolotl-differs")
            self.put("template", "auto", src)
            return
        loc: list[object] = [src] if glob else [*per_dataset[name], "chat_template"]
        if name in _VISION_TEMPLATES:
            self.err(loc, f"{name} is a vision chat template: multimodal training is not supported")
            return
        lib = library_templates()
        for cand in (*TEMPLATE_NAMES.get(name, ()), name):
            if cand in lib:
                self.put("template", lib[cand], src)
                return
        if name in _FAMILY_OWN_TEMPLATES:
            self.warn(loc, f"Axolotl's {name!r} template is the model family's own chat template; loft's library "
                      "has no copy, so loft uses the tokenizer's template (template: auto)", code="axolotl-differs")
            self.put("template", "auto", src)
            return
        self.err(loc, f"loft's template library has no equivalent of Axolotl's {name!r} chat template",
                 expected=", ".join(sorted(set(lib.values()))),
                 hint="use chat_template: tokenizer_default to train with the model's own template")

    # -- sequence and training -----------------------------------------------------------------------
    def sequence(self) -> None:
        sl = self.d.get("sequence_len", 512)
        if not isinstance(sl, int) or isinstance(sl, bool) or sl < 1:
            self.err(["sequence_len"], f"expected a positive integer, got {sl!r}", code="type")
        else:
            self.put("sequence.max_length", sl, *(["sequence_len"] if "sequence_len" in self.d else []))
        self.put("sequence.packing", self.d.get("sample_packing") is True,
                 *(["sample_packing"] if "sample_packing" in self.d else []))
        # Axolotl drops samples longer than sequence_len (excess_length_strategy defaults to drop); a
        # streamed pretraining corpus is cut into sequence_len chunks instead.
        strategy = {"drop": "drop", "truncate": "truncate"}.get(str(self.d.get("excess_length_strategy") or "drop"))
        if strategy is None:
            self.err(["excess_length_strategy"], "expected drop or truncate", code="type")
            return
        if self.d.get("pretraining_dataset") and not self.d.get("datasets"):
            strategy = "split"
        self.put("sequence.strategy", strategy)
        if self.d.get("pad_to_sequence_len") is True:
            self.warn(["pad_to_sequence_len"], "padding to sequence_len has no effect on the trained model "
                      "(padding carries no loss); loft pads only as needed")

    def training(self) -> None:
        mbs = self.d.get("micro_batch_size", 1)
        gas = self.d.get("gradient_accumulation_steps")
        bs = self.d.get("batch_size")
        for k, v in (("micro_batch_size", mbs), ("gradient_accumulation_steps", gas), ("batch_size", bs)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                self.err([k], f"expected a positive integer, got {v!r}", code="type")
                return
        self.put("training.micro_batch_size", mbs, *(["micro_batch_size"] if "micro_batch_size" in self.d else []))
        if bs is not None and gas is not None:
            self.err(["batch_size"], "set only one of gradient_accumulation_steps and batch_size (Axolotl "
                     "rejects both too)", code="contradiction")
        elif bs is not None:
            # Axolotl: gradient_accumulation_steps = batch_size // micro_batch_size, per device (its trainer
            # then multiplies batch_size by the world size), so batch_size is NOT divided by the GPU count.
            accum = max(1, bs // mbs)
            if bs % mbs:
                self.warn(["batch_size"], f"batch_size {bs} is not a multiple of micro_batch_size {mbs}: Axolotl "
                          f"and loft accumulate {accum} micro-batches ({accum * mbs} samples per device)",
                          code="axolotl-differs")
            self.put("training.gradient_accumulation_steps", accum, "batch_size", "micro_batch_size")
        else:
            self.put("training.gradient_accumulation_steps", gas if gas is not None else 1,
                     *(["gradient_accumulation_steps"] if gas is not None else []))
        ne = self.d.get("num_epochs", 1)
        nv = _num(ne)
        if nv is None or nv <= 0:
            self.err(["num_epochs"], f"expected a positive number, got {ne!r}", code="type")
        else:
            self.put("training.epochs", int(nv) if nv.is_integer() else nv, *(["num_epochs"] if "num_epochs"
                                                                              in self.d else []))
        if self.d.get("max_steps") is not None:
            ms = self.d["max_steps"]
            if not isinstance(ms, int) or isinstance(ms, bool) or ms < 1:
                self.err(["max_steps"], f"expected a positive integer, got {ms!r}", code="type")
            else:
                self.put("training.max_steps", ms, "max_steps")
        ws, wr = self.d.get("warmup_steps"), self.d.get("warmup_ratio")
        if ws is not None and wr is not None:
            self.err(["warmup_steps"], "warmup_steps and warmup_ratio are both set (Axolotl rejects this too)",
                     code="contradiction", hint="keep one")
        elif ws is not None:
            wv = _num(ws)
            if wv is None or wv < 0 or not wv.is_integer():
                hint = f"did you mean warmup_ratio: {ws}?" if wv is not None and 0 < wv < 1 else ""
                self.err(["warmup_steps"], f"must be a whole number of steps, got {ws!r}", code="type", hint=hint)
            else:
                self.put("training.warmup_steps", int(wv), "warmup_steps")
        elif wr is not None:
            wv = _num(wr)
            if wv is None or not 0 <= wv <= 1:
                self.err(["warmup_ratio"], f"expected a fraction between 0 and 1, got {wr!r}", code="type")
            else:
                self.put("training.warmup_ratio", wv, "warmup_ratio")
        else:
            self.put("training.warmup_ratio", 0.03)
        lr = self.d.get("learning_rate")
        lv = _num(lr)
        if lr is None:
            self.err([], "`learning_rate` is required (Axolotl requires it too)", code="missing-key")
        elif lv is None or lv <= 0:
            self.err(["learning_rate"], f"expected a positive number, got {lr!r}", code="type")
        else:
            self.put("training.learning_rate", lv, "learning_rate")
        for key, out in (("weight_decay", "training.weight_decay"), ("max_grad_norm", "training.max_grad_norm"),
                         ("adam_beta1", "training.adam_beta1"), ("adam_beta2", "training.adam_beta2"),
                         ("adam_epsilon", "training.adam_epsilon")):
            v = self.d.get(key)
            if v is None:
                continue
            fv = _num(v)
            if fv is None or fv < 0:
                self.err([key], f"expected a non-negative number, got {v!r}", code="type")
            else:
                self.put(out, fv, key)
        if "weight_decay" not in self.d:
            self.put("training.weight_decay", 0.0)
        opt = self.d.get("optimizer") or "adamw_torch_fused"
        if opt in OPTIMIZERS:
            name, note = OPTIMIZERS[str(opt)]
            self.put("training.optimizer", name, *(["optimizer"] if "optimizer" in self.d else []))
            if note:
                self.warn(["optimizer"], note, code="axolotl-differs")
        else:
            self.err(["optimizer"], f"optimizer {opt!r} is not supported", expected=", ".join(sorted(OPTIMIZERS)),
                     hint=did_you_mean(str(opt), list(OPTIMIZERS)))
        sch = self.d.get("lr_scheduler") or "cosine"
        floor = self.d.get("cosine_min_lr_ratio")
        if floor is not None and sch == "cosine":
            fv = _num(floor)
            if fv is None or not 0 <= fv <= 1:
                self.err(["cosine_min_lr_ratio"], f"expected a fraction of learning_rate in [0, 1], got {floor!r}",
                         code="type")
            else:  # Axolotl's cosine-with-floor = transformers' cosine_with_min_lr(min_lr_rate)
                sch = "cosine_with_min_lr"
                self.put("training.min_lr_ratio", fv, "cosine_min_lr_ratio")
        elif floor is not None:
            self.warn(["cosine_min_lr_ratio"], f"only applies to lr_scheduler: cosine (here {sch}); Axolotl "
                      "ignores it, so does loft", code="axolotl-ignored")
        if sch in SCHEDULERS:
            self.put("training.lr_scheduler", sch, *(["lr_scheduler"] if "lr_scheduler" in self.d else []),
                     *(["cosine_min_lr_ratio"] if sch == "cosine_with_min_lr" and floor is not None else []))
        else:
            self.err(["lr_scheduler"], f"lr_scheduler {sch!r} is not supported", expected=", ".join(SCHEDULERS),
                     hint=did_you_mean(str(sch), SCHEDULERS))
        for key, out in (("seed", "training.seed"), ("logging_steps", "training.logging_steps"),
                         ("save_total_limit", "training.save_total_limit")):
            v = self.d.get(key)
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                self.err([key], f"expected a whole number, got {v!r}", code="type")
            else:
                self.put(out, v, key)
        gc = self.d.get("gradient_checkpointing")
        if gc in ("offload", "offload_disk", "unsloth"):
            self.warn(["gradient_checkpointing"], f"gradient_checkpointing: {gc} becomes plain gradient "
                      "checkpointing (same math, activations stay on the GPU)", code="axolotl-differs")
        self.put("training.gradient_checkpointing", bool(gc), *(["gradient_checkpointing"]
                                                                if "gradient_checkpointing" in self.d else []))
        gck = self.d.get("gradient_checkpointing_kwargs")
        if isinstance(gck, dict) and gck.get("use_reentrant") is True:
            self.warn(["gradient_checkpointing_kwargs"], "loft uses non-reentrant checkpointing (the same "
                      "gradients)")
        if self.d.get("eval_max_new_tokens"):
            self.put("eval.max_new_tokens", self.d["eval_max_new_tokens"], "eval_max_new_tokens")
        esp = self.d.get("early_stopping_patience")
        if esp is not None and esp is not False and esp != 0:
            if not isinstance(esp, int) or isinstance(esp, bool) or esp < 1:
                self.err(["early_stopping_patience"], f"expected a positive whole number, got {esp!r}", code="type")
            else:
                self.put("training.early_stopping_patience", esp, "early_stopping_patience")
        self.unfrozen()

    def unfrozen(self) -> None:
        """`unfrozen_parameters`: Axolotl escapes the periods and searches each pattern in parameter names."""
        up = self.d.get("unfrozen_parameters")
        if up is None or up == []:
            return
        if isinstance(up, str):
            up = [up]
        if not isinstance(up, list) or not all(isinstance(p, str) and p for p in up):
            self.err(["unfrozen_parameters"], "must be a list of parameter-name patterns", code="type")
            return
        if self.d.get("adapter"):
            self.err(["unfrozen_parameters"], "is supported for a full fine-tune only, not with adapter: "
                     f"{self.d.get('adapter')}: Axolotl applies the patterns after the adapter wraps the model "
                     "(names then start with base_model.model.), so they freeze or unfreeze adapter and base "
                     "tensors alike", hint="drop the adapter for a partial full fine-tune, or use "
                     "lora_modules_to_save to train whole modules next to LoRA")
            return
        out = []
        for i, pattern in enumerate(up):
            if _RANGE.search(pattern):
                self.err(["unfrozen_parameters", i], "a parameter index range (`$[:32000]`) trains part of a "
                         "tensor; loft trains whole parameters only")
                return
            out.append(pattern.replace(".", r"\."))
        self.put("training.unfrozen_parameters", out, "unfrozen_parameters")

    def cadence(self) -> None:
        """evals_per_epoch / saves_per_epoch / eval_steps / save_steps and the *_strategy keys."""
        vss = _num(self.d.get("val_set_size")) or 0.0
        for what in ("eval", "save"):
            steps_k, per_k, strat_k = f"{what}_steps", f"{what}s_per_epoch", f"{what}_strategy"
            steps, per, strat = self.d.get(steps_k), self.d.get(per_k), self.d.get(strat_k)
            if steps is not None and per:
                self.err([per_k], f"{steps_k} and {per_k} are both set (Axolotl rejects this too)",
                         code="contradiction", hint="keep one")
                continue
            if strat is not None and strat not in ("steps", "epoch", "no", "best"):
                self.err([strat_k], f"expected steps, epoch or no, got {strat!r}", code="type")
                continue
            if strat == "no":
                self.warn([strat_k], f"{strat_k}: no — loft {'evaluates when an eval split exists' if what == 'eval' else 'always saves checkpoints'}; "
                          "this has no effect on the trained model")
                continue
            if strat == "best":
                self.warn([strat_k], "saving only the best checkpoint is not supported; loft saves every "
                          f"{what} interval (no effect on the trained model)")
            if what == "eval" and vss == 0 and (steps or per):
                self.warn([steps_k if steps else per_k], "has no effect: there is no eval split (val_set_size is 0)")
                continue
            if steps is not None:
                sv = _num(steps)
                if sv is None or sv <= 0:
                    self.err([steps_k], f"expected a positive number, got {steps!r}", code="type")
                elif not sv.is_integer():
                    self.err([steps_k], f"a fractional {steps_k} ({steps}) is not supported",
                             hint=f"use {per_k} or a whole number of steps")
                else:
                    self.put(f"training.{steps_k}", int(sv), steps_k)
            elif per is not None:
                if not isinstance(per, int) or isinstance(per, bool) or per < 0:
                    self.err([per_k], f"expected a whole number, got {per!r}", code="type")
                elif per > 1:
                    self.put(f"training.{per_k}", per, per_k)
                # 1 (and Axolotl's 0 = unset) is loft's default: once per epoch
            elif strat == "steps":
                self.err([strat_k], f"{strat_k}: steps needs {steps_k}", code="missing-key")

    # -- distributed ---------------------------------------------------------------------------------
    def distributed(self) -> None:
        ds = self.d.get("deepspeed")
        fsdp_list, fsdp_cfg = self.d.get("fsdp"), self.d.get("fsdp_config")
        fsdp_on = bool(fsdp_list) or bool(fsdp_cfg)
        if ds and fsdp_on:
            self.err(["deepspeed"], "DeepSpeed and FSDP are both configured", code="contradiction",
                     hint="keep one")
            return
        if ds:
            self.deepspeed(ds)
        if fsdp_on:
            self.fsdp(fsdp_list, fsdp_cfg if isinstance(fsdp_cfg, dict) else {})

    def deepspeed(self, ds: Any) -> None:
        data: dict[str, Any]
        if isinstance(ds, dict):
            data = ds
            label = "the inline deepspeed config"
        elif isinstance(ds, str):
            found, label = self.read_deepspeed(ds)
            if found is None:
                return
            data = found
        else:
            self.err(["deepspeed"], "expected a path to a DeepSpeed JSON file or a mapping", code="type")
            return
        zero = data.get("zero_optimization") if isinstance(data.get("zero_optimization"), dict) else data
        assert isinstance(zero, dict)
        stage = zero.get("stage", 0)
        if stage not in (0, 1, 2, 3):
            self.err(["deepspeed"], f"{label}: ZeRO stage {stage!r} is not 0-3", code="type")
            return

        def offloaded(key: str) -> bool:
            v = zero.get(key)
            if isinstance(v, dict):
                return str(v.get("device", "none")).lower() in ("cpu", "nvme")
            return bool(v) if isinstance(v, bool) else False

        self.put("deepspeed.stage", stage, "deepspeed")
        self.put("deepspeed.offload_optimizer", offloaded("offload_optimizer"), "deepspeed")
        self.put("deepspeed.offload_params", offloaded("offload_param"), "deepspeed")
        if "compile" in data:
            self.warn(["deepspeed"], f"{label} enables torch.compile: a speed setting loft does not copy")
        for block in ("optimizer", "scheduler"):
            if isinstance(data.get(block), dict):
                self.err(["deepspeed"], f"{label} defines its own {block}, which would replace the one the config "
                         "names; loft renders ds_config.json from training.* and does not copy it",
                         hint=f"remove the {block} block and set it with Axolotl's `optimizer` / `lr_scheduler` keys")
        fixed = [k for k in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                             "gradient_clipping") if k in data and data[k] != "auto"]
        if fixed:
            self.warn(["deepspeed"], f"{label} fixes {', '.join(fixed)}; loft's ds_config.json takes these from "
                      "training.* (the values in the Axolotl config)", code="axolotl-differs")

    def read_deepspeed(self, ref: str) -> tuple[dict[str, Any] | None, str]:
        """Find the JSON next to the config or in an Axolotl checkout above it; else Axolotl's known files."""
        rel = PurePosixPath(ref)
        if rel.is_absolute() or ".." in rel.parts or rel.suffix != ".json":
            self.err(["deepspeed"], f"{ref!r}: expected a relative path to a .json file inside the project",
                     code="path")
            return None, ref
        here = Path(self.doc.path).resolve().parent
        for base in (here, *here.parents):
            p = base / rel
            if p.is_file():
                try:
                    data = json.loads(p.read_text("utf-8"))
                except (OSError, ValueError) as e:
                    self.err(["deepspeed"], f"cannot read {p}: {e}", code="path")
                    return None, ref
                if not isinstance(data, dict):
                    self.err(["deepspeed"], f"{p} is not a JSON object", code="type")
                    return None, ref
                return data, ref
        known = KNOWN_DEEPSPEED.get(rel.name)
        if known is not None and rel.parent.name in ("deepspeed_configs", ""):
            self.warn(["deepspeed"], f"{ref} was not found next to the config; using Axolotl's published "
                      f"{rel.name} (ZeRO-{known['stage']}, optimizer offload: {known['offload_optimizer']}, "
                      f"parameter offload: {known['offload_params']})", code="axolotl-deepspeed-builtin")
            return {"zero_optimization": {"stage": known["stage"],
                                          "offload_optimizer": {"device": "cpu" if known["offload_optimizer"] else "none"},
                                          "offload_param": {"device": "cpu" if known["offload_params"] else "none"}}}, ref
        self.err(["deepspeed"], f"DeepSpeed config {ref!r} was not found next to the config or above it",
                 code="path", hint="copy the JSON next to the config, or set the ZeRO stage in loft's "
                 "`deepspeed:` section after `loftc convert`")
        return None, ref

    def fsdp(self, fsdp_list: Any, fc: dict[str, Any]) -> None:
        """Axolotl FSDP (1 or 2, prefixed or plain fsdp_config keys) -> loft's fsdp section (accelerate FSDP)."""
        self.put("fsdp.enabled", True, *[k for k in ("fsdp", "fsdp_config") if self.d.get(k)])
        opts: dict[str, tuple[str, Any]] = {}  # plain key -> (original key, value)
        for k, v in fc.items():
            plain = k[5:] if k.startswith("fsdp_") and k != "fsdp_version" else k
            if plain not in K.FSDP_CONFIG_KEYS:
                self.err(["fsdp_config", k], "is not an FSDP option Axolotl reads", code="unknown-key",
                         hint=did_you_mean(plain, list(K.FSDP_CONFIG_KEYS)))
                continue
            opts[plain] = (k, v)
        version = self.d.get("fsdp_version")
        vsrc = "fsdp_version"
        for k in ("fsdp_version", "version"):
            if k in opts:
                version, vsrc = opts[k][1], opts[k][0]
        version = version if version is not None else 1
        if version not in (1, 2):
            self.err(["fsdp_config", vsrc] if vsrc != "fsdp_version" or "fsdp_version" not in self.d
                     else ["fsdp_version"], f"expected FSDP version 1 or 2, got {version!r}", code="type")
            return
        self.put("fsdp.version", version, *([vsrc] if vsrc in self.d or vsrc in fc else []))
        flags = [str(x) for x in fsdp_list] if isinstance(fsdp_list, list) else []
        for f in flags:
            if f not in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "auto_wrap", "offload"):
                self.err(["fsdp"], f"unknown FSDP option {f!r}", code="unknown-key",
                         expected="full_shard | shard_grad_op | hybrid_shard | no_shard | auto_wrap | offload")
        sharding = next((f for f in flags if f in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard")),
                        None)
        reshard = opts.get("reshard_after_forward", (None, None))[1]
        legacy = opts.get("sharding_strategy")
        if legacy is not None:
            lv = str(legacy[1]).lower()
            if version == 2:
                implied = {"full_shard": True, "shard_grad_op": False}.get(lv)
                if reshard is not None and implied is not None and implied != reshard:
                    self.err(["fsdp_config", legacy[0]], f"{legacy[1]} contradicts reshard_after_forward: "
                             f"{reshard}", code="contradiction")
                else:
                    self.warn(["fsdp_config", legacy[0]], "is an FSDP1 key that Axolotl ignores with "
                              "fsdp_version: 2 (FSDP2 uses reshard_after_forward); loft ignores it too",
                              code="axolotl-ignored")
            else:
                sharding = sharding or lv
        if version == 2 and reshard is not None:
            sharding = "full_shard" if reshard else "shard_grad_op"
        sharding = sharding or "full_shard"
        if sharding not in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard"):
            self.err(["fsdp_config"], f"unknown sharding strategy {sharding!r}", code="type")
            return
        self.put("fsdp.sharding", sharding, *(["fsdp"] if flags else []))
        off = opts.get("offload_params", (None, None))[1]
        if "offload" in flags or off is True:
            self.put("fsdp.offload_params", True, *([opts["offload_params"][0]] if off is True else ["fsdp"]))
        sd = opts.get("state_dict_type") or opts.get("final_state_dict_type")
        if sd is None and self.d.get("fsdp_final_state_dict_type"):
            sd = ("fsdp_final_state_dict_type", self.d["fsdp_final_state_dict_type"])
        if sd is not None and sd[1] is not None:
            m = {"FULL_STATE_DICT": "full", "SHARDED_STATE_DICT": "sharded"}.get(str(sd[1]))
            if m is None:
                self.err(["fsdp_config", sd[0]], f"state dict type {sd[1]!r} is not supported",
                         expected="FULL_STATE_DICT | SHARDED_STATE_DICT")
            elif m != "full":
                self.put("fsdp.state_dict_type", m, sd[0])
        awp = opts.get("auto_wrap_policy")
        if awp is not None and awp[1] not in (None, "TRANSFORMER_BASED_WRAP"):
            self.err(["fsdp_config", awp[0]], f"auto wrap policy {awp[1]!r} is not supported",
                     expected="TRANSFORMER_BASED_WRAP")
        cls = opts.get("transformer_layer_cls_to_wrap")
        if cls is not None and cls[1]:
            names = cls[1] if isinstance(cls[1], list) else [c.strip() for c in str(cls[1]).split(",")]
            self.put("fsdp.transformer_layer_cls", [str(n) for n in names if n], cls[0])
        ac = opts.get("activation_checkpointing")
        if ac is not None and ac[1] is True:
            self.put("training.gradient_checkpointing", True, ac[0])
        noeff = [orig for plain, (orig, v) in opts.items()
                 if K.FSDP_CONFIG_KEYS[plain] == "no-effect" and v is not None]
        if noeff:
            self.warn(["fsdp_config", noeff[0]], f"{', '.join(noeff)}: loading and communication settings that "
                      "loft's accelerate FSDP config chooses itself (no effect on the trained model)")
        for plain, (orig, v) in opts.items():
            if K.FSDP_CONFIG_KEYS[plain] == "unsupported" and v is not None:
                self.err(["fsdp_config", orig], "is not supported (size-based wrapping)")

    # -- kernels, tracking, outputs ------------------------------------------------------------------
    def kernels(self) -> None:
        plugins = self.d.get("plugins") or []
        if not isinstance(plugins, list):
            self.err(["plugins"], "must be a list of plugin class paths", code="type")
            return
        liger_keys = [k for k in self.d if k.startswith("liger_")]
        has_liger = has_cce = False
        for i, p in enumerate(plugins):
            p = str(p)
            tail = p.rsplit(".", 1)[-1]
            if tail == "LigerPlugin":
                has_liger = True
            elif tail == "CutCrossEntropyPlugin":
                has_cce = True
            elif tail == "KernelsPlugin":
                self.warn(["plugins", i], "the kernels plugin swaps in faster MoE kernels (same math); loft "
                          "uses transformers' own implementation")
            elif tail in ("ExpertParallelPlugin",):
                self.err(["plugins", i], "expert parallelism is not supported")
            elif tail in ("DiffusionPlugin",):
                self.err(["plugins", i], "diffusion-LM training is not supported")
            elif tail in ("LMEvalPlugin", "SwanLabPlugin"):
                self.warn(["plugins", i], f"{tail} reports results only; loft has its own eval stage")
            else:
                self.err(["plugins", i], f"plugin {p} is not supported: loft cannot tell whether it changes "
                         "training", hint="remove it, or keep using Axolotl for this config")
        on = [k for k in liger_keys if self.d.get(k) is True]
        if has_liger:
            if on:
                self.put("training.kernels.liger", True, "plugins", *on)
                off = [k for k in liger_keys if self.d.get(k) is False]
                if off:
                    self.warn([off[0]], f"loft enables Liger's full kernel set for the architecture; {', '.join(off)}"
                              " cannot be turned off one by one (the kernels compute the same function)",
                              code="axolotl-differs")
            else:
                idx = next(i for i, p in enumerate(plugins) if str(p).endswith("LigerPlugin"))
                self.warn(["plugins", idx], "the Liger plugin is listed but no liger_* option is on: it has no "
                          "effect")
        elif on:
            self.warn([on[0]], f"{', '.join(on)}: Axolotl ignores Liger options unless the LigerPlugin is listed "
                      "in plugins; loft ignores them too", code="axolotl-ignored")
        cce = self.d.get("cut_cross_entropy")
        if has_cce and cce is not False:
            self.put("training.kernels.cut_cross_entropy", True, "plugins",
                     *(["cut_cross_entropy"] if cce else []))
        elif cce is True:
            self.warn(["cut_cross_entropy"], "Axolotl ignores cut_cross_entropy unless the CutCrossEntropyPlugin "
                      "is listed in plugins; loft ignores it too", code="axolotl-ignored")

    def tracking(self) -> None:
        project = self.d.get("wandb_project")
        mode = self.d.get("wandb_mode")
        if self.d.get("use_wandb") is False or mode == "disabled":
            return
        if project:
            wb: dict[str, Any] = {"project": str(project), "api_key_env": "WANDB_API_KEY"}
            if self.d.get("wandb_entity"):
                wb["entity"] = str(self.d["wandb_entity"])
            if mode in ("online", "offline"):
                wb["mode"] = mode
            elif mode is not None:
                self.err(["wandb_mode"], f"expected online, offline or disabled, got {mode!r}", code="type")
            self.put("tracking.wandb", wb, *[k for k in ("wandb_project", "wandb_entity", "wandb_mode")
                                            if self.d.get(k)])
        for k in ("wandb_watch", "wandb_log_model"):
            if not _off(self.d.get(k)) and self.d.get(k) != "false":
                self.warn([k], "not supported by loft's wandb integration (no effect on the trained model)")
        run = self.d.get("wandb_name") or self.d.get("wandb_run_id")
        if run:
            self.put("name", safe_name(str(run), "run"),
                     "wandb_name" if self.d.get("wandb_name") else "wandb_run_id")
        else:
            self.put("name", safe_name(Path(self.doc.path).stem, "run"))
        hub = self.d.get("hub_model_id")
        if hub:
            if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", str(hub)):
                self.put("export.push_to_hub", str(hub), "hub_model_id")
            else:
                self.warn(["hub_model_id"], f"{hub!r} is not a hub repo id (org/name); nothing will be pushed")

    def outputs(self) -> None:
        od = self.d.get("output_dir")
        if isinstance(od, str) and od.strip():
            p = PurePosixPath(od.strip())
            parts = [x for x in p.parts if x not in (".", "")]
            if p.is_absolute() or ".." in parts or not parts:
                self.warn(["output_dir"], f"{od!r} is outside the run bundle; loft writes to <bundle>/out",
                          code="axolotl-differs")
            else:
                self.put("output_dir", "/".join(parts), "output_dir")
        rfc = self.d.get("resume_from_checkpoint")
        if rfc:
            self.err(["resume_from_checkpoint"], "resuming from an outside checkpoint is not supported",
                     hint="loft resumes from the bundle's own complete checkpoints when a run restarts")


_RANGE = re.compile(r"\[\s*-?\d*\s*:\s*-?\d*\s*\]$")  # Axolotl's `name$[start:end]` tensor slice


def dotted(parts: list[object]) -> str:
    return key_path(parts)
