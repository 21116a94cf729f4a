"""diff_plans and `loftc diff`: key paths, old → new, groups, estimate deltas, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loft.compiler.commands import diff as diff_cmd
from loft.compiler.diff import diff_plans, format_md, format_text, headlines
from loft.compiler.errors import ConfigError

from tests.compiler.plan_fixture import sample_plan, set_key


def _changed() -> dict:
    b = set_key(sample_plan(), "config.training.learning_rate", 1e-4)
    b = set_key(b, "estimate.vram.total_gib", 3.0)
    b = set_key(b, "estimate.cost.usd", 0.5)
    b["data"]["datasets"][0]["sha256"] = "d" * 64
    b["source"]["config"] = {"changed": True}  # the config as written: covered by `config`, not shown
    return b


def test_identical_plans_have_no_changes() -> None:
    assert diff_plans(sample_plan(), sample_plan()) == []
    assert "no differences" in format_text([], [])


def test_changes_are_keyed_grouped_and_ordered() -> None:
    changes = diff_plans(sample_plan(), _changed())
    keys = [c.key for c in changes]
    assert keys == ["config.training.learning_rate", "data.datasets[chat].sha256", "estimate.cost.usd",
                    "estimate.vram.total_gib"]
    assert [c.group for c in changes] == ["config", "data", "estimate", "estimate"]
    assert changes[0].old == 2e-4 and changes[0].new == 1e-4 and changes[0].kind == "changed"


def test_added_removed_and_list_by_name() -> None:
    a = sample_plan()
    b = sample_plan()
    b["data"]["datasets"].insert(0, {"name": "extra", "source": "hub", "path": "org/x"})
    b["config"]["training"]["max_steps"] = 100
    del b["config"]["eval"]["prompts"]
    changes = {c.key: c for c in diff_plans(a, b)}
    assert changes["data.datasets[extra].path"].kind == "added"
    assert "data.datasets[chat].sha256" not in changes  # reordering is not a change
    assert changes["config.eval.prompts"].kind == "removed"
    assert changes["config.training.max_steps"].old_text() == "null"


def test_text_and_markdown_show_estimate_deltas() -> None:
    a, b = sample_plan(), _changed()
    heads = headlines(a, b)
    text = format_text(diff_plans(a, b), heads, "run_a", "run_b")
    assert "~ training.learning_rate: 0.0002 → 0.0001" in text
    assert "peak VRAM per GPU: 1.50 GiB → 3.00 GiB (+1.50 GiB, +100.0%)" in text
    assert "cost: $1.00 → $0.50 (-$0.50, -50.0%)" in text
    md = format_md(diff_plans(a, b), heads, "run_a", "run_b")
    assert "| `training.learning_rate` | `0.0002` | `0.0001` |" in md
    assert "| peak VRAM per GPU | 1.50 GiB → 3.00 GiB (+1.50 GiB, +100.0%) |" in md
    assert "<summary><b>data</b> (1)</summary>" in md


def _args(a: Path, b: Path, **kw: object) -> argparse.Namespace:
    return argparse.Namespace(a=a, b=b, format=kw.get("format", "text"), exit_code=kw.get("exit_code", False))


def test_command_accepts_dirs_and_lock_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "plan.lock").write_text(json.dumps(sample_plan()))
    (tmp_path / "b.lock").write_text(json.dumps(_changed()))
    assert diff_cmd.run(_args(tmp_path / "a", tmp_path / "b.lock")) == 0
    assert "learning_rate" in capsys.readouterr().out
    assert diff_cmd.run(_args(tmp_path / "a", tmp_path / "b.lock", exit_code=True, format="md")) == 1
    assert "### loft plan diff" in capsys.readouterr().out
    assert diff_cmd.run(_args(tmp_path / "a", tmp_path / "a", exit_code=True)) == 0
    with pytest.raises(ConfigError, match=r"no plan\.lock"):
        diff_cmd.run(_args(tmp_path / "a", tmp_path / "nope"))
    assert diff_cmd.run(_args(tmp_path / "a", tmp_path / "nope", exit_code=True)) == 2


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
                  st.text(max_size=5))
_plans = st.recursive(_leaf, lambda inner: st.dictionaries(st.text("abc", min_size=1, max_size=3), inner,
                                                           max_size=4), max_leaves=20)


@settings(max_examples=60, deadline=None)
@given(a=st.dictionaries(st.sampled_from(["config", "model", "data", "estimate", "zzz"]), _plans, max_size=4),
       b=st.dictionaries(st.sampled_from(["config", "model", "data", "estimate", "zzz"]), _plans, max_size=4))
def test_diff_properties(a: dict, b: dict) -> None:
    assert diff_plans(a, a) == []
    changes = diff_plans(a, b)
    assert (changes == []) == (a == b) or _only_empty_containers_differ(a, b)
    for c in changes:
        assert c.old != c.new or type(c.old) is not type(c.new)
    back = diff_plans(b, a)
    assert [c.key for c in back] == [c.key for c in changes]


def _only_empty_containers_differ(a: object, b: object) -> bool:
    """{} and a missing key both flatten to nothing beneath them: equal leaves, different containers."""
    from loft.compiler.diff import _flatten

    return dict(_flatten(a)) == dict(_flatten(b))
