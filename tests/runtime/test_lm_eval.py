"""eval.lm_eval through lm-evaluation-harness's Python API: a tiny multiple-choice task defined here (local
jsonl + task YAML, nothing downloaded), scored for the fine-tuned model and its base in the eval report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_bundle import make_bundle

pytestmark = pytest.mark.slow

QUESTIONS = [("What is AI?", ["A field of computer science.", "A fruit.", "A river."], 0),
             ("Hello, how are you?", ["A mountain.", "I am fine, thank you.", "Blue."], 1),
             ("What is machine learning?", ["A car.", "A song.", "Learning from data."], 2),
             ("Do you like books?", ["Yes, I love reading.", "Seven.", "Rain."], 0)]


def tiny_task(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in QUESTIONS))
    (root / "loft_tiny_qa.yaml").write_text(f"""task: loft_tiny_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "user: {{{{question}}}}\\nassistant:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    return root


def test_lm_eval_scores_base_and_fine_tuned(tiny_model_dir, tmp_path):
    from loft.runtime.__main__ import main
    from loft.runtime.plan import load
    from loft.runtime.train.trainer import run

    tasks = tiny_task(tmp_path / "tasks")
    run_dir = make_bundle(tmp_path, tiny_model_dir, {
        "training.max_steps": 3, "training.learning_rate": 2e-2, "eval.prompts": [],
        "eval.lm_eval": {"tasks": ["loft_tiny_qa"], "limit": 3, "num_fewshot": 0, "include_path": str(tasks),
                         "batch_size": 2}}, n_train=24, n_eval=4)
    assert run(load(run_dir)) == 0
    assert main(["eval", str(run_dir)]) == 0
    report = json.loads((run_dir / "out" / "eval" / "report.json").read_text())
    lm = report["lm_eval"]
    assert lm["tasks"] == ["loft_tiny_qa"] and lm["limit"] == 3
    for variant in ("fine_tuned", "base"):
        scores = lm["scores"][variant]["loft_tiny_qa"]
        assert set(scores) >= {"acc", "acc_norm"} and all(v in (0.0, 1 / 3, 2 / 3, 1.0) for k, v in scores.items()
                                                           if k in ("acc", "acc_norm"))
    md = (run_dir / "out" / "eval" / "report.md").read_text()
    assert "## lm-eval-harness (limit 3 per task)" in md and "| loft_tiny_qa | acc |" in md


def test_unknown_lm_eval_task_fails_before_loading_a_model(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import lm_eval.tasks
    from loft.runtime.__main__ import main

    real = lm_eval.tasks.TaskManager

    def local_only(include_path=None, include_defaults=True, **kw):  # skip the registry scan (~30 s here)
        return real(include_path=include_path, include_defaults=False, **kw)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", local_only)
    tasks = tiny_task(tmp_path / "tasks")
    run_dir = make_bundle(tmp_path, tiny_model_dir, {"eval.lm_eval": {
        "tasks": ["loft_tiny_qaa"], "limit": None, "num_fewshot": None, "include_path": str(tasks),
        "batch_size": 1}}, n_train=4, n_eval=2)
    assert main(["eval", str(run_dir)]) == 1  # no final/ either: the task check comes first
    assert "unknown task(s) ['loft_tiny_qaa']" in capsys.readouterr().err
