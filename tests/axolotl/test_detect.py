"""Dialect detection: the loft marker, Axolotl's own keys, the --dialect override, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from loft.compiler.dialects import detect
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse, parse_text


def test_loft_marker_wins_and_says_where() -> None:
    dialect, reason = detect(parse_text("name: x\nloft: 1\nmodel: {base: m}\n"))
    assert dialect == "loft"
    assert "`loft:` marker" in reason and "line 2" in reason


def test_axolotl_keys_are_recognised_with_the_keys_named() -> None:
    dialect, reason = detect(parse_text("base_model: m\ndatasets: []\nmicro_batch_size: 1\n"))
    assert dialect == "axolotl"
    assert "`base_model`" in reason and "3 top-level Axolotl key(s)" in reason


@pytest.mark.parametrize(("text", "override"), [("loft: 1\n", "axolotl"), ("base_model: m\n", "loft")])
def test_override_wins(text: str, override: str) -> None:
    dialect, reason = detect(parse_text(text), override)
    assert dialect == override
    assert "--dialect" in reason


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(ConfigError) as e:
        detect(parse_text("base_model: m\n"), "llamafactory")
    assert e.value.diagnostics[0].code == "dialect"


def test_neither_dialect_tells_how_to_mark_the_file() -> None:
    with pytest.raises(ConfigError) as e:
        detect(parse_text("foo: 1\nbar: 2\n", "cfg.yaml"))
    d = e.value.diagnostics[0]
    assert d.file == "cfg.yaml" and d.line == 1
    assert "loft: 1" in d.hint and "--dialect axolotl" in d.hint


def test_loft_shaped_config_without_marker_is_told_to_add_it() -> None:
    with pytest.raises(ConfigError) as e:
        detect(parse_text("model: {base: m}\ntraining: {epochs: 1}\n"))
    assert "add `loft: 1`" in e.value.diagnostics[0].hint


def test_mixed_keys_follow_the_majority() -> None:
    # two Axolotl keys against one loft-shaped key: Axolotl
    assert detect(parse_text("base_model: m\nsequence_len: 8\nmodel: x\n"))[0] == "axolotl"


def test_every_corpus_config_is_detected_as_axolotl(shared_dir: Path) -> None:
    files = sorted((shared_dir / "corpus/axolotl/examples").glob("*.y*ml"))
    assert len(files) > 50
    for f in files:
        assert detect(parse(f))[0] == "axolotl", f.name


def test_cli_dialect_flag_overrides_detection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loft.compiler import cli

    cfg = tmp_path / "axo.yml"
    cfg.write_text("base_model: Qwen/Qwen2.5-0.5B\ndatasets:\n  - path: a/b\n    type: chat_template\n"
                   "micro_batch_size: 1\ngradient_accumulation_steps: 1\nlearning_rate: 1e-4\n")
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run"), "-q", "--dialect", "axolotl"]) == 0
    capsys.readouterr()
    # read as a loft config, Axolotl's keys are unknown loft keys: exit 1 naming them, no traceback
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run2"), "--dialect", "loft"]) == 1
    err = capsys.readouterr().err
    assert "base_model" in err and "Traceback" not in err
