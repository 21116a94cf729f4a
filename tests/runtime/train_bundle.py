"""A hand-made bundle for the train/eval/merge tests: plan.lock + prepared data, no compiler involved.

``make_bundle(tmp, model_dir, **overrides)`` writes ``plan.lock`` (dotted override keys, e.g.
``{"training.max_steps": 4}``) and ``out/prepared/{train,eval}`` built from examples/data/chat.jsonl with
the tiny model's tokenizer: user turns masked (-100), assistant turns trained, rows packed per the plan.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.plan_contract import assert_valid, complete

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "data" / "chat.jsonl"

BASE_CONFIG: dict[str, Any] = {
    "name": "t",
    "model": {"base": "model", "revision": None, "tokenizer": None, "dtype": "fp32",
              "attn_implementation": "sdpa", "trust_remote_code": False, "init": "pretrained"},
    "sequence": {"max_length": 128, "packing": True},
    "adapter": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.05, "target_modules": "all-linear",
                "rslora": False, "dora": False},
    "training": {"learning_rate": 5e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.0, "warmup_steps": 1,
                 "epochs": 1, "max_steps": 6, "micro_batch_size": 2, "gradient_accumulation_steps": 2,
                 "global_batch_size": None, "optimizer": "adamw_torch", "weight_decay": 0.0,
                 "max_grad_norm": 1.0, "precision": "fp32", "gradient_checkpointing": False, "seed": 7,
                 "logging_steps": 1, "eval_steps": None, "save_steps": 3, "save_total_limit": 3,
                 "kernels": {"liger": False, "cut_cross_entropy": False},
                 "aux_losses": {"training_temperature": 1.0,
                                "adaptive_label_smoothing": {"enabled": False, "max_smoothing": 0.1}}},
    "deepspeed": {"stage": 0, "offload_optimizer": False, "offload_params": False},
    "fsdp": {"enabled": False},
    "eval": {"enabled": True, "backend": "transformers", "prompts": ["What is AI?"], "max_new_tokens": 8},
    "export": {"merge": True, "formats": ["safetensors"], "push_to_hub": None},
    "tracking": {"wandb": None},
    "output_dir": "out",
}


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *head, last = key.split(".")
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


def tokenized_samples(tokenizer: Any, n: int, max_len: int, offset: int = 0) -> list[dict[str, Any]]:
    lines = CHAT.read_text(encoding="utf-8").splitlines()[offset: offset + n]
    out = []
    for i, line in enumerate(lines):
        ids: list[int] = [tokenizer.bos_token_id]
        labels: list[int] = [-100]
        for m in json.loads(line)["messages"]:
            head = tokenizer.encode(f"{m['role']}: ", add_special_tokens=False)
            body = [*tokenizer.encode(m["content"], add_special_tokens=False), tokenizer.eos_token_id]
            ids += head + body
            labels += [-100] * len(head) + (body if m["role"] == "assistant" else [-100] * len(body))
        out.append({"input_ids": ids[:max_len], "labels": labels[:max_len], "sample_id": offset + i})
    return out


def rows(samples: list[dict[str, Any]], packing: bool, max_len: int, ambiguity: bool) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {"input_ids": [], "labels": [], "position_ids": [], "sample_ids": [],
                                  "length": []}
    if ambiguity:
        cols["ambiguity"] = []
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        if not cur:
            return
        cols["input_ids"].append([t for s in cur for t in s["input_ids"]])
        cols["labels"].append([t for s in cur for t in s["labels"]])
        cols["position_ids"].append([p for s in cur for p in range(len(s["input_ids"]))])
        cols["sample_ids"].append([s["sample_id"] for s in cur])
        cols["length"].append(len(cols["input_ids"][-1]))
        if ambiguity:  # a deterministic, varied score in [0, 1]
            cols["ambiguity"].append([((t * 37) % 11) / 10.0 for s in cur for t in s["input_ids"]])
        cur.clear()

    for s in samples:
        if cur and (not packing or sum(len(c["input_ids"]) for c in cur) + len(s["input_ids"]) > max_len):
            flush()
        cur.append(s)
    flush()
    return cols


def grid_sweep(plan: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
    """plan.sweep for a grid whose trial i sets trials[i] (dotted keys) on the plan's config, as the compiler
    records it: each trial's full config (output_dir <out>/trial-i), the plan's derived numbers."""
    from loft.runtime.sweep.space import with_values

    records = []
    for i, values in enumerate(trials):
        cfg = with_values(plan["config"], values)
        cfg["output_dir"] = f"{plan['config']['output_dir']}/trial-{i}"
        d = copy.deepcopy(plan["derived"])
        for key in ("micro_batch_size", "gradient_accumulation_steps", "warmup_steps"):
            d[key] = cfg["training"].get(key, d.get(key))
        records.append({"trial": i, "overrides": values, "config": cfg, "derived": d, "estimate": None,
                        "fits": None})
    space: dict[str, Any] = {}
    for values in trials:
        for k, v in values.items():
            space.setdefault(k, {"type": "categorical", "values": []})["values"].append(v)
    return {"method": "grid", "metric": "train_loss", "direction": "minimize", "pruner": "none",
            "pruner_startup_trials": 2, "seed": 0, "parallel": "auto",
            "budget": {"trials": None, "steps_per_trial": None, "wall_time_s": None}, "space": space,
            "base_trial": None, "trials": records}


def make_bundle(tmp: Path, model_dir: Path, overrides: dict[str, Any] | None = None, *, n_train: int = 96,
                n_eval: int = 16, ambiguity: bool = False, plan_extra: dict[str, Any] | None = None,
                trials: list[dict[str, Any]] | None = None) -> Path:
    from datasets import Dataset
    from transformers import AutoTokenizer

    run = tmp / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "model").unlink(missing_ok=True) if (run / "model").is_symlink() else None
    if not (run / "model").exists():
        (run / "model").symlink_to(model_dir, target_is_directory=True)
    config = copy.deepcopy(BASE_CONFIG)
    for k, v in (overrides or {}).items():
        set_dotted(config, k, v)
    t = config["training"]
    plan: dict[str, Any] = {
        "format": 1, "loft_version": "0.1.0", "name": config["name"],
        "config": config,
        "model": {"source": "config.json", "id": None, "path": "model", "revision": None},
        "template": {"file": "chat_template.jinja"},
        "derived": {"world_size": 1, "micro_batch_size": t["micro_batch_size"],
                    "gradient_accumulation_steps": t["gradient_accumulation_steps"],
                    "global_batch_size": t["global_batch_size"] or (
                        t["micro_batch_size"] * t["gradient_accumulation_steps"]
                        if isinstance(t["micro_batch_size"], int) and isinstance(t["gradient_accumulation_steps"], int)
                        else None),
                    "warmup_steps": t["warmup_steps"]},
        "launch": {"target": "local", "launcher": "python", "deepspeed_config": None},
        "sweep": None, "warnings": [],
    }
    for k, v in (plan_extra or {}).items():
        set_dotted(plan, k, v)
    plan = complete(plan)  # the rest from a compiled plan, checked against plan.schema.json
    if trials is not None:  # trials over the completed plan, as the compiler records them
        plan["sweep"] = grid_sweep(plan, trials)
        assert_valid(plan)
    (run / "plan.lock").write_text(json.dumps(plan, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    (run / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}", encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    max_len = int(config["sequence"]["max_length"])
    packing = bool(config["sequence"]["packing"])
    prepared = run / config["output_dir"] / "prepared"
    Dataset.from_dict(rows(tokenized_samples(tok, n_train, max_len), packing, max_len, ambiguity)).save_to_disk(
        str(prepared / "train"))
    if n_eval:
        Dataset.from_dict(rows(tokenized_samples(tok, n_eval, max_len, offset=1000), packing, max_len,
                               ambiguity)).save_to_disk(str(prepared / "eval"))
    # what prepare writes beside the splits: the plan's step formula over the prepared rows
    from loft.runtime import schedule

    train_rows = len(Dataset.load_from_disk(str(prepared / "train")))
    glob = plan["derived"]["global_batch_size"]
    names = [d["name"] for d in plan["config"]["data"]["datasets"]]
    blend = {name: {"available": train_rows if i == 0 else 0, "drawn": train_rows if i == 0 else 0}
             for i, name in enumerate(names)}
    schedule.write(prepared, schedule.resolve(plan["config"]["training"], train_rows,
                                              glob if isinstance(glob, int) else None), blend)
    return run


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def losses(run: Path) -> list[tuple[int, float]]:
    """(step, loss) per logged training step of a bundle's run."""
    return [(r["step"], r["loss"]) for r in read_jsonl(run / "out" / "metrics.jsonl") if "loss" in r]


def runtime_env(**extra: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
                "PYTHONPATH": str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
    env.update(extra)
    return env


def wait_for_step(run: Path, step: int, proc: Any, timeout: float = 180.0) -> int:
    """Block until metrics.jsonl shows ``step`` (returns the step seen); fails if the process exits first."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = max((s for s, _ in losses(run)), default=0)
        if seen >= step:
            return seen
        if proc.poll() is not None:
            raise AssertionError(f"training exited (rc {proc.returncode}) before step {step}")
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def env_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw if b"=" in kv)
