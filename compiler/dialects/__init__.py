"""Stage 2: decide which dialect a config is written in, and say why.

loft configs carry a top-level `loft:` marker. Axolotl configs have no marker, so they are recognised by
their own top-level keys (`base_model`, `datasets`, `micro_batch_size`, ...). A file that is neither is
an error that tells the user how to mark it, because guessing wrong would give confusing errors later.
"""

from __future__ import annotations

from ..errors import ConfigError, Diagnostic
from ..parse import Document

DIALECTS = ("loft", "axolotl")

# Top-level keys that only Axolotl configs use (loft nests its keys under model:/data:/training:).
_AXOLOTL_MARKERS = (
    "base_model", "base_model_config", "datasets", "micro_batch_size", "gradient_accumulation_steps",
    "sequence_len", "adapter", "lora_r", "lora_alpha", "lora_target_modules", "lora_target_linear",
    "num_epochs", "val_set_size", "sample_packing", "load_in_4bit", "load_in_8bit", "chat_template",
    "dataset_prepared_path", "pad_to_sequence_len", "train_on_inputs", "learning_rate", "optimizer",
    "lr_scheduler", "model_type", "tokenizer_type", "flash_attention", "wandb_project", "plugins",
    "fsdp", "fsdp_config", "special_tokens", "pretraining_dataset", "rl",
)
_LOFT_ONLY = ("model", "data", "training", "sequence", "target", "export", "eval", "tracking")


def detect(doc: Document, override: str | None = None) -> tuple[str, str]:
    """Return (dialect, reason). `override` ("loft"/"axolotl", from `--dialect`) wins."""
    if override is not None:
        if override not in DIALECTS:
            raise ConfigError([Diagnostic(f"unknown dialect {override!r}", file=doc.path, code="dialect",
                                          expected=" | ".join(DIALECTS))])
        return override, f"--dialect {override} was given on the command line"
    keys = [str(k) for k in doc.tree]
    if "loft" in keys:
        line, _ = doc.pos(["loft"])
        return "loft", f"the top-level `loft:` marker is present (line {line})"
    found = [k for k in keys if k in _AXOLOTL_MARKERS]
    loft_like = [k for k in keys if k in _LOFT_ONLY]
    if found and len(found) >= len(loft_like):
        shown = ", ".join(f"`{k}`" for k in found[:4]) + (", ..." if len(found) > 4 else "")
        return "axolotl", f"no `loft:` marker, and {len(found)} top-level Axolotl key(s) are present ({shown})"
    if loft_like:
        hint = ("add `loft: 1` as the first line (this looks like a loft config with top-level "
                + ", ".join(f"`{k}`" for k in loft_like[:3]) + "), or pass --dialect loft")
    else:
        hint = ("add `loft: 1` as the first line for a loft config, or pass --dialect axolotl for an "
                "Axolotl config (none of its usual keys such as `base_model` or `datasets` were found)")
    raise ConfigError([Diagnostic("cannot tell which dialect this config is written in", file=doc.path,
                                  line=1, col=1, code="dialect", expected="a loft or an Axolotl config",
                                  hint=hint)])
