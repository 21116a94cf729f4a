"""A hand-made plan that follows docs/architecture.md, so render/bundle/verify/diff tests need no pipeline."""

from __future__ import annotations

import copy
from typing import Any

_PLAN: dict[str, Any] = {
    "format": 1,
    "loft_version": "0.1.0",
    "name": "quickstart",
    "source": {"file": "quickstart.yaml", "dialect": "loft", "sha256": "a" * 64,
               "config": {"loft": 1, "model": {"base": "./models/tiny"}}},
    "config": {
        "loft": 1,
        "name": "quickstart",
        "model": {"base": "models/tiny", "revision": None, "tokenizer": None, "dtype": "bf16",
                  "attn_implementation": "sdpa", "trust_remote_code": False, "init": "pretrained"},
        "data": {"datasets": [{"name": "chat", "path": "data/chat.jsonl", "format": "messages", "split": "train",
                               "revision": None, "field_messages": "messages",
                               "message_fields": {"role": "role", "content": "content"}, "roles": {},
                               "roles_to_train": ["assistant"], "train_on_eos": "turn", "fields": {},
                               "weight": 1.0, "epochs": 1, "subset": None, "eval_split": None}],
                 "eval_split": 0.0, "temperature": 1.0, "bad_samples": "skip", "num_proc": "auto", "bundle": "auto"},
        "template": "auto",
        "template_mask_fallback": False,
        "sequence": {"max_length": 512, "auto_length": "p95", "strategy": "truncate", "packing": True,
                     "train_on_incomplete_assistant": False},
        "adapter": {"type": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear",
                    "rslora": False, "dora": False},
        "training": {"learning_rate": 2e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "warmup_steps": None,
                     "epochs": 1, "max_steps": None, "micro_batch_size": 1, "gradient_accumulation_steps": 8,
                     "global_batch_size": None, "optimizer": "adamw_torch", "weight_decay": 0.0,
                     "max_grad_norm": 1.0, "precision": "bf16", "gradient_checkpointing": True, "seed": 42,
                     "logging_steps": 1, "eval_steps": None, "save_steps": None, "save_total_limit": 3,
                     "kernels": {"liger": False, "cut_cross_entropy": False},
                     "aux_losses": {"training_temperature": 1.0,
                                    "adaptive_label_smoothing": {"enabled": False, "max_smoothing": 0.1}}},
        "deepspeed": {"stage": 0, "offload_optimizer": False, "offload_params": False},
        "fsdp": {"enabled": False, "sharding": "full_shard", "offload_params": False, "version": 2},
        "sweep": None,
        "eval": {"enabled": True, "backend": "auto", "prompts": [], "max_new_tokens": 128},
        "export": {"merge": True, "formats": ["safetensors"], "push_to_hub": None},
        "target": {"kind": "local", "gpu": "H100", "num_gpus": 1, "nodes": 1, "provider": None,
                   "slurm": {"partition": None, "account": None, "time": "24:00:00"},
                   "skypilot": {"cloud": None, "use_spot": False}},
        "tracking": {"wandb": None},
        "output_dir": "out",
    },
    "model": {"source": "config.json", "id": None, "path": "models/tiny", "revision": None, "model_type": "llama",
              "architecture": "LlamaForCausalLM", "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "intermediate_size": 128,
              "vocab_size": 1000, "tie_word_embeddings": False, "max_position_embeddings": 2048, "num_experts": 0,
              "num_experts_per_tok": 0, "params": 200000, "chat_template_family": "llama3"},
    "data": {"datasets": [{"name": "chat", "source": "local", "path": "data/chat.jsonl", "bundled": True,
                           "sha256": "b" * 64, "bytes": 1234, "rows": 2026, "revision": None}]},
    "template": {"name": "llama3", "source": "library", "file": "chat_template.jinja", "sha256": "c" * 64,
                 "end_of_turn": "<|eot_id|>", "tagged": True, "mask": "generation"},
    "derived": {"world_size": 1, "micro_batch_size": 1, "gradient_accumulation_steps": 8, "global_batch_size": 8,
                "tokens_per_step": 4096, "rows": 2026, "total_steps": 253, "total_tokens": 1036288,
                "warmup_steps": 8},
    "launch": {"target": "local", "launcher": "python", "nodes": 1, "gpus_per_node": 1, "deepspeed_config": None,
               "accelerate_config": None},
    "estimate": {"vram": {"total_gib": 1.5, "components": {"weights_gib": 0.1}, "fits": {"H100": True}},
                 "time": {"hours": 0.25}, "cost": {"usd": 1.0}},
    "versions": {"python": ">=3.10", "torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2",
                 "datasets": "5.2.0", "accelerate": "1.15.0", "deepspeed": "0.19.8"},
    "sweep": None,
    "warnings": [],
}


def sample_plan(**sections: Any) -> dict[str, Any]:
    """A deep copy of the sample plan; keyword arguments replace whole top-level sections."""
    plan = copy.deepcopy(_PLAN)
    plan.update(copy.deepcopy(sections))
    return plan


def set_key(plan: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """plan with `a.b.c` set (a new copy)."""
    out = copy.deepcopy(plan)
    node = out
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    return out


def with_sweep(plan: dict[str, Any], overrides: list[dict[str, Any]], method: str = "grid") -> dict[str, Any]:
    """plan with a grid sweep section whose trials set `overrides` (each trial's config = the plan's + them)."""
    from loft.runtime.sweep.space import with_values

    out = copy.deepcopy(plan)
    space: dict[str, Any] = {}
    for o in overrides:
        for k, v in o.items():
            space.setdefault(k, {"type": "categorical", "values": []})["values"].append(v)
    trials = [{"trial": i, "overrides": o, "config": {**with_values(out["config"], o),
                                                      "output_dir": f"{out['config']['output_dir']}/trial-{i}"},
               "derived": out["derived"], "estimate": out["estimate"], "fits": True} for i, o in enumerate(overrides)]
    out["sweep"] = {"method": method, "metric": "train_loss", "direction": "minimize", "pruner": "median",
                    "pruner_startup_trials": 2, "seed": 0, "parallel": "auto",
                    "budget": {"trials": None, "steps_per_trial": None, "wall_time_s": None}, "space": space,
                    "base_trial": None, "trials": trials}
    return out
