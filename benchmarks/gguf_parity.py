"""GGUF written by loft vs transformers: greedy tokens through llama.cpp (llama-cpp-python), per quant type.

    .venv/bin/python benchmarks/gguf_parity.py [--prompts 8] [--tokens 16]

Builds the tiny Llama model of examples/tiny.py with weights large enough to give peaked logits, exports
f32 / f16 / q8_0 (and q4_k_m through llama.cpp's quantizer), and reports for each: export seconds, file
size, and the share of greedy tokens equal to transformers' (per prompt: tokens up to the first difference).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args()
    import llama_cpp
    import torch
    from loft.runtime.gguf_export import export
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from examples.tiny import build_model

    lines = [json.loads(x)["messages"][0]["content"] for x in
             (ROOT / "examples" / "data" / "chat.jsonl").read_text().splitlines()[: args.prompts]]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "m", hidden_size=128, layers=4, initializer_range=0.2)
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
        prompts = [tok.encode(f"user: {t}\nassistant:", add_special_tokens=False) for t in lines]
        refs = []
        with torch.no_grad():
            for p in prompts:
                out = model.generate(input_ids=torch.tensor([p]), max_new_tokens=args.tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=None)
                refs.append(out[0, len(p):].tolist())
        print("| quant | export s | size KiB | greedy tokens equal to transformers (prefix) |")
        print("|---|---:|---:|---:|")
        for quant in ("f32", "f16", "q8_0", "q4_k_m"):
            stage = Path(tmp) / quant
            stage.mkdir()
            t0 = time.perf_counter()
            [name], _ = export(model_dir, stage, quant, "tiny")
            secs = time.perf_counter() - t0
            llm = llama_cpp.Llama(model_path=str(stage / name), n_ctx=256, n_threads=1, verbose=False, seed=0)
            same = total = 0
            for p, ref in zip(prompts, refs, strict=True):
                got = []
                for t in llm.generate(p, temp=0.0, top_k=1, reset=True):
                    got.append(t)
                    if len(got) == len(ref):
                        break
                prefix = next((i for i, (a, b) in enumerate(zip(got, ref, strict=False)) if a != b), len(ref))
                same += prefix
                total += len(ref)
            size = (stage / name).stat().st_size / 1024
            print(f"| {quant} | {secs:.2f} | {size:.0f} | {same}/{total} ({same / total:.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
