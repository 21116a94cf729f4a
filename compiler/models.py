"""Model facts for the plan, without downloading anything.

A local model directory gives its own config.json (and tokenizer_config.json for the chat template
family); a hub id is looked up in the built-in catalog targets/catalog/models.json (config.json-style
facts of the common architectures). An unknown hub id is not an error: the plan records nulls and a
warning, and the estimate says it cannot size the model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .resources import data_dir

CATALOG = data_dir("targets") / "catalog" / "models.json"

FACT_KEYS = (
    "model_type", "architecture", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size", "tie_word_embeddings",
    "max_position_embeddings", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
    "chat_template_family",
)

# config.json names of the expert counts, by model family
_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts")
_EXPERTS_PER_TOK = ("num_experts_per_tok", "num_experts_per_token", "moe_top_k")

# tokenizer_config.json chat-template fingerprints → template family (first match wins)
_TEMPLATE_MARKERS = (
    ("<|start_header_id|>", "llama3.1"),
    ("<think>", "qwen3"),
    ("<|im_start|>", "qwen2.5"),
    ("<start_of_turn>", "gemma2"),
    ("<|assistant|>", "phi3.5"),
    ("[INST]", "mistral-v3"),
)


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, Any]]:
    """Hub id → facts (without `_meta`)."""
    with open(CATALOG, encoding="utf-8") as f:
        raw = json.load(f)
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def lookup(hub_id: str) -> dict[str, Any] | None:
    """Catalog facts for a hub id (case-insensitive), or None."""
    cat = catalog()
    if hub_id in cat:
        return dict(cat[hub_id])
    low = {k.lower(): k for k in cat}
    key = low.get(hub_id.lower())
    return dict(cat[key]) if key else None


def from_config_json(cfg: dict[str, Any]) -> dict[str, Any]:
    """Normalise a transformers config.json into the plan's fact keys (nested text_config for multimodal)."""
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        inner = dict(cfg["text_config"])
        inner.setdefault("architectures", cfg.get("architectures"))
        inner.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings"))
        cfg = inner
    archs = cfg.get("architectures") or []
    heads = cfg.get("num_attention_heads")
    hidden = cfg.get("hidden_size")
    head_dim = cfg.get("head_dim")
    if head_dim is None and isinstance(hidden, int) and isinstance(heads, int) and heads:
        head_dim = hidden // heads
    experts = next((cfg[k] for k in _EXPERTS if isinstance(cfg.get(k), int)), 0)
    per_tok = next((cfg[k] for k in _EXPERTS_PER_TOK if isinstance(cfg.get(k), int)), 0) if experts else 0
    tie = cfg.get("tie_word_embeddings")
    return {
        "model_type": cfg.get("model_type"),
        "architecture": archs[0] if archs else None,
        "hidden_size": hidden,
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads", heads),
        "head_dim": head_dim,
        "intermediate_size": cfg.get("intermediate_size"),
        "vocab_size": cfg.get("vocab_size"),
        "tie_word_embeddings": bool(tie) if tie is not None else False,
        "max_position_embeddings": cfg.get("max_position_embeddings"),
        "num_experts": experts or 0,
        "num_experts_per_tok": per_tok or 0,
        "moe_intermediate_size": cfg.get("moe_intermediate_size") if experts else None,
        "chat_template_family": cfg.get("chat_template_family"),
    }


def empty_facts() -> dict[str, Any]:
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    facts.update(num_experts=0, num_experts_per_tok=0)
    return facts


def local_facts(model_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Facts from <dir>/config.json, plus the chat template family read from tokenizer_config.json.
    Returns (facts, problem): problem is a message when config.json is missing or unreadable."""
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty_facts(), f"{cfg_path} does not exist"
    except (OSError, ValueError) as e:
        return empty_facts(), f"{cfg_path} is not valid JSON ({e})"
    if not isinstance(cfg, dict):
        return empty_facts(), f"{cfg_path} is not a JSON object"
    facts = from_config_json(cfg)
    if facts["chat_template_family"] is None:
        facts["chat_template_family"] = _family_from_tokenizer(model_dir)
    return facts, None


def _family_from_tokenizer(model_dir: Path) -> str | None:
    text = ""
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        p = model_dir / name
        if p.is_file():
            try:
                raw = p.read_text(encoding="utf-8")
            except OSError:
                continue
            if name.endswith(".json"):
                try:
                    tpl = json.loads(raw).get("chat_template")
                except (ValueError, AttributeError):
                    tpl = None
                raw = tpl if isinstance(tpl, str) else json.dumps(tpl) if tpl else ""
            text = raw
            if text:
                break
    for marker, family in _TEMPLATE_MARKERS:
        if marker in text:
            return family
    return None
