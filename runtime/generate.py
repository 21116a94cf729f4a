"""Generation for the eval stage: one decoding (greedy, seeded) through vLLM or transformers.

Which backend runs is decided by ``choose_backend`` from the plan's ``eval.backend`` and what the machine
has: vLLM in its own environment through ``vllm_worker.py`` (``LOFT_VLLM_PYTHON`` names that interpreter;
launch.sh sets it), else transformers' ``generate``. vLLM in this process only when ``eval.backend: vllm`` asks
for it (e.g. run from vLLM's env); ``auto`` never uses a vllm that merely imports in the training env.
``eval.backend: vllm`` where neither vLLM is usable is an error, never a silent fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .train.model import StageError

WORKER = Path(__file__).with_name("vllm_worker.py")
VLLM_PYTHON_ENV = "LOFT_VLLM_PYTHON"


@dataclass(frozen=True)
class Backend:
    name: str  # "vllm" | "transformers"
    python: str | None = None  # vLLM's interpreter when it runs in its own environment
    reason: str = ""

    def describe(self) -> str:
        where = f" (own environment: {self.python})" if self.python else ""
        return f"{self.name}{where}: {self.reason}" if self.reason else f"{self.name}{where}"


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": "greedy", "max_new_tokens": self.max_new_tokens, "seed": self.seed}


def choose_backend(want: str, *, cuda: bool, vllm_here: bool, vllm_python: str | None) -> Backend:
    """The generation backend for ``eval.backend`` (auto | vllm | transformers) given the machine's facts."""
    if want == "transformers":
        return Backend("transformers", reason="eval.backend: transformers")
    # auto: vLLM only from its own environment (it pins its own torch); a vllm that happens to import in the
    # training env is an unlocked install, so only an explicit `eval.backend: vllm` may use it in-process.
    if cuda and vllm_python:
        return Backend("vllm", python=vllm_python, reason=f"{VLLM_PYTHON_ENV} is set, CUDA visible")
    if cuda and vllm_here and want == "vllm":
        return Backend("vllm", reason="eval.backend: vllm, vllm importable here, CUDA visible")
    why = ("no CUDA GPU is visible" if not cuda else
           f"{VLLM_PYTHON_ENV} names no interpreter (vLLM's own environment)")
    if want == "vllm":
        raise StageError(f"eval.backend: vllm cannot run: {why} (vLLM lives in its own environment on the GPU "
                         f"box: `bash RUN/launch.sh eval` sets {VLLM_PYTHON_ENV}; or use eval.backend: auto)")
    return Backend("transformers", reason=why)


def detect_backend(want: str) -> Backend:
    """``choose_backend`` with this machine's facts (imports nothing heavy unless CUDA is there)."""
    import importlib.util

    import torch

    cuda = bool(torch.cuda.is_available())
    python = os.environ.get(VLLM_PYTHON_ENV) or None
    if python and not Path(python).is_file():
        raise StageError(f"{VLLM_PYTHON_ENV}={python}: no such interpreter")
    return choose_backend(want, cuda=cuda, vllm_here=importlib.util.find_spec("vllm") is not None,
                          vllm_python=python)


def generate_transformers(model: Any, tok: Any, prompts: list[list[int]], decoding: Decoding) -> list[str]:
    """Greedy continuations (seeded, so a sampling config change would stay reproducible)."""
    import torch

    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    from .progress import track

    texts = []
    torch.manual_seed(decoding.seed)
    for ids in track(prompts, "generate", unit="prompts"):
        inp = torch.tensor([ids], dtype=torch.long, device=device)
        with torch.no_grad():
            gen = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp),
                                 max_new_tokens=decoding.max_new_tokens, do_sample=False, pad_token_id=pad)
        texts.append(tok.decode(gen[0, len(ids):], skip_special_tokens=True))
    return texts


def vllm_request(model: str, tokenizer: str, dtype: str, prompts: list[list[int]], decoding: Decoding,
                 variants: list[dict[str, Any]], max_lora_rank: int | None = None) -> dict[str, Any]:
    """The worker's request (see vllm_worker.py): one engine on ``model``, one pass per variant."""
    return {"model": model, "tokenizer": tokenizer,
            "dtype": {"bf16": "bfloat16", "fp16": "float16"}.get(dtype, "float32"),
            "seed": decoding.seed, "max_tokens": decoding.max_new_tokens, "prompts": [list(p) for p in prompts],
            "variants": variants, "max_lora_rank": max_lora_rank}


def run_vllm(backend: Backend, request: dict[str, Any]) -> dict[str, list[str]]:
    """Outputs per variant name, from vLLM here or from the worker in vLLM's own environment."""
    if backend.python is None:
        from .vllm_worker import generate

        return dict(generate(request)["outputs"])
    with tempfile.TemporaryDirectory(prefix="loft-vllm-") as tmp:
        req, resp = Path(tmp) / "request.json", Path(tmp) / "response.json"
        req.write_text(json.dumps(request), encoding="utf-8")
        proc = subprocess.run([backend.python, str(WORKER), str(req), str(resp)], capture_output=True, text=True)
        if proc.returncode != 0 or not resp.is_file():
            raise StageError(f"vLLM ({backend.python}) failed with exit {proc.returncode}:\n{proc.stderr[-3000:]}")
        outputs = json.loads(resp.read_text(encoding="utf-8"))["outputs"]
    for v in request["variants"]:
        if len(outputs.get(v["name"], [])) != len(request["prompts"]):
            raise StageError(f"vLLM returned {len(outputs.get(v['name'], []))} outputs for {v['name']}, "
                             f"expected {len(request['prompts'])}")
    return {k: list(v) for k, v in outputs.items()}
