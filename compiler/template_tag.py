"""Auto-tagging: insert `{% generation %}` blocks into an untagged chat template, only where parity is proven.

How it works (no guessing is trusted):
1. Find every `{{ … }}` output expression in the source. Instrument each one on its own (wrap it in a
   generation block) and render conversations whose messages hold recognisable texts: the expressions
   that print an assistant message's text are the ones to tag.
2. Such an expression must be a `+` chain (`header + content + eot + '\\n'`) with exactly one operand
   mentioning `content` and, after it, operands that evaluate to the end-of-turn token (a string literal
   is split where the token ends). It is rewritten as `{{ header }}{% generation %}{{ content + eot }}
   {% endgeneration %}{{ '\\n' }}`; an expression shared with user turns gets an
   `{% if message['role'] == 'assistant' %}` around the tagged form and keeps the original in `{% else %}`.
   Whitespace markers (`-`, `+`) are carried over so that trim_blocks/lstrip_blocks behave as before.
3. Proof: the tagged template must render byte-identical text to the original on every probe conversation,
   and its spans must cover exactly each assistant text plus the end-of-turn token. Otherwise: refused,
   with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .template_env import compile_template, has_generation_tags, render
from .template_probes import (
    DEFAULT_SPECIALS,
    attempt,
    detect_end_of_turn,
    parity_failures,
    probe_conversations,
    sentinel,
    sentinel_conversations,
    span_problems,
)


@dataclass
class TagResult:
    ok: bool
    text: str | None
    reason: str  # why it was refused, or what was tagged
    end_of_turn: str | None = None
    tagged_lines: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Expr:
    start: int  # index of '{{'
    end: int  # index after '}}'
    inner: str  # the expression text between the markers
    lflag: str  # '-', '+' or ''
    rflag: str
    line: int


def _scan_string(text: str, i: int) -> int:
    """Index after the string literal starting at text[i] (a quote)."""
    q = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == q:
            return i + 1
        i += 1
    return i


def _find_close(text: str, i: int, close: str) -> int:
    """Index of `close` after i, skipping string literals (Jinja strings may hold '}}')."""
    while i < len(text):
        if text[i] in "'\"":
            i = _scan_string(text, i)
            continue
        if text.startswith(close, i):
            return i
        i += 1
    return -1


def find_expressions(text: str) -> list[_Expr]:
    """Every `{{ … }}` in the template source, skipping comments and {% raw %} blocks."""
    out: list[_Expr] = []
    i = 0
    while True:
        m = re.compile(r"\{\{|\{%|\{#").search(text, i)
        if not m:
            return out
        start = m.start()
        if m.group() == "{#":
            end = text.find("#}", start + 2)
            i = len(text) if end < 0 else end + 2
            continue
        close = "}}" if m.group() == "{{" else "%}"
        end = _find_close(text, start + 2, close)
        if end < 0:
            return out
        body = text[start + 2:end]
        if m.group() == "{%":
            i = end + 2
            if re.match(r"[-+]?\s*raw\s*[-+]?$", body):
                endraw = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}").search(text, i)
                i = endraw.end() if endraw else len(text)
            continue
        lflag = body[0] if body[:1] in ("-", "+") else ""
        rflag = body[-1] if body[-1:] in ("-", "+") else ""
        inner = body[len(lflag): len(body) - len(rflag)]
        out.append(_Expr(start, end + 2, inner, lflag, rflag, text.count("\n", 0, start) + 1))
        i = end + 2


def split_plus(expr: str) -> list[str] | None:
    """Top-level operands of a `+` chain, or None when other low-precedence operators make splitting unsafe."""
    parts: list[str] = []
    depth, i, last = 0, 0, 0
    masked = []  # expression with strings blanked, to look for operator words at depth 0
    while i < len(expr):
        c = expr[i]
        if c in "'\"":
            j = _scan_string(expr, i)
            masked.append(" " * (j - i) if depth == 0 else "")
            i = j
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "+" and depth == 0:
            parts.append(expr[last:i])
            last = i + 1
            masked.append(" ")
            i += 1
            continue
        masked.append(c if depth == 0 else " ")
        i += 1
    parts.append(expr[last:])
    top = "".join(masked)
    if re.search(r"[~<>]|==|!=|(?<![\w.])-|\b(if|else|and|or|not|in|is)\b", top):
        return None
    parts = [p.strip() for p in parts]
    return parts if all(parts) else None


_STRING = re.compile(r"""^(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")$""", re.DOTALL)


def _literal(value: str) -> str:
    """A Jinja string literal for `value` (single-quoted, escapes for quote, backslash and control chars)."""
    out = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return "'" + out.replace("\t", "\\t") + "'"


def _evaluate(operand: str, specials: Mapping[str, Any]) -> str | None:
    try:
        return render("{{ " + operand + " }}", [], False, **dict(specials))
    except Exception:
        return None


def _instrument(text: str, e: _Expr) -> str:
    wrapped = (f"{{{{{e.lflag} '' }}}}{{% generation %}}{{{{{e.inner}}}}}{{% endgeneration %}}"
               f"{{{{ '' {e.rflag}}}}}")
    return text[:e.start] + wrapped + text[e.end:]


def _emitted_roles(text: str, specials: Mapping[str, Any]) -> set[str]:
    """Roles whose sentinel texts appear inside the (single instrumented) generation span."""
    roles: set[str] = set()
    for conv in sentinel_conversations():
        for agp in (False, True):
            out = attempt(text, conv, agp, specials)
            if out.rendered is None:
                continue
            for span in out.rendered.span_texts():
                for i, m in enumerate(conv):
                    if sentinel(str(m["role"]), i) in span:
                        roles.add(str(m["role"]))
    return roles


def _message_var(operand: str, text: str, pos: int) -> str | None:
    m = re.search(r"\b([A-Za-z_]\w*)\s*(?:\[\s*['\"]content['\"]\s*\]|\.content\b)", operand)
    if m:
        return m.group(1)
    loops = list(re.finditer(r"\{%[-+]?\s*for\s+([A-Za-z_]\w*)\s+in\s+[^%]*?messages", text[:pos]))
    return loops[-1].group(1) if loops else None


class _Refuse(Exception):
    pass


def _joined(e: _Expr, nxt: _Expr | None, eot: str, specials: Mapping[str, Any]) -> _Expr:
    """`{{ content }}{{ eos_token }}`: when the end-of-turn token comes from the very next expression (nothing
    between them), treat the pair as one `(content) + (eos)` expression so both land in one block."""
    if nxt is None or nxt.start != e.end:
        return e
    value = _evaluate(nxt.inner, specials)
    if value is None or not value.lstrip().startswith(eot):
        return e
    return _Expr(e.start, nxt.end, f" ({e.inner.strip()}) + ({nxt.inner.strip()}) ", e.lflag, nxt.rflag, e.line)


def _rewrite(text: str, e: _Expr, shared: bool, eot: str, specials: Mapping[str, Any],
             nxt: _Expr | None = None) -> str:
    where = f"line {e.line}"
    e = _joined(e, nxt, eot, specials)
    ops = split_plus(e.inner)
    if ops is None:
        raise _Refuse(f"{where}: the expression printing the assistant text is not a plain '+' chain "
                      f"({e.inner.strip()[:80]!r}), so it cannot be split around the content")
    idx = [k for k, op in enumerate(ops) if re.search(r"\bcontent\b", op)]
    if len(idx) != 1:
        raise _Refuse(f"{where}: expected exactly one operand mentioning the message content, found {len(idx)}")
    i = idx[0]
    values = []
    for op in ops[i + 1:]:
        v = _evaluate(op, specials)
        if v is None:
            raise _Refuse(f"{where}: cannot evaluate {op!r} after the content (it depends on loop state)")
        values.append(v)
    after = "".join(values)
    p = after.find(eot)
    if p < 0 or after[:p].strip():
        raise _Refuse(f"{where}: the end-of-turn token {eot!r} is not printed right after the assistant content "
                      "by the same expression (it must be inside the generation block)")
    end = p + len(eot)
    body, suffix = [ops[i]], []
    acc = 0
    for k, (op, v) in enumerate(zip(ops[i + 1:], values, strict=True)):
        if acc >= end:
            suffix = ops[i + 1 + k:]
            break
        if acc + len(v) <= end:
            body.append(op)
        else:
            if not _STRING.match(op):
                raise _Refuse(f"{where}: the end-of-turn token ends inside {op!r}, which is not a string literal")
            cut = end - acc
            body.append(_literal(v[:cut]))
            suffix = [_literal(v[cut:]), *ops[i + 2 + k:]]
            break
        acc += len(v)
    prefix = ops[:i]
    pieces: list[tuple[str, str]] = []
    if prefix:
        pieces.append(("expr", " + ".join(prefix)))
    pieces += [("tag", "generation"), ("expr", " + ".join(body)), ("tag", "endgeneration")]
    if suffix:
        pieces.append(("expr", " + ".join(suffix)))
    if shared:
        var = _message_var(ops[i], text, e.start)
        if var is None:
            raise _Refuse(f"{where}: the expression prints user and assistant turns alike and the message "
                          "variable cannot be told, so no role condition can be added")
        pieces = [("tag", f"if {var}['role'] == 'assistant'"), *pieces,
                  ("tag", "else"), ("expr", e.inner.strip()), ("tag", "endif")]
    out = []
    for n, (kind, body_text) in enumerate(pieces):
        first, last = n == 0, n == len(pieces) - 1
        if kind == "expr":
            lf = e.lflag if first else ""
            rf = e.rflag if last else ""
            out.append(f"{{{{{lf} {body_text} {rf}}}}}")
        else:
            lf = (e.lflag or "+") if first else ""
            rf = (e.rflag or "+") if last else ""
            out.append(f"{{%{lf} {body_text} {rf}%}}")
    return text[:e.start] + "".join(out) + text[e.end:]


def tag_template(text: str, *, end_of_turn: str | None = None,
                 specials: Mapping[str, Any] | None = None) -> TagResult:
    """Insert generation tags into `text` where parity can be proven; otherwise refuse with a reason."""
    sp = dict(specials or DEFAULT_SPECIALS)
    if has_generation_tags(text):
        return TagResult(False, None, "the template already has {% generation %} tags "
                         "(use `loftc templates check` to verify them)")
    try:
        compile_template(text)
    except ConfigError as err:
        return TagResult(False, None, err.render())
    eot = end_of_turn or detect_end_of_turn(text, sp)
    if not eot:
        return TagResult(False, None, "no end-of-turn token follows the assistant messages in the render "
                         "(pass --end-of-turn if it is not special-token-shaped)")
    targets: list[tuple[_Expr, bool]] = []
    exprs = find_expressions(text)
    following = {e.start: exprs[k + 1] for k, e in enumerate(exprs[:-1])}
    for e in exprs:
        if _STRING.match(e.inner.strip()) or e.inner.strip() in ("bos_token", "eos_token"):
            continue  # a constant never prints a message's text
        roles = _emitted_roles(_instrument(text, e), sp)
        if "assistant" in roles:
            targets.append((e, bool(roles - {"assistant"})))
    if not targets:
        return TagResult(False, None, "no single {{ … }} expression prints the assistant messages' text",
                         end_of_turn=eot)
    tagged = text
    try:
        for e, shared in sorted(targets, key=lambda t: -t[0].start):  # from the end: offsets stay valid
            tagged = _rewrite(tagged, e, shared, eot, sp, following.get(e.start))
    except _Refuse as r:
        return TagResult(False, None, str(r), end_of_turn=eot)
    convs = probe_conversations()
    fails = parity_failures(tagged, text, convs, specials=sp, limit=1)
    if fails:
        return TagResult(False, None, "the tagged template would render differently: " + fails[0], end_of_turn=eot)
    problems = span_problems(tagged, eot, sp, limit=1)
    if problems:
        return TagResult(False, None, "the generation blocks would not cover exactly the assistant text and "
                         "end-of-turn token: " + problems[0], end_of_turn=eot)
    lines = sorted(e.line for e, _ in targets)
    return TagResult(True, tagged, f"tagged {len(targets)} expression(s) at line(s) "
                     + ", ".join(map(str, lines)) + f"; parity proven on {len(convs) * 2} renders",
                     end_of_turn=eot, tagged_lines=lines)
