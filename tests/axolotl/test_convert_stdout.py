"""`loftc convert ax.yml > elsewhere/cfg.yaml`: the printed config's paths are relative to the file stdout
is redirected to, so the redirected file builds from where it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from loft.compiler import cli

from tests.compiler.project_factory import TINY_MODEL_CONFIG

ROOT = Path(__file__).resolve().parents[2]


def test_redirected_stdout_gets_paths_relative_to_that_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "axolotl"
    (src / "data").mkdir(parents=True)
    (src / "model").mkdir()
    (src / "model" / "config.json").write_text(json.dumps(TINY_MODEL_CONFIG))
    shutil.copy(ROOT / "examples" / "data" / "chat.jsonl", src / "data" / "chat.jsonl")
    (src / "ax.yml").write_text("base_model: ./model\ndatasets:\n  - path: ./data/chat.jsonl\n    type: chat_template\n"
                                "chat_template: llama3\nlearning_rate: 1e-4\nmicro_batch_size: 1\nnum_epochs: 1\n"
                                "sequence_len: 256\n")
    other = tmp_path / "elsewhere" / "deeper"
    other.mkdir(parents=True)
    with open(other / "cfg.yaml", "w") as f:
        proc = subprocess.run([sys.executable, "-m", "loft.compiler", "convert", str(src / "ax.yml")], stdout=f,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env={**os.environ},
                              timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (other / "cfg.yaml").read_text()
    assert "../../axolotl/model" in text and "../../axolotl/data/chat.jsonl" in text, text
    monkeypatch.setenv("LOFT_ALLOW_PATHS", str(tmp_path))  # the converted file sits beside the data's folder
    assert cli.main(["build", str(other / "cfg.yaml"), "-o", str(tmp_path / "run")]) == 0, capsys.readouterr().err
