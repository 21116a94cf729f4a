"""vLLM in its own environment: the hook eval uses to generate with it.

vLLM pins its own torch (vllm 0.33 needs torch 2.14; the training lock has 2.13), so it can never share
the training environment without a resolver backtracking to a years-old vLLM. `launch.sh eval` makes (once)
or reuses a venv from `requirements/eval-vllm.lock` and exports its interpreter as `LOFT_VLLM_PYTHON`.
Eval, running in the training environment, asks `vllm_python()` whether that env exists, and `generate()`
runs `python -m loft.runtime.vllm_env` there: the request goes in as JSON on stdin, texts come back as
JSON on stdout. That child imports only vLLM and this module (the bundle is on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ENV_VAR = "LOFT_VLLM_PYTHON"


def vllm_python() -> str | None:
    """The eval env's interpreter when launch.sh made one (and it exists), else None: use transformers."""
    path = os.environ.get(ENV_VAR)
    return path if path and Path(path).is_file() and os.access(path, os.X_OK) else None


def generate(python: str, request: dict[str, Any], timeout: float | None = None) -> list[str]:
    """Texts for `request` = {"model": dir, "tokenizer": dir, "lora": dir | None, "lora_rank": int,
    "prompts": [[token ids]], "max_new_tokens": int, "dtype": "bfloat16" | ..., "max_model_len": int},
    generated greedily by vLLM in the eval env. Raises RuntimeError with vLLM's last error line."""
    root = Path(__file__).resolve().parents[2]  # the folder holding loft/ (the bundle)
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([python, "-m", "loft.runtime.vllm_env"], input=json.dumps(request), text=True,
                          capture_output=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or [f"exit {proc.returncode}"]
        raise RuntimeError(f"vLLM in {python} failed: {tail[0]}")
    texts = json.loads(proc.stdout.strip().splitlines()[-1])["texts"]
    return [str(t) for t in texts]


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    """Runs inside the eval env."""
    from vllm import LLM, SamplingParams

    lora = request.get("lora")
    llm = LLM(model=request["model"], tokenizer=request.get("tokenizer") or request["model"],
              dtype=request.get("dtype", "auto"), max_model_len=request.get("max_model_len"),
              enable_lora=bool(lora), max_lora_rank=int(request.get("lora_rank") or 16), seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=int(request["max_new_tokens"]))
    kwargs: dict[str, Any] = {}
    if lora:
        from vllm.lora.request import LoRARequest

        kwargs["lora_request"] = LoRARequest("loft", 1, lora)
    prompts = [{"prompt_token_ids": ids} for ids in request["prompts"]]
    outs = llm.generate(prompts, params, **kwargs)
    return {"texts": [o.outputs[0].text for o in outs]}


if __name__ == "__main__":
    result = _serve(json.loads(sys.stdin.read()))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
