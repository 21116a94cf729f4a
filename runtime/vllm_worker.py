"""Generate with vLLM for the eval stage, in vLLM's own environment.

vLLM pins its own torch, so on a GPU box it lives in a separate virtualenv (``launch.sh eval`` makes it and
exports its interpreter as ``LOFT_VLLM_PYTHON``). The eval stage then runs this file there as a script:

    $LOFT_VLLM_PYTHON vllm_worker.py REQUEST.json RESPONSE.json

It imports only the standard library and vLLM (never loft, torch or transformers directly), so it runs in
an environment that has nothing else installed. The same ``generate`` is called in-process when vLLM is
importable in the runtime's own environment.

Request: ``{"model", "tokenizer", "dtype", "seed", "max_tokens", "prompts": [[token ids]],
"variants": [{"name", "adapter": path | null}], "max_lora_rank"}``; every variant shares one engine (the base
model, with LoRA slots when a variant has an adapter). Response: ``{"outputs": {name: [text per prompt]}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's LoRA slots accept


def lora_slot(rank: int) -> int:
    """The smallest vLLM max_lora_rank that holds an adapter of rank ``rank``."""
    return next((r for r in LORA_RANKS if r >= rank), rank)


def generate(request: dict[str, Any]) -> dict[str, Any]:
    from vllm import LLM, SamplingParams

    variants = request["variants"]
    lora = any(v.get("adapter") for v in variants)
    kwargs: dict[str, Any] = {"enable_lora": lora}
    if lora:
        kwargs["max_lora_rank"] = lora_slot(int(request.get("max_lora_rank") or 16))
    llm = LLM(model=request["model"], tokenizer=request["tokenizer"], dtype=request["dtype"],
              seed=int(request["seed"]), **kwargs)
    params = SamplingParams(temperature=0.0, max_tokens=int(request["max_tokens"]), seed=int(request["seed"]))
    prompts = [{"prompt_token_ids": list(p)} for p in request["prompts"]]
    outputs: dict[str, list[str]] = {}
    for i, variant in enumerate(variants):
        extra: dict[str, Any] = {}
        if variant.get("adapter"):
            from vllm.lora.request import LoRARequest

            extra["lora_request"] = LoRARequest(variant["name"], i + 1, variant["adapter"])
        outs = llm.generate(prompts, params, **extra)
        outputs[variant["name"]] = [o.outputs[0].text for o in outs]
    return {"outputs": outputs}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: vllm_worker.py REQUEST.json RESPONSE.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        request = json.load(f)
    response = generate(request)
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(response, f, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
