"""Render chats with `{% generation %}` spans marked at compile time, not tracked at render time.

transformers' `render_jinja_template(..., return_assistant_tokens_mask=True)` turns each generation block
into a macro call that measures the output rendered so far (`len("".join(blocks))`) through a context
variable, and copies every chat into plain template data first: about 2.5x the cost of a plain render.
Here the `{% generation %}` tag compiles to two constant outputs, a sentinel before and after the block's
body, so a chat renders at plain-template speed; the spans are read off the sentinels and the sentinels
removed. The sentinels are Unicode noncharacters (U+FDD0, U+FDD1), which text never carries; a chat whose
data contains one, or whose marks do not pair up (a block captured by `{% set %}` and moved), is rendered
by transformers instead (`None` from `render`). The environment is transformers' chat-template one:
the same sandbox, options and helpers (`raise_exception`, `strftime_now`, `namespace`, `dict`, `tojson`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OPEN, CLOSE = "\ufdd0", "\ufdd1"


_REASONING = ("reasoning_content", "thinking", "reasoning")


def _has_mark(value: Any) -> bool:
    if isinstance(value, str):
        return OPEN in value or CLOSE in value
    if isinstance(value, Mapping):
        return any(_has_mark(v) or _has_mark(k) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_mark(v) for v in value)
    return False


class SpanRenderer:
    """One compiled template; `render(messages)` → (text, [(start, end) char spans of generation blocks])."""

    def __init__(self, template_text: str, variables: Mapping[str, Any]) -> None:
        import jinja2
        import jinja2.ext
        import jinja2.nodes
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from transformers.utils import chat_template_utils as ctu

        class Marks(jinja2.ext.Extension):
            tags = {"generation"}

            def parse(self, parser: Any) -> list[Any]:
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return [jinja2.nodes.Output([jinja2.nodes.TemplateData(OPEN)]).set_lineno(lineno), *body,
                        jinja2.nodes.Output([jinja2.nodes.TemplateData(CLOSE)]).set_lineno(lineno)]

        reference = ctu._compile_jinja_template(template_text).environment  # transformers' own env
        env = ImmutableSandboxedEnvironment(trim_blocks=reference.trim_blocks, lstrip_blocks=reference.lstrip_blocks,
                                            extensions=[Marks, jinja2.ext.loopcontrols])
        env.globals.update(reference.globals)
        env.filters.update(reference.filters)
        env.tests.update(reference.tests)
        self.template = env.from_string(template_text)
        self._plain = ctu._plain_template_data
        self._alias = getattr(ctu, "_alias_reasoning_fields", lambda chat: chat)
        self.variables = dict(self._plain(dict(variables)))
        self.usable = not _has_mark(self.variables) and OPEN not in template_text and CLOSE not in template_text

    def render(self, messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[tuple[int, int]]] | None:
        """Text and generation spans, or None when this chat must go through transformers' renderer.
        Template errors propagate (the caller turns them into a per-sample `template_error`)."""
        chat = self._template_data(messages) if self.usable else None
        if chat is None:
            return None
        text = self.template.render(messages=chat, tools=None, documents=None, add_generation_prompt=False,
                                    **self.variables)
        if OPEN not in text:
            return (text, []) if CLOSE not in text else None
        parts = text.split(OPEN)
        out = [parts[0]]
        pos = len(parts[0])
        spans: list[tuple[int, int]] = []
        if CLOSE in parts[0]:
            return None
        for part in parts[1:]:
            body, sep, rest = part.partition(CLOSE)
            if not sep or CLOSE in rest:  # unpaired or nested marks: not a plain block in the output
                return None
            spans.append((pos, pos + len(body)))
            out += (body, rest)
            pos += len(body) + len(rest)
        return "".join(out), spans

    def _template_data(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
        """What transformers hands the template (plain JSON data, reasoning aliases), in one pass over the
        usual shape (dicts of strings); None when the data carries a sentinel."""
        chat: list[dict[str, Any]] = []
        alias = False
        for message in messages:
            if type(message) is not dict:
                plain = self._plain(message)
                if _has_mark(plain):
                    return None
                chat.append(plain)
                continue
            copy: dict[str, Any] = {}
            for k, v in message.items():
                if type(k) is not str:
                    k = self._plain(k)
                if type(v) is str:
                    if OPEN in v or CLOSE in v:
                        return None
                elif v is not None:
                    v = self._plain(v)
                    if _has_mark(v):
                        return None
                copy[k] = v
            alias = alias or any(key in copy for key in _REASONING)
            chat.append(copy)
        return self._alias(chat) if alias else chat
