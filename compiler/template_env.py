"""The sandboxed Jinja environment chat templates render in, matching transformers' rules.

transformers 5.x renders chat templates in `ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True)` with the `{% generation %}` extension (AssistantTracker), `loopcontrols`, a `tojson`
filter that does not HTML-escape, and the globals `raise_exception` and `strftime_now`. loft renders the same
way so that what `loftc` checks is what the runtime's tokenizer will produce. Only jinja2 is imported here:
the compiler stays free of training libraries.

Two differences, both stricter: attribute access to Python internals (`''.__class__`) raises at once
instead of rendering an empty string, and the clock of `strftime_now` can be frozen (`now=`) for tests and
parity checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError, Diagnostic

# Matches a generation tag as transformers detects it (`{% generation %}`, with optional `-`/`+` markers).
GENERATION_TAG_RE = re.compile(r"\{%[-+]?\s*(end)?generation\s*[-+]?%\}")

_SPANS: ContextVar[tuple[list[str], list[tuple[int, int]]] | None] = ContextVar("loft_gen_spans", default=None)
_NOW: ContextVar[datetime | None] = ContextVar("loft_now", default=None)


class _GenerationTracker(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}`: renders its body unchanged and, while tracking, records the
    body's character span in the output (the same bookkeeping as transformers' AssistantTracker)."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_support"), [], [], body).set_lineno(lineno)

    def _support(self, caller: Any) -> str:
        rv: str = caller()
        tracking = _SPANS.get()
        if tracking is not None:
            blocks, spans = tracking
            start = len("".join(blocks))
            spans.append((start, start + len(rv)))
        return rv


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, but reaching for an unsafe attribute fails loudly at once."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")


class _Namespace(jinja2.utils.Namespace):
    """namespace() that refuses underscore names, as transformers' TemplateNamespace does."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # same signature trick as jinja's Namespace
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)


def _check_name(name: object) -> None:
    if isinstance(name, str) and name.startswith("_"):
        raise SecurityError(f"chat templates cannot store underscore-prefixed attributes on a namespace: {name!r}")


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return (_NOW.get() or datetime.now()).strftime(fmt)


def make_env() -> ImmutableSandboxedEnvironment:
    env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[_GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["namespace"] = _Namespace
    return env


_ENV = make_env()


class TemplateSecurityError(ConfigError):
    """A template reached for Python internals; the sandbox refused."""


class TemplateCompileError(ConfigError):
    """A template is not valid Jinja."""


@lru_cache(maxsize=256)
def compile_template(text: str) -> jinja2.Template:
    """Compile once per distinct text; syntax errors become a ConfigError naming the line."""
    try:
        return _ENV.from_string(text)
    except TemplateSyntaxError as e:
        raise TemplateCompileError([Diagnostic(
            f"chat template is not valid Jinja: {e.message}", key="template", line=e.lineno or 0,
            code="template-syntax",
        )]) from None


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]  # character spans of {% generation %} blocks, in output order

    def span_texts(self) -> list[str]:
        return [self.text[a:b] for a, b in self.spans]


@contextmanager
def frozen_clock(now: datetime | None) -> Iterator[None]:
    token = _NOW.set(now)
    try:
        yield
    finally:
        _NOW.reset(token)


def render_spans(text: str, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
                 *, now: datetime | None = None, **extra: Any) -> Rendered:
    """Render like `tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)` does, returning the
    text and the generation spans. Template errors (raise_exception, type errors) propagate as jinja2 /
    Python exceptions; a sandbox violation becomes `TemplateSecurityError`."""
    template = compile_template(text)
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    token = _SPANS.set((blocks, spans))
    try:
        with frozen_clock(now):
            for block in template.generate(messages=[dict(m) for m in messages],
                                           add_generation_prompt=add_generation_prompt, **extra):
                blocks.append(block)
    except SecurityError as e:
        raise TemplateSecurityError([Diagnostic(
            f"chat template tried to reach Python internals and the sandbox refused: {e}",
            key="template", code="template-unsafe",
            hint="chat templates may only format messages; remove the attribute access",
        )]) from None
    finally:
        _SPANS.reset(token)
    return Rendered("".join(blocks), tuple(spans))


def render(text: str, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
           *, now: datetime | None = None, **extra: Any) -> str:
    """The rendered conversation (generation tags render their body unchanged)."""
    return render_spans(text, messages, add_generation_prompt, now=now, **extra).text


# Whitespace a tag's markers make Jinja strip (trim_blocks/lstrip_blocks on, as transformers sets them).
_TAG_WITH_WS = re.compile(
    r"(?P<lead>(?:^[ \t]*)?)"  # indentation before a tag at the start of a line (lstrip_blocks)
    r"\{%(?P<l>[-+]?)\s*(?:end)?generation\s*(?P<r>[-+]?)%\}"
    r"(?P<trail>\n?)",  # newline right after the tag (trim_blocks)
    re.MULTILINE,
)


def strip_generation_tags(text: str) -> str:
    """Remove `{% generation %}`/`{% endgeneration %}` so the text renders as it did with the tags (no-op)
    ones. Deleting a tag must also delete the whitespace Jinja would have stripped around it."""
    out: list[str] = []
    pos = 0
    for m in _TAG_WITH_WS.finditer(text):
        before = text[pos:m.start()]
        lead = m.group("lead")
        if m.group("l") == "-":
            before = before.rstrip()
            lead = ""
        elif m.group("l") == "+":
            pass  # lstrip disabled: keep the indentation
        else:
            lead = ""  # lstrip_blocks removes the indentation of a tag that starts a line
        out.append(before + lead)
        if m.group("r") == "-":
            # strip all whitespace after the tag
            pos = m.end()
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
            if m.group("trail"):
                pass  # already consumed the newline in m.end()
        elif m.group("r") == "+":
            pos = m.end() - len(m.group("trail"))  # trim_blocks disabled: keep the newline
        else:
            pos = m.end()  # trim_blocks eats one newline
    out.append(text[pos:])
    return "".join(out)


def has_generation_tags(text: str) -> bool:
    return bool(GENERATION_TAG_RE.search(text))
