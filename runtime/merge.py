"""Merging, two ways, both through PEFT (no merge arithmetic written here):

* the ``merge`` stage of a bundle: the run's LoRA adapter folded into its base (``merge_and_unload``) in the
  plan's dtype, saved with the tokenizer and the bundle's chat template in ``<out>/merged``; a full
  fine-tune is saved as is, so ``merged/`` is always the model to serve;
* ``loft merge --base M --adapters a b ... --weights 0.7 0.3 --method ties --density 0.5 -o OUT``: several
  adapters of one base combined by PEFT's ``add_weighted_adapter`` (linear, ties, dare_linear, dare_ties,
  cat, svd and their variants), then folded into the base.

Outputs are written to a staging directory and renamed into place (atomic.py): a failure leaves nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import attach, check_weights
from .atomic import staged_dir
from .train.model import DTYPES, StageError, is_adapter_dir, load_tokenizer, torch_dtype

if TYPE_CHECKING:
    from .plan import Bundle

# PEFT's combination types (LoraModel.add_weighted_adapter); the *_svd ones re-factor the result to a rank
METHODS = ("linear", "ties", "dare_linear", "dare_ties", "cat", "svd", "ties_svd", "dare_linear_svd",
           "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd")
NEEDS_DENSITY = frozenset(m for m in METHODS if m.startswith(("ties", "dare", "magnitude")))
MERGE_RECORD = "loft_merge.json"


def _say(msg: str) -> None:
    print(f"[loft] {msg}", file=sys.stderr, flush=True)


def save_model(model: Any, tok: Any, dest: Path, record: dict[str, Any] | None = None) -> None:
    """Save weights (safetensors), tokenizer and chat template into ``dest`` atomically."""
    with staged_dir(dest) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        if record is not None:
            (tmp / MERGE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run(bundle: Bundle) -> int:
    if not (bundle.config.get("export") or {}).get("merge", True):
        _say("merge is off in this plan (export.merge: false)")
        return 0
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "merge"):
        return 0
    from .train.load_trained import final_dir, load_trained

    final = final_dir(bundle)
    check_weights(final, "trained model")
    adapter = is_adapter_dir(final)
    try:
        model = load_trained(bundle, merge=True)
    except RuntimeError as e:  # PEFT's size-mismatch traceback: the adapter is not this plan's base's
        raise StageError(f"{final} does not fit the plan's base model: {str(e).splitlines()[0][:300]}") from None
    dest = bundle.out / "merged"
    save_model(model, load_tokenizer(bundle), dest)
    what = "LoRA adapter merged into the base weights" if adapter else "full fine-tune (no adapter to merge)"
    _say(f"{what}: {dest}")
    return 0


def check_request(adapters: Sequence[str], weights: Sequence[float] | None, method: str,
                  density: float | None) -> list[float]:
    """Validate a ``loft merge`` request before any weight is read; the weights to use."""
    if not adapters:
        raise StageError("loft merge: --adapters needs at least one adapter directory")
    if method not in METHODS:
        raise StageError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    weights = list(weights) if weights else [1.0] * len(adapters)
    if len(weights) != len(adapters):
        raise StageError(f"--weights: {len(weights)} weight(s) for {len(adapters)} adapter(s); give one per adapter")
    if method in NEEDS_DENSITY and density is None:
        raise StageError(f"--method {method} prunes each adapter to a density: give --density D (0 < D <= 1)")
    if density is not None and not 0 < density <= 1:
        raise StageError(f"--density {density}: expected 0 < D <= 1")
    for a in adapters:
        if check_weights(Path(a), "adapter") != "adapter":
            raise StageError(f"adapter {a}: a full model directory, not a LoRA adapter (adapter_config.json)")
    return weights


def merge_adapters(base: str, adapters: Sequence[str], weights: Sequence[float], method: str,
                   density: float | None = None, dtype: str = "auto", seed: int = 0,
                   tokenizer: Any = None) -> Any:
    """The base with ``adapters`` combined by PEFT's ``add_weighted_adapter`` and merged (merge_and_unload).
    One adapter with weight 1 is merged directly (the combination would be the identity)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .train.model import fit_embeddings

    auto: Any = AutoModelForCausalLM
    kwargs: dict[str, Any] = {} if dtype == "auto" else {"dtype": torch_dtype(dtype)}
    try:
        model = auto.from_pretrained(base, **({"dtype": "auto"} | kwargs))
    except OSError as e:
        raise StageError(f"--base {base}: cannot load a model there ({str(e).splitlines()[0][:200]})") from None
    if tokenizer is not None:
        fit_embeddings(model, tokenizer)  # adapters trained with added tokens saved the grown embeddings
    names = [f"adapter_{i}" for i in range(len(adapters))]
    peft_model = attach(model, Path(adapters[0]), names[0])
    for name, path in zip(names[1:], adapters[1:], strict=True):
        attach(None, Path(path), name, model=peft_model)
    if len(adapters) == 1 and list(weights) == [1.0] and method in ("linear", "cat"):
        return peft_model.merge_and_unload()
    torch.manual_seed(seed)  # dare_* drop entries at random
    try:
        peft_model.add_weighted_adapter(names, list(weights), "merged", combination_type=method, density=density)
    except ValueError as e:  # e.g. linear needs equal ranks, cat/svd need a LoRA on every target
        raise StageError(f"--method {method}: {e}") from None
    peft_model.set_adapter("merged")
    for name in names:
        peft_model.delete_adapter(name)
    return peft_model.merge_and_unload()


def _tokenizer(base: str, adapters: Sequence[str], explicit: str | None) -> Any:
    """--tokenizer, else the first adapter's saved tokenizer (it may carry added tokens and the chat
    template used in training), else the base's."""
    from transformers import AutoTokenizer

    src = explicit or next((a for a in adapters if (Path(a) / "tokenizer_config.json").is_file()), base)
    try:
        return AutoTokenizer.from_pretrained(src)
    except OSError as e:
        raise StageError(f"no tokenizer at {src}: {str(e).splitlines()[0][:200]} (give --tokenizer)") from None


def main_standalone(args: Any) -> int:
    """``loft merge --base M --adapters ... -o OUT`` (no bundle)."""
    if not args.output:
        raise StageError("loft merge --adapters needs -o OUT (the directory to write the merged model to)")
    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise StageError(f"-o {out}: exists and is not empty; choose another directory or pass --force")
    weights = check_request(args.adapters, args.weights, args.method, args.density)
    tok = _tokenizer(args.base, args.adapters, args.tokenizer)
    model = merge_adapters(args.base, args.adapters, weights, args.method, args.density, args.dtype, args.seed,
                           tokenizer=tok)
    record = {"base": args.base, "adapters": [str(a) for a in args.adapters], "weights": weights,
              "method": args.method, "density": args.density, "seed": args.seed, "dtype": args.dtype,
              "library": "peft.add_weighted_adapter" if len(args.adapters) > 1 or weights != [1.0]
              else "peft.merge_and_unload"}
    save_model(model, tok, out, record)
    _say(f"merged {len(args.adapters)} adapter(s) ({args.method}) into {args.base}: {out}")
    return 0


MERGE_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--base",), {"dest": "base", "metavar": "MODEL", "default": None,
                   "help": "standalone merge: the base model (directory or hub id)"}),
    (("--adapters",), {"dest": "adapters", "nargs": "+", "metavar": "DIR", "default": None,
                       "help": "LoRA adapter directories trained on --base"}),
    (("--weights",), {"dest": "weights", "nargs": "+", "type": float, "metavar": "W", "default": None,
                      "help": "one weight per adapter (default 1.0 each)"}),
    (("--method",), {"dest": "method", "default": "linear", "metavar": "|".join(METHODS[:6]),
                     "help": "PEFT combination type (also ties_svd, dare_linear_svd, dare_ties_svd, "
                             "magnitude_prune, magnitude_prune_svd); default linear"}),
    (("--density",), {"dest": "density", "type": float, "default": None, "metavar": "D",
                      "help": "fraction of each adapter's delta kept (ties, dare_*, magnitude_prune)"}),
    (("--dtype",), {"dest": "dtype", "default": "auto", "choices": ["auto", *DTYPES],
                    "help": "dtype to load and save the merged model in (default: the base's)"}),
    (("--seed",), {"dest": "seed", "type": int, "default": 0, "help": "seed for dare_* pruning (default 0)"}),
    (("--tokenizer",), {"dest": "tokenizer", "default": None, "metavar": "DIR",
                        "help": "tokenizer to save with the model (default: the first adapter's, else the base's)"}),
    (("-o", "--output"), {"dest": "output", "default": None, "metavar": "OUT", "help": "output directory"}),
    (("--force",), {"dest": "force", "action": "store_true", "help": "replace a non-empty -o directory"}),
]
