"""One `--json` shape on every loftc and loft command: success has `ok: true`; every failure (bad input,
a usage error, a broken plan) is `{"ok": false, "errors": [...]}` with loftc's diagnostic fields, and stdout
holds exactly that one object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.compiler.cli import main as loftc
from loft.runtime.__main__ import main as loft
from loft.runtime.jsonout import ERROR_FIELDS


def _one(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip()
    obj = json.loads(out)  # exactly one JSON document: anything else on stdout fails to parse
    assert isinstance(obj, dict)
    return obj


def _errors(obj: dict[str, object]) -> list[dict[str, object]]:
    assert obj["ok"] is False
    errors = obj["errors"]
    assert isinstance(errors, list) and errors
    for e in errors:
        assert set(e) == set(ERROR_FIELDS), e
        assert e["message"] and e["code"]
    return errors


def test_usage_errors_are_json_on_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert loftc(["build", "--json", "--no-such-flag"]) == 2
    assert _errors(_one(capsys))[0]["code"] == "usage"
    assert loft(["train", "--json", "--no-such-flag", "x"]) == 2
    assert _errors(_one(capsys))[0]["code"] == "usage"
    for tool in ("dashboard", "spikes", "analyze", "augment", "debug-tokens"):
        assert loft([tool, "--json", "--no-such-flag"]) == 2, tool
        assert _errors(_one(capsys))[0]["code"] == "usage", tool


def test_missing_inputs_are_json_errors_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = str(tmp_path / "nowhere")
    for argv in (["dashboard", nowhere], ["spikes", nowhere], ["analyze", nowhere], ["debug-tokens", nowhere]):
        assert loft([*argv, "--json"]) == 1, argv
        (e,) = _errors(_one(capsys))
        assert e["file"] and "nowhere" in str(e["file"]), (argv, e)


def test_a_plan_that_breaks_its_schema_gives_one_error_per_key(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.plan_contract import compiled_plan

    plan = compiled_plan()
    del plan["config"]["training"]["seed"]
    plan["config"]["training"]["learning_rate"] = "fast"
    (tmp_path / "plan.lock").write_text(json.dumps(plan), encoding="utf-8")
    assert loft(["train", str(tmp_path), "--json"]) == 1
    errors = _errors(_one(capsys))
    keys = {e["key"] for e in errors}
    assert {"config.training.seed", "config.training.learning_rate"} <= keys, keys
    assert all(str(e["file"]).endswith("plan.lock") and e["code"] == "plan-schema" for e in errors)


def test_successes_say_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["gpus", "--json"], ["templates", "list", "--json"], ["schema", "--table", "--json"]):
        assert loftc(argv) == 0, argv
        assert _one(capsys)["ok"] is True, argv
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0, "max_steps": 4, "elapsed_s": 1.0}) + "\n",
                                       encoding="utf-8")
    assert loft(["dashboard", str(out), "--json"]) == 0
    obj = _one(capsys)
    assert obj["ok"] is True
    (run,) = obj["runs"]  # type: ignore[misc]
    assert run["latest"]["loss"] == 2.0 and run["eta_s"] == pytest.approx(3.0) and run["records"] == 1


def test_analyze_passes_on_loftcs_own_structured_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml").read_text(encoding="utf-8")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text.rstrip("\n") + "\ntrainig:\n  learning_rate: 1e-4\n", encoding="utf-8")
    line = len(text.rstrip("\n").splitlines()) + 1
    assert loft(["analyze", str(cfg), "--json"]) == 1
    errors = _errors(_one(capsys))
    typo = [e for e in errors if "trainig" in str(e["key"]) + str(e["message"])]
    assert typo and typo[0]["line"] == line and str(typo[0]["file"]).endswith("cfg.yaml"), errors
