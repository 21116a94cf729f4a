"""Templates render in Jinja's immutable sandbox; reaching for Python internals fails with a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError
from loft.compiler.errors import ConfigError
from loft.compiler.template_env import TemplateSecurityError, render
from loft.compiler.templates import select_template

MSGS = [{"role": "user", "content": "hi"}]

ATTACKS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",  # the plain sandbox prints '' here; loft refuses
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ raise_exception.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{% set ns = namespace(_hidden=1) %}{{ ns._hidden }}",
    "{{ messages.append({'role': 'x'}) }}",  # the immutable sandbox forbids mutating lists
    "{{ (messages[0]).update({'content': 'pwned'}) }}",
]


@pytest.mark.parametrize("source", ATTACKS)
def test_python_internals_are_refused(source: str) -> None:
    with pytest.raises(TemplateSecurityError) as e:
        render(source, MSGS)
    d = e.value.diagnostics[0]
    assert d.code == "template-unsafe" and d.key == "template"
    assert "sandbox" in d.message


def test_unsafe_user_template_fails_at_build(tmp_path: Path) -> None:
    (tmp_path / "evil.jinja").write_text("{% for m in messages %}{{ m.__class__.__mro__ }}{% endfor %}")
    with pytest.raises(ConfigError) as e:
        select_template("evil.jinja", model={}, model_dir=None, config_dir=tmp_path, allow_fallback=True)
    assert "Python internals" in e.value.render()


def test_transformers_globals_behave() -> None:
    with pytest.raises(TemplateError, match="no system"):
        render("{{ raise_exception('no system') }}", MSGS)
    assert render("{{ {'a': '<b>'} | tojson }}", MSGS) == '{"a": "<b>"}'  # no HTML escaping, as transformers
    assert render("{% for m in messages %}{% if loop.first %}{% break %}{% endif %}{% endfor %}ok", MSGS) == "ok"
    ns = render("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
                MSGS)
    assert ns == "1"


def test_rendering_matches_transformers_on_library_templates() -> None:
    """loft's environment renders (text and generation spans) exactly as transformers does."""
    pytest.importorskip("transformers")
    from loft.compiler.template_env import render_spans
    from loft.compiler.templates import families, family_specials, library_text
    from transformers.utils.chat_template_utils import render_jinja_template

    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "more"}, {"role": "assistant", "content": "sure 🙂"}]
    for fam in families():
        if fam in ("llama3.2", "smollm3"):
            continue  # these print today's date: compared in test_parity with a frozen clock
        sp = family_specials(fam)
        texts, spans = render_jinja_template(conversations=[conv], chat_template=library_text(fam),
                                             return_assistant_tokens_mask=True, **sp)
        mine = render_spans(library_text(fam), conv, **sp)
        assert (texts[0], [tuple(s) for s in spans[0]]) == (mine.text, list(mine.spans)), fam
