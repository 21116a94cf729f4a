"""Build the model and tokenizer the plan names (shared by train, eval and merge)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..vocab import apply_vocabulary

if TYPE_CHECKING:
    from ..plan import Bundle


class StageError(Exception):
    """A clear, user-facing reason a stage cannot run (printed without a traceback)."""


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def model_source(bundle: Bundle) -> tuple[str, str | None]:
    """(local directory or hub id, revision) of the base model, as the plan recorded it."""
    m = bundle.plan.get("model") or {}
    if m.get("path"):
        return str(bundle.path(m["path"])), None
    if m.get("id"):
        return str(m["id"]), m.get("revision") or bundle.config["model"].get("revision")
    base = bundle.config["model"]["base"]
    local = bundle.path(base)
    return (str(local), None) if local.exists() else (base, bundle.config["model"].get("revision"))


def tokenizer_source(bundle: Bundle) -> tuple[str, str | None]:
    tok = bundle.config["model"].get("tokenizer")
    if not tok:
        return model_source(bundle)
    local = bundle.path(tok)
    return (str(local), None) if local.exists() else (tok, bundle.config["model"].get("revision"))


def chat_template(bundle: Bundle) -> str | None:
    """The bundle's chat template text (plan["template"]["file"]), if the bundle has one."""
    t = bundle.plan.get("template") or {}
    name = t.get("file")
    if not name:
        return None
    path = bundle.path(name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


def check_qlora(bundle: Bundle) -> None:
    """QLoRA needs CUDA and bitsandbytes: say so before any weights are read."""
    if (bundle.config.get("adapter") or {}).get("type") != "qlora":
        return
    import torch

    if not torch.cuda.is_available():
        raise StageError("adapter.type: qlora loads the base model in 4-bit with bitsandbytes, which needs a "
                         "CUDA GPU; none is visible here. Run this bundle on a GPU machine, or use "
                         "adapter.type: lora (or none) for a CPU run")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise StageError("adapter.type: qlora needs the bitsandbytes package: pip install bitsandbytes") from None


FLASH_PACKAGES = {"flash_attention_2": ("flash_attn", "pip install flash-attn --no-build-isolation"),
                  "flash_attention_3": ("flash_attn_interface", "build flash-attention's hopper/ package")}


def check_attention(bundle: Bundle) -> None:
    """flash-attention needs its package and a CUDA GPU: say so before loading (the plan chose it)."""
    import importlib.util

    attn = bundle.config["model"].get("attn_implementation")
    if attn not in FLASH_PACKAGES:
        return
    import torch

    module, how = FLASH_PACKAGES[attn]
    if not torch.cuda.is_available():
        raise StageError(f"model.attn_implementation: {attn} needs a CUDA GPU; none is visible here "
                         "(use sdpa for a CPU run)")
    if importlib.util.find_spec(module) is None:
        raise StageError(f"model.attn_implementation: {attn} needs the {module} package: {how}; or use sdpa")


def load_tokenizer(bundle: Bundle) -> Any:
    from transformers import AutoTokenizer

    src, rev = tokenizer_source(bundle)
    tok = AutoTokenizer.from_pretrained(src, revision=rev,
                                        trust_remote_code=bool(bundle.config["model"].get("trust_remote_code")))
    apply_vocabulary(tok, bundle.config["model"])
    template = chat_template(bundle)
    if template is not None:
        tok.chat_template = template
    return tok


def fit_embeddings(model: Any, tok: Any) -> bool:
    """Grow the embeddings when the tokenizer has more tokens than the model (new special or added tokens)."""
    size = model.get_input_embeddings().weight.shape[0]
    if len(tok) <= size:
        return False
    model.resize_token_embeddings(len(tok))
    return True


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, DTYPES.get(name, "float32"))


def _no_cache(model: Any) -> Any:
    """Training never wants a KV cache, and packed rows depend on it being off: with a cache object present,
    transformers 5.x skips packed-sequence detection from position_ids, so samples packed into one row would
    attend to each other (see tests/runtime/test_train_modes.py::test_training_model_isolates_packed_samples)."""
    model.config.use_cache = False
    return model


def model_config(bundle: Bundle) -> Any:
    """The model's config.json with ``model.config_overrides`` applied (e.g. output_router_logits: true)."""
    from transformers import AutoConfig

    mcfg = bundle.config["model"]
    src, rev = model_source(bundle)
    config = AutoConfig.from_pretrained(src, revision=rev, trust_remote_code=bool(mcfg.get("trust_remote_code")))
    for key, value in (mcfg.get("config_overrides") or {}).items():
        if not hasattr(config, key):
            _warn(f"model.config_overrides.{key}: {type(config).__name__} has no such attribute; set anyway "
                  "(the model code may ignore it)")
        setattr(config, key, value)
        sub = getattr(config, "get_text_config", lambda: config)()
        if sub is not config and hasattr(sub, key):  # multimodal wrappers: the text model reads its own config
            setattr(sub, key, value)
    return config


def _warn(msg: str) -> None:
    import sys

    print(f"[loft] warning: {msg}", file=sys.stderr, flush=True)


def load_kwargs(bundle: Bundle) -> dict[str, Any]:
    """from_pretrained / from_config keyword arguments the plan decides (dtype, attention, remote code)."""
    mcfg = bundle.config["model"]
    kwargs: dict[str, Any] = {"dtype": torch_dtype(mcfg["dtype"]), "trust_remote_code": bool(mcfg["trust_remote_code"])}
    if mcfg["attn_implementation"] != "auto":
        kwargs["attn_implementation"] = mcfg["attn_implementation"]
    return kwargs


def load_base_model(bundle: Bundle, *, for_training: bool = True, device_map: Any = None) -> Any:
    """The base model: pretrained weights, or (``model.init: random``) seeded random weights from config.json."""
    import torch
    from transformers import AutoModelForCausalLM

    mcfg = bundle.config["model"]
    src, rev = model_source(bundle)
    kwargs = load_kwargs(bundle)
    dtype = kwargs["dtype"]
    if mcfg["config_overrides"]:
        kwargs["config"] = model_config(bundle)
    if mcfg["init"] == "random":
        config = kwargs.pop("config", None) or model_config(bundle)
        torch.manual_seed(int(bundle.config["training"]["seed"]))
        model = AutoModelForCausalLM.from_config(config, **kwargs)
        return _no_cache(model) if for_training else model
    adapter = bundle.config.get("adapter") or {}
    if adapter.get("type") == "qlora" and for_training:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16)
        kwargs["device_map"] = device_map or {"": torch.cuda.current_device()}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(src, revision=rev, **kwargs)
    except OSError as e:
        raise StageError(f"cannot load the base model from {src}: {e}") from None
    return _no_cache(model) if for_training else model


def lora_config(adapter: dict[str, Any], tied: bool = False) -> Any:
    from peft import LoraConfig

    targets = adapter["target_modules"]
    extra: dict[str, Any] = {}
    if adapter["target_parameters"]:  # fused MoE expert tensors (PEFT >= 0.17 ParamWrapper)
        extra["target_parameters"] = list(adapter["target_parameters"])
    if adapter["modules_to_save"]:
        extra["modules_to_save"] = list(adapter["modules_to_save"])
        if tied:  # a tied embed_tokens/lm_head stays one trained matrix
            extra["ensure_weight_tying"] = True
    alpha = adapter["alpha"]  # the schema allows a float alpha: passed as the plan holds it
    return LoraConfig(
        task_type="CAUSAL_LM", r=int(adapter["r"]), lora_alpha=alpha,
        lora_dropout=float(adapter["dropout"]),
        target_modules=targets if isinstance(targets, str) else list(targets),
        use_rslora=bool(adapter["rslora"]), use_dora=bool(adapter["dora"]), **extra,
    )


def freeze_except(model: Any, patterns: list[str]) -> tuple[int, int]:
    """``training.unfrozen_parameters``: only parameters whose names match a pattern (``re.search``) train.
    Returns (trainable, total) parameter counts; no match at all is an error (nothing would train)."""
    import re

    compiled = [re.compile(p) for p in patterns]
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(c.search(name) for c in compiled)
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    if trainable == 0:
        raise StageError(f"training.unfrozen_parameters {patterns} match no parameter of the model "
                         "(names look like model.layers.0.mlp.down_proj.weight)")
    return trainable, total


def apply_adapter(model: Any, bundle: Bundle) -> Any:
    """Wrap the model in a PEFT LoRA adapter when the plan asks for lora/qlora; full fine-tune otherwise
    (of the parameters ``training.unfrozen_parameters`` matches, when set)."""
    adapter = bundle.config.get("adapter") or {}
    kind = adapter.get("type", "none")
    if kind not in ("lora", "qlora"):
        patterns = (bundle.config.get("training") or {}).get("unfrozen_parameters")
        if patterns:
            trainable, total = freeze_except(model, list(patterns))
            print(f"[loft] training.unfrozen_parameters: {trainable:,} of {total:,} parameters train",
                  flush=True)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    gc = bool(bundle.config["training"].get("gradient_checkpointing"))
    if kind == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    return get_peft_model(model, lora_config(adapter, tied=tied))


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()
