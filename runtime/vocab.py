"""The plan's vocabulary changes, applied to a tokenizer: one function, so prepare tokenizes with exactly the
vocabulary that train (and eval/merge) give the model."""

from __future__ import annotations

from typing import Any


def apply_vocabulary(tok: Any, model_cfg: dict[str, Any]) -> int:
    """``model.special_tokens`` (bos/eos/pad/unk, added when missing) then ``model.added_tokens`` (plain
    vocabulary entries, in the order given). Returns how many tokens the vocabulary gained; the model's
    embeddings must then grow to ``len(tok)`` (``train.model.fit_embeddings``)."""
    added = 0
    special = {k: v for k, v in (model_cfg.get("special_tokens") or {}).items() if v}
    if special:
        added += int(tok.add_special_tokens(special))
    tokens = [t for t in (model_cfg.get("added_tokens") or []) if t]
    if tokens:
        added += int(tok.add_tokens(tokens))
    return added
