"""Build tiny, offline model directories for the demo and the tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on the chat text that ships in
`examples/data/chat.jsonl` (from chatterbot-corpus, BSD-3), with the special tokens of a chat family;
the model is a small Llama-architecture config with seeded random weights.

    python examples/tiny.py OUT_DIR [--family llama3] [--no-weights]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHAT_DATA = HERE / "data" / "chat.jsonl"

# Special tokens per chat family: (bos, eos, pad, extra specials). Matches the vendors' tokenizer_config.
FAMILIES: dict[str, dict[str, object]] = {
    "llama3": {
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": "<|finetune_right_pad_id|>",
        "extra": ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>", "<|eom_id|>", "<|python_tag|>"],
    },
    "chatml": {
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "extra": ["<|im_start|>", "<tool_call>", "</tool_call>", "<think>", "</think>"],
    },
    "gemma": {
        "bos": "<bos>",
        "eos": "<eos>",
        "pad": "<pad>",
        "extra": ["<start_of_turn>", "<end_of_turn>"],
    },
    "mistral": {
        "bos": "<s>",
        "eos": "</s>",
        "pad": "<pad>",
        "extra": ["[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CALLS]"],
    },
    "phi3": {
        "bos": "<s>",
        "eos": "<|endoftext|>",
        "pad": "<|endoftext|>",
        "extra": ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    },
    "zephyr": {
        "bos": "<s>",
        "eos": "</s>",
        "pad": "<pad>",
        "extra": ["<|system|>", "<|user|>", "<|assistant|>"],
    },
}


# The demo's model (examples/demo.py): random weights with std 0.08 instead of transformers' 0.02. With 0.02
# the frozen base's logits stay within about ±1.3 (hidden 64), the loss cannot move far from ln(512) = 6.24
# and LoRA's progress is barely visible (6.25 → 6.16 in 40 steps at lr 1e-3, r 16); with 0.08 and the
# quickstart's lr 4e-3, r 32, 50 steps: train 6.50 → 5.30, eval 5.35 (measured on the 2-core dev box).
DEMO_INITIALIZER_RANGE = 0.08


def chat_texts(path: Path = CHAT_DATA) -> Iterator[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        for m in json.loads(line)["messages"]:
            yield m["content"]


def build_tokenizer(out: Path, family: str = "llama3", vocab_size: int = 512,
                    extra_specials: list[str] | None = None, chat_template: str | None = None,
                    texts: list[str] | None = None) -> Path:
    """Train a byte-level BPE on shipped chat text and save it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    specials = [t for t in (spec["bos"], spec["eos"], spec["pad"]) if t]
    specials += [t for t in list(spec["extra"]) + list(extra_specials or []) if t not in specials]  # type: ignore[call-overload]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts if texts is not None else list(chat_texts()), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"],
        additional_special_tokens=[t for t in specials if t not in (spec["bos"], spec["eos"], spec["pad"])],
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out


def build_model(out: Path, family: str = "llama3", weights: bool = True, hidden_size: int = 64,
                layers: int = 2, seed: int = 0, chat_template: str | None = None,
                initializer_range: float = 0.02) -> Path:
    """A tiny Llama-architecture model directory: config.json, tokenizer, and (optionally) random weights.

    `initializer_range` is the std of the random weights (transformers' default 0.02 keeps the logits of a
    hidden-64 model within about ±1.3, so a frozen random base stays near the uniform guess ln(vocab);
    the demo uses a larger one so that LoRA has logits it can move)."""
    from transformers import LlamaConfig

    build_tokenizer(out, family=family, chat_template=chat_template)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden_size // 4,
        max_position_embeddings=4096, tie_word_embeddings=True, initializer_range=initializer_range,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    if weights:
        import torch
        from transformers import LlamaForCausalLM

        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(str(out))
    else:
        config.save_pretrained(str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--family", default="llama3", choices=sorted(FAMILIES))
    ap.add_argument("--no-weights", action="store_true")
    ap.add_argument("--initializer-range", type=float, default=0.02,
                    help=f"std of the random weights (default 0.02; the demo uses {DEMO_INITIALIZER_RANGE})")
    args = ap.parse_args()
    build_model(args.out, family=args.family, weights=not args.no_weights, initializer_range=args.initializer_range)
    print(args.out)


if __name__ == "__main__":
    main()
