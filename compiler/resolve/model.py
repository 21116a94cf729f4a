"""Model facts (from a local config.json or the built-in catalog), `model.config_overrides` applied to
them, the local model and tokenizer directories carried into the bundle, revision warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import models
from .context import Context
from .files import COMMIT

# config.json keys that decide weight shapes, and model settings the plan's facts (and the estimate) read
_SHAPE_KEYS = frozenset({"hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                         "intermediate_size", "moe_intermediate_size", "vocab_size", "num_experts",
                         "num_local_experts"})
_SETTING_FACTS = frozenset({"max_position_embeddings", "num_experts_per_tok", "tie_word_embeddings"})


def resolve_model(ctx: Context) -> tuple[dict[str, Any], Path | None]:
    """(plan["model"], the local model directory or None for a hub model)."""
    m = ctx.cfg["model"]
    spec = m["base"]
    path = ctx.local(spec)
    facts: dict[str, Any]
    entry: dict[str, Any] = {"revision": m["revision"]}
    if path is not None and not ctx.allowed(path, ("model", "base"), "model directory"):
        return {**models.empty_facts(), "source": "config.json", "id": None, "path": spec,
                "revision": None, "params": None}, None
    if path is not None:
        if not path.is_dir():
            ctx.error("missing-file", ("model", "base"), f"model directory {spec!r} not found",
                      expected=f"a directory with config.json at {path}, or a hub id such as 'org/name'")
            return {**models.empty_facts(), "source": "config.json", "id": None, "path": spec,
                    "revision": None, "params": None}, None
        facts, problem = models.local_facts(path)
        if problem:
            ctx.error("model-config", ("model", "base"), f"cannot read the model's config: {problem}",
                      expected="a model directory holding a transformers config.json")
        entry.update(source="config.json", id=None, path=ctx.carry_dir(path, "model", ("model", "base")))
        m["base"] = entry["path"]
        if m["revision"] is not None:
            ctx.warn("revision-ignored", ("model", "revision"), "model.revision is ignored for a local directory")
            entry["revision"] = m["revision"] = None
    else:
        found = models.lookup(spec)
        if found is None:
            facts = models.empty_facts()
            entry["source"] = "unknown"
            ctx.warn("unknown-architecture", ("model", "base"),
                     f"{spec!r} is not in the built-in catalog: model facts are unknown, so the VRAM/time "
                     "estimate is skipped (nothing is downloaded at compile time)",
                     hint="use a local model directory, or add the model to targets/catalog/models.json")
        else:
            facts = {k: found.get(k) for k in models.FACT_KEYS}
            entry["source"] = "catalog"
        entry.update(id=spec, path=None)
        if m["revision"] is None:
            ctx.warn("unpinned-revision", ("model", "base"),
                     f"hub model {spec!r} has no pinned revision: a later build may train on different weights",
                     hint="set model.revision to a commit sha")
        elif not COMMIT.match(m["revision"]):
            ctx.warn("unpinned-revision", ("model", "revision"),
                     f"revision {m['revision']!r} is a branch or tag, not a commit: it can move",
                     hint="use the commit sha it points to now")
    _tokenizer(ctx, path)
    facts = _override_facts(ctx, facts)
    entry.update(facts)
    entry["params"] = _count_params(facts)
    return entry, path


def _tokenizer(ctx: Context, model_path: Path | None) -> None:
    """A local tokenizer directory travels in the bundle (the model's own is already carried)."""
    m = ctx.cfg["model"]
    tok = m["tokenizer"]
    if tok is None:
        return
    tpath = ctx.local(tok)
    if tpath is not None and model_path is not None and tpath == model_path:
        m["tokenizer"] = m["base"]  # the model directory itself: already carried
    elif tpath is not None and not ctx.allowed(tpath, ("model", "tokenizer"), "tokenizer directory"):
        return
    elif tpath is not None:
        if not tpath.is_dir():
            ctx.error("missing-file", ("model", "tokenizer"), f"tokenizer directory {tok!r} not found",
                      expected="a directory with tokenizer files, or a hub id")
        else:
            m["tokenizer"] = ctx.carry_dir(tpath, "tokenizer", ("model", "tokenizer"))


def _override_facts(ctx: Context, facts: dict[str, Any]) -> dict[str, Any]:
    """`model.config_overrides` as the loaded model will see them: settings the estimate reads update the
    facts; keys that reshape the pretrained weights are an error (they only make sense from random init)."""
    m = ctx.cfg["model"]
    out = dict(facts)
    for key, value in (m.get("config_overrides") or {}).items():
        keys = ("model", "config_overrides", key)
        if key in _SHAPE_KEYS and m["init"] == "pretrained":
            ctx.error("conflict", keys, f"{key} changes the shape of the pretrained weights, which then "
                      "cannot load", expected="remove it, or model.init: random")
        elif key in _SHAPE_KEYS or key in _SETTING_FACTS:
            boolean = key == "tie_word_embeddings"
            if isinstance(value, bool) != boolean or not isinstance(value, int) or (not boolean and value < 1):
                ctx.error("type", keys, f"expected {'true or false' if boolean else 'a positive integer'}, "
                          f"got {value!r}")
                continue
            out["num_experts" if key == "num_local_experts" else key] = value
    return out


def _count_params(facts: dict[str, Any]) -> int | None:
    from ..estimate.params import count_params

    return count_params(facts)
