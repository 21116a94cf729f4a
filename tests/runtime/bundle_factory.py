"""Hand-made run bundles for runtime tests: a plan.lock with the fields a test is about (the rest from a
compiled plan, checked against the schema), a chat template and a model/tokenizer directory. Generic on purpose: any runtime stage's tests may use it.

    root = make_bundle(tmp_path / "run", model_dir, datasets=[{"name": "chat", "path": "data/chat.jsonl"}])
    bundle = loft.runtime.plan.load(root)
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from tests.plan_contract import complete

ROOT = Path(__file__).resolve().parents[2]
CHAT_JSONL = ROOT / "examples" / "data" / "chat.jsonl"

# A small llama3-style template with {% generation %} tags around each assistant reply + its end-of-turn.
LLAMA3_TAGGED = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- generation %}{{- message['content'] | trim }}<|eot_id|>{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# The same template without tags (prepare must fall back to prefix rendering).
LLAMA3_UNTAGGED = LLAMA3_TAGGED.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")

DATASET_DEFAULTS: dict[str, Any] = {
    "format": "messages", "split": "train", "revision": None, "field_messages": "messages",
    "message_fields": {"role": "role", "content": "content"}, "roles": {}, "roles_to_train": ["assistant"],
    "train_on_eos": "turn", "fields": {}, "weight": 1.0, "epochs": 1, "subset": None, "eval_split": None,
}
CONFIG_DEFAULTS: dict[str, Any] = {
    "name": "test",
    "model": {"base": "model", "revision": None, "tokenizer": None, "dtype": "bf16", "attn_implementation": "sdpa",
              "trust_remote_code": False, "init": "pretrained"},
    "data": {"datasets": [], "eval_split": 0.0, "temperature": 1.0, "bad_samples": "skip", "num_proc": 1,
             "bundle": "auto"},
    "sequence": {"max_length": 2048, "auto_length": "p95", "strategy": "truncate", "packing": True,
                 "train_on_incomplete_assistant": False},
    "training": {"seed": 42, "micro_batch_size": 1, "gradient_accumulation_steps": 1, "epochs": 1,
                 "learning_rate": 2e-4, "aux_losses": {"training_temperature": 1.0,
                                                       "adaptive_label_smoothing": {"enabled": False,
                                                                                    "max_smoothing": 0.1}}},
    "output_dir": "out",
}


def chat_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    """n rows of the shipped chat data (OpenAI messages format)."""
    lines = CHAT_JSONL.read_text(encoding="utf-8").splitlines()[start:start + n]
    return [json.loads(x) for x in lines]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_plan(root: Path, plan: dict[str, Any]) -> None:
    """plan.lock, completed from a compiled plan and checked against plan.schema.json (tests/plan_contract.py)."""
    plan = complete(plan)
    (root / "plan.lock").write_text(json.dumps(plan, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def make_bundle(root: Path, model_dir: Path, datasets: list[dict[str, Any]], template: str = LLAMA3_TAGGED,
                mask: str | None = None, end_of_turn: str = "<|eot_id|>", copy_model: bool = False,
                **config: Any) -> Path:
    """Write root/plan.lock (+ chat_template.jinja). `datasets` entries are config entries (defaults filled);
    a dataset `path` is bundle-relative (the file must exist there, or pass an absolute path). `config`
    overrides sections, e.g. sequence={"max_length": 64}, data={"eval_split": 0.1}."""
    root.mkdir(parents=True, exist_ok=True)
    if copy_model:
        shutil.copytree(model_dir, root / "model", dirs_exist_ok=True)
        model_path = "model"
    else:
        model_path = str(model_dir)
    entries = [_merge(DATASET_DEFAULTS, d) for d in datasets]
    cfg = _merge(CONFIG_DEFAULTS, config)
    cfg["data"]["datasets"] = entries
    plan_datasets = []
    for d in entries:
        p = Path(d["path"])
        full = p if p.is_absolute() else root / p
        sha = hashlib.sha256(full.read_bytes()).hexdigest() if full.is_file() else None
        plan_datasets.append({"name": d["name"], "source": "local", "path": d["path"], "bundled": False,
                              "sha256": sha, "bytes": full.stat().st_size if full.is_file() else None,
                              "rows": None, "revision": None})
    (root / "chat_template.jinja").write_text(template, encoding="utf-8")
    tagged = "{% generation %}" in template or "{%- generation %}" in template
    plan = {
        "format": 1, "loft_version": "0.1.0", "name": cfg["name"],
        "source": {"file": "test.yaml", "dialect": "loft", "sha256": "0" * 64, "config": {}},
        "config": cfg,
        "model": {"source": "config.json", "id": None, "path": model_path, "revision": None,
                  "model_type": "llama", "max_position_embeddings": 4096, "chat_template_family": "llama3"},
        "data": {"datasets": plan_datasets},
        "template": {"name": "test", "source": "file", "file": "chat_template.jinja",
                     "sha256": hashlib.sha256(template.encode()).hexdigest(), "end_of_turn": end_of_turn,
                     "tagged": tagged, "mask": mask or ("generation" if tagged else "prefix")},
        "derived": {"world_size": 1, "micro_batch_size": 1, "gradient_accumulation_steps": 1,
                    "global_batch_size": 1, "rows": None, "total_steps": None},
        "launch": {"target": "local", "launcher": "python", "nodes": 1, "gpus_per_node": 1},
        "warnings": [],
    }
    write_plan(root, plan)
    return root


_TOKENIZERS: dict[str, Path] = {}


def tiny_tokenizer(family: str = "llama3") -> Path:
    """A tiny BPE tokenizer of a chat family (examples/tiny.py), built once per test process."""
    if family not in _TOKENIZERS:
        import tempfile

        from examples.tiny import build_tokenizer

        _TOKENIZERS[family] = build_tokenizer(Path(tempfile.mkdtemp(prefix=f"loft-tok-{family}-")) / "tok",
                                              family=family)
    return _TOKENIZERS[family]
