"""Probe conversations and the parity / span checks built on them.

Parity of two templates cannot be proven by reading them, so loft proves it by rendering: a fixed, diverse
set of conversations (with and without a system message, one and many turns, empty, unicode and multi-line
content, add_generation_prompt true and false) must render byte-identical text. The same probes, with a
recognisable text in every message, show where the generation spans fall. Deterministic on purpose: the
result of `loftc templates check` must not change between runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2.exceptions import TemplateError

from .template_env import Rendered, TemplateLimitError, TemplateSecurityError, render_spans

Message = dict[str, Any]
FROZEN_NOW = datetime(2025, 1, 2, 3, 4, 5)
DEFAULT_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>"}

# Texts that survive every vendor's trim/strip and cannot occur in a template's own literals.
_CONTENTS = ("", "Hello there.", "  padded with spaces  ", "héllo wörld — 你好 🙂", "line one\n\nline two\n",
             "code: {{ x }} {% raw %} <b>&amp;</b>")
_SHAPES: tuple[str, ...] = ("ua", "sua", "uaua", "suaua", "u", "su", "uau", "suauau", "ua" * 4)


def sentinel(role: str, index: int) -> str:
    return f"Probe{role.capitalize()}Text{index}"


def _conversation(shape: str, make: Any) -> list[Message]:
    roles = {"s": "system", "u": "user", "a": "assistant"}
    return [{"role": roles[c], "content": make(roles[c], i)} for i, c in enumerate(shape)]


def sentinel_conversations() -> list[list[Message]]:
    """Conversations whose every message text is unique and recognisable (see `sentinel`)."""
    return [_conversation(shape, sentinel) for shape in _SHAPES]


def probe_conversations() -> list[list[Message]]:
    """Sentinel conversations plus ones with edge-case content (empty, unicode, newlines, Jinja syntax)."""
    out = sentinel_conversations()
    for k, text in enumerate(_CONTENTS):
        for shape in ("ua", "sua", "uaua"):
            out.append(_conversation(shape, lambda role, i, k=k, text=text: text if (i + k) % 2 else
                                     (text or "x") + f" ({role})"))
    return out


@dataclass(frozen=True)
class Outcome:
    """A render's text and spans, or the error it raised (parity counts 'both raise' as equal)."""

    rendered: Rendered | None
    error: str | None


def attempt(text: str, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool,
            specials: Mapping[str, Any] | None = None, now: datetime = FROZEN_NOW) -> Outcome:
    try:
        return Outcome(render_spans(text, messages, add_generation_prompt, now=now,
                                    **dict(specials or DEFAULT_SPECIALS)), None)
    except (TemplateSecurityError, TemplateLimitError):
        raise
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as e:
        return Outcome(None, f"{type(e).__name__}: {e}")


def parity_failures(candidate: str, reference: str, conversations: Iterable[Sequence[Message]] | None = None,
                    specials: Mapping[str, Any] | None = None, limit: int = 3) -> list[str]:
    """Where `candidate` (tags ignored) renders differently from `reference`; [] when identical everywhere."""
    failures: list[str] = []
    for conv in conversations if conversations is not None else probe_conversations():
        for agp in (False, True):
            a = attempt(candidate, conv, agp, specials)
            b = attempt(reference, conv, agp, specials)
            if a.error is not None and b.error is not None:
                continue  # the reference rejects this shape (e.g. a system message); so does the candidate
            at = a.rendered.text if a.rendered else a.error
            bt = b.rendered.text if b.rendered else b.error
            if at != bt:
                roles = "/".join(str(m["role"]) for m in conv)
                failures.append(f"[{roles}] add_generation_prompt={agp}: got {at!r}, reference {bt!r}")
                if len(failures) >= limit:
                    return failures
    return failures


_TOKENISH = re.compile(r"\s?(<[^<>\s]{1,40}>|\[/?[A-Z_]{2,20}\])")


def detect_end_of_turn(text: str, specials: Mapping[str, Any] | None = None) -> str | None:
    """The special-token-looking string that follows an assistant message's text in the render."""
    for conv in sentinel_conversations():
        out = attempt(text, conv, False, specials)
        if out.rendered is None:
            continue
        for i, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            s = sentinel("assistant", i)
            pos = out.rendered.text.find(s)
            if pos >= 0:
                match = _TOKENISH.match(out.rendered.text, pos + len(s))
                if match:
                    return match.group(1)
    return None


def span_problems(text: str, end_of_turn: str | None, specials: Mapping[str, Any] | None = None,
                  limit: int = 5) -> list[str]:
    """What is wrong with the generation spans of a tagged template on the sentinel conversations: a span
    that misses an assistant message, holds another role's text or a role header, or does not end with the
    end-of-turn token."""
    problems: list[str] = []
    kinds: set[str] = set()

    def add(msg: str) -> bool:
        kind = re.sub(r"^\[[^\]]*\] |\d+|'.*", "", msg)  # one example per kind of problem
        if kind not in kinds:
            kinds.add(kind)
            problems.append(msg)
        return len(problems) >= limit

    for conv in sentinel_conversations():
        for agp in (False, True):
            out = attempt(text, conv, agp, specials)
            if out.rendered is None:
                continue
            r = out.rendered
            roles = "/".join(str(m["role"]) for m in conv)
            for i, m in enumerate(conv):
                s = sentinel(str(m["role"]), i)
                for pos in _find_all(r.text, s):
                    inside = any(a <= pos and pos + len(s) <= b for a, b in r.spans)
                    if m["role"] == "assistant" and not inside and add(
                            f"[{roles}] assistant message {i} is outside every generation block"):
                        return problems
                    if m["role"] != "assistant" and inside and add(
                            f"[{roles}] {m['role']} message {i} is inside a generation block"):
                        return problems
            for span in r.span_texts():
                if end_of_turn and not span.endswith(end_of_turn) and add(
                        f"[{roles}] a generation block does not end with the end-of-turn token "
                        f"{end_of_turn!r}: {span[-40:]!r}"):
                    return problems
                first = re.search(r"Probe\w+Text\d+", span)
                head = span[: first.start()] if first else ""
                if _TOKENISH.search(head) and not head.startswith("<think>") and add(
                        f"[{roles}] a generation block starts with a role header or special token "
                        f"{head[:40]!r}; loft's convention keeps headers outside"):
                    return problems
    return problems


def _find_all(haystack: str, needle: str) -> list[int]:
    out, start = [], 0
    while (pos := haystack.find(needle, start)) >= 0:
        out.append(pos)
        start = pos + 1
    return out


__all__ = ["DEFAULT_SPECIALS", "FROZEN_NOW", "Outcome", "TemplateSecurityError", "attempt", "detect_end_of_turn",
           "parity_failures", "probe_conversations", "sentinel", "sentinel_conversations", "span_problems"]
