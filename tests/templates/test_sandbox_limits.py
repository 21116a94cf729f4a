"""A chat template's render is bounded: huge strings/lists/integers, huge outputs, endless loops,
unbounded recursion and memory all stop with a clear TemplateLimitError (a ConfigError), fast; and a
template that fails on every probe conversation is refused at build, not mid-prepare."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from loft.compiler import template_env
from loft.compiler.errors import ConfigError
from loft.compiler.template_env import TemplateLimitError, render
from loft.compiler.templates import select_template

MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(("source", "says"), [
    ("{{ 'a' * 10**10 }}", "would build"),
    ("{{ [0] * 10**9 }}", "would build"),
    ("{% set s = 'a' * 4000000 %}{{ s + s }}", "would build"),
    ("{{ 7 ** 100000 }}", "integer over"),
    ("{{ '%0999999999d' % 1 }}", "width"),
    ("{{ 'x'.ljust(10**10) }}", "MiB of memory"),
    ("{{ 'a' | center(10**10) }}", "MiB of memory"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}", "output is over"),
])
def test_runaway_renders_stop_with_a_clear_error(source: str, says: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(TemplateLimitError) as e:
        render(source, MSGS)
    d = e.value.diagnostics[0]
    assert d.code == "template-limit" and d.key == "template" and says in d.message, d.message
    assert time.perf_counter() - t0 < template_env.MAX_RENDER_SECONDS + 3


def test_a_silent_endless_loop_is_stopped_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_env, "MAX_RENDER_SECONDS", 0.3)
    t0 = time.perf_counter()
    with pytest.raises(TemplateLimitError, match="ran for more than"):
        render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", MSGS)
    assert time.perf_counter() - t0 < 2.0
    # the process is unharmed: the next render works, no stray exception arrives later, no cap is left
    assert render("{{ messages[0].content }}", MSGS) == "hi"
    time.sleep(0.2)


def test_memory_cap_is_lifted_after_a_render() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(TemplateLimitError):
        render("{{ 'x'.ljust(10**10) }}", MSGS)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len("y" * (64 << 20)) == 64 << 20  # allocating works again


def test_a_template_that_always_raises_is_refused_at_build(tmp_path: Path) -> None:
    (tmp_path / "t.jinja").write_text("{{ raise_exception('this template refuses everything') }}")
    with pytest.raises(ConfigError) as e:
        select_template("t.jinja", model={}, model_dir=None, config_dir=tmp_path, allow_fallback=True)
    d = e.value.diagnostics[0]
    assert d.code == "template-raises" and "refuses everything" in d.message
    (tmp_path / "i.jinja").write_text("{{ messages[5]['content'] }}")  # IndexError-ish on short chats
    with pytest.raises(ConfigError, match="every probe"):
        select_template("i.jinja", model={}, model_dir=None, config_dir=tmp_path, allow_fallback=True)


def test_a_template_that_refuses_only_system_messages_still_builds(tmp_path: Path) -> None:
    (tmp_path / "t.jinja").write_text(
        "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{{ m.role }}: {{ m.content }}\n{% endfor %}")
    choice = select_template("t.jinja", model={}, model_dir=None, config_dir=tmp_path, allow_fallback=True)
    assert choice.mask == "prefix"
