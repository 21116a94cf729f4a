"""One base model for every trial of a sweep.

LoRA / QLoRA trials: the base stays loaded; each trial gets a fresh adapter named `default` (PEFT's
`delete_adapter` + `add_adapter`, seeded with the trial's seed right before, as `loft train` seeds its
own adapter), and after each trial the base weights are checked bit-identical (sha256 of every base
tensor) to what was loaded. Full fine-tune trials: a CPU copy of the loaded weights is kept and loaded back
before each trial, then checked the same way.

The base is loaded again (and the reason said) when a trial changes `config.model` or the seed of a
`model.init: random` base, and for setups whose wrappers own the parameters across a Trainer's life:
DeepSpeed ZeRO-3, FSDP, and full fine-tuning in several processes (DDP hooks on every parameter).
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import TYPE_CHECKING, Any

from ..train.model import StageError, apply_adapter, fit_embeddings, load_base_model, lora_config

if TYPE_CHECKING:
    from ..plan import Bundle


def _say(msg: str) -> None:
    print(f"[loft] sweep: {msg}", file=sys.stderr, flush=True)


def weights_digest(model: Any, skip_lora: bool = True) -> str:
    """sha256 over every (name, dtype, shape, bytes) of the model's base tensors, in name order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if skip_lora and ("lora_" in name or "modules_to_save" in name):
            continue
        t = tensor.detach()
        name = name.replace("base_model.model.", "").replace(".base_layer", "")
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            # hash the tensor's own buffer (a memoryview): no second copy of every weight per check
            h.update(memoryview(t.contiguous().view(-1).view(torch.uint8).cpu().numpy()))
    return h.hexdigest()


def base_key(config: dict[str, Any]) -> str:
    """What decides the loaded base: config.model, and the seed when the weights are random."""
    seed = config["training"]["seed"] if config["model"]["init"] == "random" else None
    return json.dumps({"model": config["model"], "seed": seed, "adapter": config["adapter"]["type"] == "qlora"},
                      sort_keys=True)


def reload_reason(config: dict[str, Any], world: int) -> str | None:
    """Why this setup loads the base for each trial, or None when one load serves every trial."""
    if config["deepspeed"]["stage"] == 3:
        return "DeepSpeed ZeRO-3 partitions the weights inside each trial's engine"
    if config["fsdp"]["enabled"]:
        return "FSDP wraps and shards the weights inside each trial's Trainer"
    if config["adapter"]["type"] == "none" and world > 1:
        return "full fine-tuning in several processes: each trial's DDP wrapper hooks every parameter"
    return None


class SharedModel:
    """`provide(bundle, tokenizer)` is the train stage's model provider for one trial; `check()` after it."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.key: str | None = None
        self.base: Any = None
        self.peft: Any = None
        self.kept: dict[str, Any] | None = None
        self.digest: str | None = None
        self.loads = 0

    def provide(self, bundle: Bundle, tokenizer: Any) -> Any:
        from transformers import set_seed

        cfg = bundle.config
        seed = int(cfg["training"]["seed"])
        why = reload_reason(cfg, self.world)
        if self.base is None or self.key != base_key(cfg) or why:
            if self.base is not None:
                _say("loading the base model again: " + (why or "this trial changes config.model or the "
                                                           "seed of a random base"))
            self._load(bundle, tokenizer)
        lora = cfg["adapter"]["type"] in ("lora", "qlora")
        if lora:
            set_seed(seed)  # as `loft train` does right before its adapter: the same initial adapter
            if self.peft is None:
                self.peft = apply_adapter(self.base, bundle)
            else:
                tied = bool(getattr(self.base.config, "tie_word_embeddings", False))
                self.peft.add_adapter("default", lora_config(cfg["adapter"], tied=tied))
                self.peft.set_adapter("default")
            return self.peft
        if self.peft is not None:  # a full fine-tune trial after LoRA ones: take the LoRA layers out
            self.base = self.peft.unload()
            self.peft = None
        if self.kept is None:
            self.kept = {k: v.detach().to("cpu", copy=True) for k, v in self.base.state_dict().items()}
        else:
            self.base.load_state_dict(self.kept)
            self.verify("before this trial (restored from the kept copy)")
        set_seed(seed)
        return apply_adapter(self.base, bundle)  # freezes per training.unfrozen_parameters, if set

    def after_trial(self) -> None:
        """Drop the trial's adapter and check the base weights are the ones loaded, bit for bit."""
        if self.peft is not None:
            self.peft.delete_adapter("default")
            self.verify("after the trial")
        self._free()

    def verify(self, when: str) -> None:
        model = self.peft.base_model.model if self.peft is not None else self.base
        digest = weights_digest(model)
        if digest != self.digest:
            raise StageError(f"the shared base model's weights changed {when} (sha256 {digest[:12]} ≠ "
                             f"{(self.digest or '')[:12]} at load): a trial wrote into the base; stopping the sweep")

    def _load(self, bundle: Bundle, tokenizer: Any) -> None:
        self.peft = self.kept = None
        self.base = None
        self._free()
        from transformers import set_seed

        set_seed(int(bundle.config["training"]["seed"]))
        self.base = load_base_model(bundle)
        fit_embeddings(self.base, tokenizer)
        self.key = base_key(bundle.config)
        self.digest = weights_digest(self.base)
        self.loads += 1

    @staticmethod
    def _free() -> None:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


__all__ = ["SharedModel", "StageError", "weights_digest"]
