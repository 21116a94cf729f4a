"""Secrets inside any string value and non-finite or absurd numbers anywhere are exit-1 errors at the key's
line:col, in loft configs and Axolotl configs (any key, known or not), and the token is never echoed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from loft.compiler import cli
from loft.compiler.parse import parse
from loft.compiler.validate import looks_secret

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
TOKEN = "hf_" + "Zq8xW2vL9kP3mN7rT5yB1cD4"


def _string_leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_leaves(v, (*path, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _string_leaves(v, (*path, i))]
    return [path] if isinstance(node, str) else []


def _plant(doc: Any, path: tuple[Any, ...], text: str) -> None:
    node = doc.tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = text


def _dump(doc: Any, dest: Path) -> None:
    from ruamel.yaml import YAML

    with open(dest, "w", encoding="utf-8") as f:
        YAML(typ="rt", pure=True).dump(doc.tree, f)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_a_token_inside_any_string_field_is_refused_naming_the_key(
        example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaves = _string_leaves(parse(example).data)
    assert len(leaves) >= 5
    for path in leaves:
        doc = parse(example)
        value = doc.data
        for k in path:
            value = value[k]
        _plant(doc, path, f"{value} {TOKEN} trailing")
        cfg = tmp_path / example.name
        _dump(doc, cfg)
        assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1, path
        err = capsys.readouterr().err
        assert "secret" in err and TOKEN not in err, (path, err)
        assert f"{cfg.name}:" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("key", ["hub_strategy", "wandb_run_id", "wandb_project", "some_future_key",
                                 "system_prompt"])
def test_a_token_in_any_axolotl_key_is_refused(key: str, shared_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = next((shared_dir / "corpus" / "axolotl" / "examples").glob("*.y*ml"))
    cfg = tmp_path / "ax.yml"
    shutil.copy(src, cfg)
    cfg.write_text(cfg.read_text() + f"\n{key}: 'x {TOKEN}'\n")
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{key}: this value holds what looks like a secret" in err and TOKEN not in err


@pytest.mark.parametrize("value", [
    "hf_abcdefghijklmnopqrstuvwxyz123456", "see sk-proj-abcdefghijklmnopqrstuvwx here", "ghp_" + "a1" * 18,
    "AKIAIOSFODNN7EXAMPLE", "xoxb-123456789012-abcdefghij", "-----BEGIN RSA PRIVATE KEY-----",
    "key=a0Zk39Xq7LmP2vB8nR4tY6wC1sD5fG0hJ",
])
def test_token_shapes_and_random_keys_are_secrets(value: str) -> None:
    assert looks_secret(value)


@pytest.mark.parametrize("value", [
    "meta-llama/Llama-3.1-8B-Instruct", "axolotl-quants/Llama-4-Maverick-17B-128E-Linearized-bnb-nf4-bf16",
    "d41d8cd98f00b204e9800998ecf8427ed41d8cd9", "data/chat.jsonl", "You are a helpful assistant.",
    "https://huggingface.co/datasets/tatsu-lab/alpaca", "all-linear",
])
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert not looks_secret(value)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("training.learning_rate", ".nan", "not a finite number"),
    ("training.learning_rate", ".inf", "not a finite number"),
    ("training.max_steps", "1e308", "too large"),
    ("training.max_steps", "99999999999999999999", "too large"),
    ("data.temperature", "1e-300", "too small"),
    ("data.eval_split", ".nan", "not a finite number"),
    ("training.weight_decay", "-.inf", "not a finite number"),
])
def test_non_finite_or_absurd_numbers_are_errors_at_their_key(key: str, value: str, says: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    section, leaf = key.split(".")
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    lines = text.splitlines()
    at = lines.index(f"{section}:")
    lines.insert(at + 1, f"  {leaf}: {value}")
    lines = [ln for i, ln in enumerate(lines) if not (ln.startswith(f"  {leaf}:") and i != at + 1)]
    cfg = tmp_path / "q.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"q.yaml:{at + 2}:3: error: {key}: " in err and says in err, err


@pytest.mark.parametrize("line", ["val_set_size: .inf", "learning_rate: .nan", "max_steps: 1e308",
                                  "optimizer: [adamw_torch]", "optimizer: {name: adamw}"])
def test_axolotl_absurd_values_are_clear_errors(line: str, shared_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = next((shared_dir / "corpus" / "axolotl" / "examples").glob("*.y*ml"))
    key = line.split(":")[0]
    kept = [ln for ln in src.read_text().splitlines() if not ln.startswith(f"{key}:")]
    cfg = tmp_path / "ax.yml"
    cfg.write_text("\n".join([*kept, line]) + "\n")
    assert cli.main(["build", str(cfg), "-o", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"ax.yml:{len(kept) + 1}:" in err and key in err, err
