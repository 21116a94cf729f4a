"""config.json facts used by the estimator tests (inline, so the tests run without ../shared)."""

from __future__ import annotations

from typing import Any

QWEN05 = {  # Qwen2.5-0.5B, as ../shared/calibration/models/qwen2.5-0.5b/config.json
    "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 4864, "vocab_size": 151936,
    "tie_word_embeddings": True, "max_position_embeddings": 32768, "num_experts": 0, "num_experts_per_tok": 0,
}
LLAMA1B = {  # Llama-3.2-1B
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 8192, "vocab_size": 128256,
    "tie_word_embeddings": True, "max_position_embeddings": 131072, "num_experts": 0, "num_experts_per_tok": 0,
}
LLAMA8B = {  # Llama-3.1-8B
    "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 128256,
    "tie_word_embeddings": False, "max_position_embeddings": 131072, "num_experts": 0, "num_experts_per_tok": 0,
}
TINY = {  # small enough to count by hand
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 100,
    "tie_word_embeddings": False, "num_experts": 0, "num_experts_per_tok": 0,
}


def plan(facts: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A minimal resolved plan around `facts`; `over` sets dotted config keys, e.g. training__optimizer."""
    cfg: dict[str, Any] = {
        "model": {"dtype": "bf16", "attn_implementation": "sdpa"},
        "adapter": {"type": "none", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "sequence": {"max_length": 2048, "packing": True},
        "training": {"micro_batch_size": 1, "optimizer": "adamw_torch_fused", "precision": "bf16",
                     "gradient_checkpointing": False, "gradient_accumulation_steps": 1, "epochs": 1,
                     "kernels": {"liger": False, "cut_cross_entropy": False}},
        "deepspeed": {"stage": 0, "offload_optimizer": False, "offload_params": False},
        "fsdp": {"enabled": False, "sharding": "full_shard", "offload_params": False},
        "target": {"gpu": "H100", "num_gpus": 1, "nodes": 1, "provider": None},
    }
    derived: dict[str, Any] = {"world_size": 1, "gradient_accumulation_steps": 1, "total_tokens": None, "rows": None}
    for key, value in over.items():
        if key.startswith("derived__"):
            derived[key.removeprefix("derived__")] = value
            continue
        if "__" not in key:
            cfg[key] = value  # a whole section
            continue
        section, name = key.split("__", 1)
        cfg[section][name] = value
    return {"model": dict(facts), "config": cfg, "derived": derived, "data": {"datasets": []}}
