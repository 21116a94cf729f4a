"""Small on-disk projects for the compiler-front tests: a config, a tiny data file, a model config.json."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

TINY_MODEL_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "vocab_size": 512, "max_position_embeddings": 4096, "tie_word_embeddings": True,
}

MINIMAL_CONFIG = """\
loft: 1
model: {base: org/model}
data:
  datasets:
    - path: data.jsonl
"""  # the smallest valid config (validate-only tests: nothing on disk)

BASE_CONFIG = """\
loft: 1
name: t
model:
  base: ./models/tiny
data:
  datasets:
    - path: data/chat.jsonl
template: llama3.2
target:
  gpu: cpu
training:
  precision: fp32
  optimizer: adamw_torch
"""


def chat_rows(n: int) -> str:
    rows = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows)


def make_project(root: Path, config: str = BASE_CONFIG, rows: int = 10, name: str = "cfg.yaml") -> Path:
    """root/cfg.yaml, root/data/chat.jsonl (`rows` rows), root/models/tiny/config.json; returns the config."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "chat.jsonl").write_text(chat_rows(rows), encoding="utf-8")
    model = root / "models" / "tiny"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG), encoding="utf-8")
    cfg = root / name
    cfg.write_text(textwrap.dedent(config), encoding="utf-8")
    return cfg


def with_keys(extra: str, base: str = BASE_CONFIG) -> str:
    """BASE_CONFIG with more top-level YAML appended (sections given here must not repeat base ones)."""
    return base + textwrap.dedent(extra)
