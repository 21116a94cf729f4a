"""CLI habits: `--json` on every command (results and structured errors), `--version`, NO_COLOR, and
`loftc build --set key=value` overrides recorded in plan.lock."""

from __future__ import annotations

import argparse
import json

import pytest
from loft.compiler.cli import COMMANDS, main, make_parser

from tests.compiler.project_factory import make_project


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_every_command_takes_json():
    parser, _ = make_parser()
    names = dict(_subparsers(parser))
    assert set(COMMANDS) <= set(names)
    missing = [n for n, p in names.items() if not any("--json" in a.option_strings for a in p._actions)]
    assert missing == []


def test_version_on_both_commands(capsys):
    from loft.runtime.__main__ import main as loft_main

    with pytest.raises(SystemExit) as e:
        make_parser()[0].parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("loftc 0.")
    assert loft_main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("loft ")


def test_set_overrides_are_applied_and_recorded(tmp_path, capsys):
    cfg = make_project(tmp_path)
    out = tmp_path / "run"
    code = main(["build", str(cfg), "-o", str(out), "--json", "--set", "training.learning_rate=1e-4",
                 "--set", "data.datasets[0].weight=2", "--set", "adapter.target_modules=[q_proj, v_proj]"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["ok"] and result["name"] == "t"
    plan = json.loads((out / "plan.lock").read_text())
    assert plan["config"]["training"]["learning_rate"] == 1e-4
    assert plan["config"]["data"]["datasets"][0]["weight"] == 2
    assert plan["config"]["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert plan["source"]["overrides"] == {"adapter.target_modules": ["q_proj", "v_proj"],
                                           "data.datasets[0].weight": 2, "training.learning_rate": 1e-4}
    assert "learning_rate" not in json.dumps(plan["source"]["config"])  # the file as given, untouched
    assert result["overrides"] == plan["source"]["overrides"]
    assert main(["verify", str(out), "--json"]) == 0  # rebuilt from its sources with the same overrides
    assert json.loads(capsys.readouterr().out)["ok"] is True
    plain = tmp_path / "plain"
    assert main(["build", str(cfg), "-o", str(plain), "-q"]) == 0
    assert "overrides" not in json.loads((plain / "plan.lock").read_text())["source"]


def test_estimate_takes_set_too(tmp_path, capsys):
    cfg = make_project(tmp_path)
    assert main(["estimate", str(cfg), "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(["estimate", str(cfg), "--json", "--set", "sequence.max_length=4096"]) == 0
    longer = json.loads(capsys.readouterr().out)
    assert longer["vram"]["seq_len"] == 4096 != base["vram"]["seq_len"]


def test_set_errors_are_structured(tmp_path, capsys):
    cfg = make_project(tmp_path)
    assert main(["build", str(cfg), "-o", str(tmp_path / "r"), "--json", "--set", "training.learning_rat=1e-4"]) == 1
    err = json.loads(capsys.readouterr().out)["errors"][0]
    assert err["key"] == "training.learning_rat" and "learning_rate" in err["hint"] + err["message"]
    assert set(err) >= {"file", "line", "col", "key", "code", "message"}
    assert main(["build", str(cfg), "--json", "--set", "nonsense"]) == 2
    err = json.loads(capsys.readouterr().out)["errors"][0]
    assert err["code"] == "usage" and "KEY=VALUE" in err["message"]
    assert main(["build", str(cfg), "--set", "data.datasets[3].weight=1"]) == 2
    assert "no item 3" in capsys.readouterr().err
    assert main(["build", str(cfg), "--json", "--no-such-flag"]) == 2
    assert json.loads(capsys.readouterr().out)["errors"][0]["code"] == "usage"


def test_config_errors_in_json_have_positions(tmp_path, capsys):
    cfg = make_project(tmp_path, "loft: 1\nmodel:\n  base: ./models/tiny\ntraining:\n  learning_rate: fast\n")
    assert main(["build", str(cfg), "-o", str(tmp_path / "r"), "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    lr = next(e for e in errors if e["key"] == "training.learning_rate")
    assert lr["file"].endswith("cfg.yaml") and lr["line"] == 5 and lr["col"] > 0 and lr["severity"] == "error"


def test_json_results_of_other_commands(tmp_path, capsys):
    cfg = make_project(tmp_path)
    assert main(["build", str(cfg), "-o", str(tmp_path / "a"), "-q"]) == 0
    assert main(["build", str(cfg), "-o", str(tmp_path / "b"), "-q", "--set", "training.epochs=2"]) == 0
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["differ"] and any(c["key"].endswith("training.epochs") and c["new"] == 2 for c in d["changes"])
    assert main(["schema", "--table", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["table"].startswith("| key |")
    assert main(["gpus", "--json"]) == 0 and "gpus" in json.loads(capsys.readouterr().out)


def test_no_color(monkeypatch):
    import io

    from loft.runtime.progress import color_enabled

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_enabled(Tty()) and not color_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(Tty())
