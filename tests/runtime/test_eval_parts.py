"""The eval stage's parts that need no training: report fences, prompt rendering as training renders,
backend selection, and the vLLM worker's request/response plumbing (against a stand-in vllm package:
no GPU here, so the real vLLM never runs in these tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.resources import files
from pathlib import Path

import pytest
from loft.runtime.generate import Backend, Decoding, choose_backend, run_vllm, vllm_request
from loft.runtime.markdown import cell, fence
from loft.runtime.train.model import StageError

from tests.runtime.bundle_factory import tiny_tokenizer

NASTY = ["plain", "``` inside", "````\nfour\n````", "a `tick` and ```` run ````` of five", "```python\nx=1\n```",
         "", "trailing backticks ```"]


@pytest.mark.parametrize("text", NASTY)
def test_fence_holds_any_content(text):
    from markdown_it import MarkdownIt

    doc = "\n".join(["before", "", *fence(text), "", "after"]) + "\n"
    tokens = [t for t in MarkdownIt("commonmark").parse(doc) if t.type == "fence"]
    assert len(tokens) == 1 and tokens[0].content == text + "\n"
    paragraphs = [t.content for t in MarkdownIt("commonmark").parse(doc) if t.type == "inline"]
    assert paragraphs == ["before", "after"]  # nothing leaked out of the block


def test_report_markdown_survives_references_with_fences():
    from loft.runtime.eval_report import markdown
    from markdown_it import MarkdownIt

    gens = [{"source": "eval sample ['a:1']", "prompt": "p ```", "output": "```\ncode\n```",
             "base": "````", "reference": "ref ```` x"}]
    md = markdown({"name": "t", "eval_loss": 1.0, "perplexity": 2.7, "tokens": 3,
                   "base": {"eval_loss": 2.0, "perplexity": 7.3, "tokens": 3}, "backend": "transformers",
                   "decoding": {"strategy": "greedy", "seed": 1, "max_new_tokens": 4}, "generations": gens})
    blocks = [t.content.rstrip("\n") for t in MarkdownIt("commonmark").parse(md) if t.type == "fence"]
    assert blocks == ["p ```", "```\ncode\n```", "````", "ref ```` x"]
    assert "| base | 2 | 7.3 |" in md and "| fine-tuned | 1 | 2.7 |" in md
    assert cell("a|b\nc") == "a\\|b c"


def test_eval_prompt_renders_as_training_renders_with_the_frozen_date():
    """The eval prompt is the training sample's prefix, token for token, and carries prepare's date."""
    path = files("loft.chat_templates").joinpath("llama3.2.jinja")
    if not path.is_file():
        pytest.skip("chat template library not present")
    from loft.runtime.eval import render_prompt
    from loft.runtime.prepare.formats import DatasetSpec, Example
    from loft.runtime.prepare.mask import IGNORE
    from loft.runtime.prepare.template import DEFAULT_DATE, Encoder, template_variables
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer()))
    template = path.read_text()
    chat = [{"role": "user", "content": "What is AI?"}, {"role": "assistant", "content": "A field."}]
    for plan_template in ({}, {"date_string": "01 Jan 2030"}):
        variables = template_variables(plan_template)
        [sample] = Encoder(tok, template, "generation", "<|eot_id|>", DatasetSpec(name="t"),
                           template_vars=variables).encode([Example(messages=chat)])
        prompt = render_prompt(tok, template, variables, "What is AI?")
        first_trained = next(i for i, v in enumerate(sample.labels) if v != IGNORE)
        assert prompt == sample.input_ids[:first_trained]
        assert (plan_template.get("date_string") or DEFAULT_DATE) in tok.decode(prompt)


def test_backend_selection():
    pick = choose_backend
    assert pick("transformers", cuda=True, vllm_here=True, vllm_python="/x").name == "transformers"
    # auto never uses a vllm that merely imports in the training env: only vLLM's own environment
    assert pick("auto", cuda=True, vllm_here=True, vllm_python=None).name == "transformers"
    assert pick("vllm", cuda=True, vllm_here=True, vllm_python=None) == Backend(
        "vllm", None, "eval.backend: vllm, vllm importable here, CUDA visible")
    own = pick("auto", cuda=True, vllm_here=False, vllm_python="/venvs/vllm/bin/python")
    assert own.name == "vllm" and own.python == "/venvs/vllm/bin/python"
    assert pick("auto", cuda=False, vllm_here=True, vllm_python="/x").name == "transformers"
    assert "no CUDA" in pick("auto", cuda=False, vllm_here=True, vllm_python=None).reason
    with pytest.raises(StageError, match="LOFT_VLLM_PYTHON"):
        pick("vllm", cuda=True, vllm_here=False, vllm_python=None)
    with pytest.raises(StageError, match="no CUDA"):
        pick("vllm", cuda=False, vllm_here=True, vllm_python="/x")


FAKE_VLLM = '''
import json, os
CALLS = os.environ["FAKE_VLLM_LOG"]

def _log(kind, **kw):
    with open(CALLS, "a") as f:
        f.write(json.dumps({"kind": kind, **kw}) + "\\n")

class SamplingParams:
    def __init__(self, **kw):
        self.kw = kw

class _Out:
    def __init__(self, text):
        self.text = text

class _Req:
    def __init__(self, text):
        self.outputs = [_Out(text)]

class LLM:
    def __init__(self, **kw):
        _log("init", **kw)

    def generate(self, prompts, params, lora_request=None):
        name = lora_request.name if lora_request else "base"
        _log("generate", params=params.kw, lora=lora_request.path if lora_request else None, n=len(prompts))
        return [_Req(f"{name}:{len(p['prompt_token_ids'])}") for p in prompts]
'''
FAKE_LORA = '''
class LoRARequest:
    def __init__(self, name, lora_id, path):
        self.name, self.id, self.path = name, lora_id, path
'''


@pytest.fixture()
def fake_vllm(tmp_path, monkeypatch):
    pkg = tmp_path / "fake" / "vllm"
    (pkg / "lora").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(FAKE_VLLM))
    (pkg / "lora" / "__init__.py").write_text("")
    (pkg / "lora" / "request.py").write_text(textwrap.dedent(FAKE_LORA))
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    return log


def test_vllm_in_its_own_environment_round_trip(fake_vllm):
    """The worker runs as a script under another interpreter (here: this one with only the stand-in vllm on
    its path), one engine on the base with LoRA slots sized for the adapter, base and tuned passes."""
    request = vllm_request("/models/base", "/run/out/final", "bf16", [[1, 2, 3], [4, 5]], Decoding(16, 7),
                           [{"name": "fine_tuned", "adapter": "/run/out/final"}, {"name": "base", "adapter": None}],
                           max_lora_rank=24)
    out = run_vllm(Backend("vllm", python=sys.executable), request)
    assert out == {"fine_tuned": ["fine_tuned:3", "fine_tuned:2"], "base": ["base:3", "base:2"]}
    calls = [json.loads(line) for line in fake_vllm.read_text().splitlines()]
    init = calls[0]
    assert init["kind"] == "init" and init["model"] == "/models/base" and init["dtype"] == "bfloat16"
    assert init["enable_lora"] is True and init["max_lora_rank"] == 32 and init["seed"] == 7
    assert [c["lora"] for c in calls[1:]] == ["/run/out/final", None]
    assert all(c["params"] == {"temperature": 0.0, "max_tokens": 16, "seed": 7} for c in calls[1:])


def test_vllm_worker_failure_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no vllm at all there
    request = vllm_request("/m", "/m", "fp32", [[1]], Decoding(2, 0), [{"name": "fine_tuned", "adapter": None}])
    with pytest.raises(StageError, match="failed with exit 1") as e:
        run_vllm(Backend("vllm", python=sys.executable), request)
    assert "No module named 'vllm'" in str(e.value)


def test_worker_usage():
    worker = Path(files("loft.runtime").joinpath("vllm_worker.py"))
    proc = subprocess.run([sys.executable, str(worker)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr
