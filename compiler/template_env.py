"""The sandboxed Jinja environment chat templates render in, matching transformers' rules.

transformers 5.x renders chat templates in `ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True)` with the `{% generation %}` extension (AssistantTracker), `loopcontrols`, a `tojson`
filter that does not HTML-escape, and the globals `raise_exception` and `strftime_now`. loft renders the same
way so that what `loftc` checks is what the runtime's tokenizer will produce. Only jinja2 is imported here:
the compiler stays free of training libraries.

Three differences, all stricter: attribute access to Python internals (`''.__class__`) raises at once
instead of rendering an empty string; the clock of `strftime_now` can be frozen (`now=`) for tests and
parity checks; and a render's work is bounded (`TemplateLimitError`, a ConfigError): `*`, `**` and `+` may
not build strings or lists over MAX_SEQUENCE items or integers over MAX_INT_BITS, the output is capped at
MAX_OUTPUT_CHARS, a render that runs past MAX_RENDER_SECONDS is stopped (a watchdog thread raises in the
rendering thread: pure-Python loops with no output or calls are caught too), and on Linux the address space
is capped at its current size + MAX_RENDER_MEMORY while rendering, so any other way to allocate without
bound (`'x'.ljust(10**10)`, a width in `format`) fails with MemoryError instead of exhausting the machine.
"""

from __future__ import annotations

import ctypes
import json
import math
import re
import threading
import time
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

MAX_OUTPUT_CHARS = 4 << 20
MAX_SEQUENCE = 4 << 20  # items of a string or list a template builds with * or +
MAX_INT_BITS = 4096
MAX_RENDER_SECONDS = 2.0
MAX_FORMAT_WIDTH = 10_000
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\d+)")
MAX_RENDER_MEMORY = 512 << 20

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


class _TooMuch(Exception):
    """Raised inside a render that went over a limit; becomes TemplateLimitError outside it."""


class _RenderTimeout(BaseException):
    """Injected into a render that ran past its deadline (BaseException, so templates' own `except
    Exception` paths in Jinja cannot swallow it)."""


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, but reaching for an unsafe attribute fails loudly at once, and `*`, `**`
    and `+` are checked before they build something huge."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            seq, n = (left, right) if isinstance(left, str | list | tuple) else (right, left)
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                raise _TooMuch(f"`*` would build {len(seq) * n:,} items (limit {MAX_SEQUENCE:,})")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _TooMuch(f"`*` would build an integer over {MAX_INT_BITS} bits")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
                    and right * math.log2(abs(left)) > MAX_INT_BITS):
                raise _TooMuch(f"`**` would build an integer over {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            widths = [int(w) for w in _FORMAT_WIDTH.findall(left)]
            if widths and max(widths) > MAX_FORMAT_WIDTH:
                raise _TooMuch(f"`%` formatting with a width of {max(widths):,} (limit {MAX_FORMAT_WIDTH:,})")
        elif (operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
              and len(left) + len(right) > MAX_SEQUENCE):
            raise _TooMuch(f"`+` would build {len(left) + len(right):,} items (limit {MAX_SEQUENCE:,})")
        return super().call_binop(context, operator, left, right)


class _Watchdog:
    """One daemon thread that stops renders past their deadline by raising `_RenderTimeout` in the
    rendering thread (CPython's PyThreadState_SetAsyncExc: delivered between bytecodes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deadlines: dict[int, float] = {}
        self.fired: set[int] = set()
        self.thread: threading.Thread | None = None

    def start(self, seconds: float) -> int:
        tid = threading.get_ident()
        with self.lock:
            self.deadlines[tid] = time.monotonic() + seconds
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="loft-template-watchdog", daemon=True)
                self.thread.start()
        return tid

    def stop(self, tid: int) -> None:
        with self.lock:
            self.deadlines.pop(tid, None)
            if tid in self.fired:  # raised but maybe not delivered yet: take it back
                self.fired.discard(tid)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)

    def _loop(self) -> None:
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            with self.lock:
                for tid, deadline in list(self.deadlines.items()):
                    if now > deadline:
                        del self.deadlines[tid]
                        self.fired.add(tid)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid),
                                                                   ctypes.py_object(_RenderTimeout))


_WATCHDOG = _Watchdog()


@contextmanager
def _memory_cap(extra: int) -> Iterator[None]:
    """RLIMIT_AS at the current address-space size + `extra` while the block runs (Linux; else no cap)."""
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = used + extra
        if old[0] != resource.RLIM_INFINITY and old[0] <= cap:
            raise OSError("already capped lower")
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


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


class TemplateLimitError(ConfigError):
    """A template render went over a time, output or memory limit."""


def _limit_error(what: str) -> TemplateLimitError:
    return TemplateLimitError([Diagnostic(
        f"chat template render stopped: {what}", key="template", code="template-limit",
        hint="chat templates format a conversation; loops or repetition this large are a bug or an attack",
    )])


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
        try:
            tid = _WATCHDOG.start(MAX_RENDER_SECONDS)
            try:
                with frozen_clock(now), _memory_cap(MAX_RENDER_MEMORY):
                    size = 0
                    for block in template.generate(messages=[dict(m) for m in messages],
                                                   add_generation_prompt=add_generation_prompt, **extra):
                        size += len(block)
                        if size > MAX_OUTPUT_CHARS:
                            raise _TooMuch(f"the output is over {MAX_OUTPUT_CHARS:,} characters")
                        blocks.append(block)
            finally:
                _WATCHDOG.stop(tid)
        except _RenderTimeout:
            raise _TooMuch(f"it ran for more than {MAX_RENDER_SECONDS:g} s") from None
        except MemoryError:
            raise _TooMuch(f"it needed more than {MAX_RENDER_MEMORY >> 20} MiB of memory") from None
        except RecursionError:
            raise _TooMuch("it recursed too deep (a macro calling itself?)") from None
    except _TooMuch as e:
        raise _limit_error(str(e)) from None
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
