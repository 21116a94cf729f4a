"""Pure transforms of one conversation (OpenAI `messages` rows). Each takes the row's own RNG, seeded by the
seed and the row's content: the output depends only on the row, the config and the seed, never on the file
it sits in, its position, or timing."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

Messages = list[dict[str, Any]]


def row_rng(seed: int, row: dict[str, Any], op: str) -> random.Random:
    text = json.dumps(row, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{seed}\0{op}\0{text}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def system_pool(messages: Messages, cfg: dict[str, Any], rng: random.Random) -> tuple[Messages, bool]:
    """Give the conversation a system message drawn from `pool` (mode add_if_missing | replace | prepend)."""
    pool = cfg.get("pool") or []
    if not pool:
        return messages, False
    mode = cfg.get("mode", "add_if_missing")
    text = rng.choice(pool)
    has = bool(messages) and messages[0].get("role") == "system"
    if has and mode == "add_if_missing":
        return messages, False
    if has and mode == "replace":
        return [{**messages[0], "content": text}, *messages[1:]], True
    if has and mode == "prepend":
        return [{**messages[0], "content": f"{text}\n\n{messages[0]['content']}"}, *messages[1:]], True
    return [{"role": "system", "content": text}, *messages], True


def persona(messages: Messages, cfg: dict[str, Any], rng: random.Random) -> tuple[Messages, bool]:
    """With probability `probability`, put a persona from `pool` into the system message (`template` with
    {persona}; a system message is created when there is none)."""
    pool = cfg.get("pool") or []
    if not pool or rng.random() >= float(cfg.get("probability", 1.0)):
        return messages, False
    text = str(cfg.get("template") or "{persona}").format(persona=rng.choice(pool))
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}".strip()}, *messages[1:]], True
    return [{"role": "system", "content": text}, *messages], True


def split_text(text: str, max_chars: int) -> list[str]:
    """Paragraph-boundary pieces of at most `max_chars` (a paragraph longer than that stays whole)."""
    pieces: list[str] = []
    for para in text.split("\n\n"):
        if pieces and len(pieces[-1]) + 2 + len(para) <= max_chars:
            pieces[-1] = f"{pieces[-1]}\n\n{para}"
        else:
            pieces.append(para)
    return [p for p in pieces if p.strip()] or [text]


def split_long_replies(messages: Messages, cfg: dict[str, Any]) -> tuple[Messages, int]:
    """An assistant reply over `max_chars` becomes several assistant turns, each after a `continue_prompt`
    user turn. Returns the messages and how many replies were split."""
    limit = int(cfg.get("max_chars") or 0)
    if limit <= 0:
        return messages, 0
    prompt = str(cfg.get("continue_prompt") or "Continue.")
    out: Messages = []
    split = 0
    for m in messages:
        content = m.get("content")
        if m.get("role") != "assistant" or not isinstance(content, str) or len(content) <= limit or m.get("tool_calls"):
            out.append(m)
            continue
        pieces = split_text(content, limit)
        if len(pieces) == 1:
            out.append(m)
            continue
        split += 1
        for i, piece in enumerate(pieces):
            if i:
                out.append({"role": "user", "content": prompt})
            out.append({**m, "content": piece})
    return out, split


def style_targets(messages: Messages, cfg: dict[str, Any], rng: random.Random) -> list[int]:
    """Indices of the assistant replies to rewrite (each with probability `probability`)."""
    p = float(cfg.get("probability", 1.0))
    return [i for i, m in enumerate(messages)
            if m.get("role") == "assistant" and isinstance(m.get("content"), str) and m["content"].strip()
            and not m.get("tool_calls") and rng.random() < p]
