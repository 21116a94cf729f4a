"""GGUF written by loft (gguf package), read back with gguf.GGUFReader: architecture, tensor names and
shapes, values (q/k permuted for llama.cpp's rope), tokenizer and chat template; and, where
llama-cpp-python is installed, loaded by llama.cpp with greedy tokens equal to transformers'."""

from __future__ import annotations

from pathlib import Path

import pytest

TEMPLATE = "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>{{ m['content'] }}<|eot_id|>" \
           "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{% endif %}"


@pytest.fixture(scope="module")
def merged(tiny_model_dir, tmp_path_factory) -> Path:
    """A 'merged' model: the tiny base with larger random weights (so the logits are not flat) + template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("merged") / "m"
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1:
                p.normal_(0, 0.3)
    model.save_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = TEMPLATE
    tok.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def f32_file(merged, tmp_path_factory) -> Path:
    from loft.runtime.gguf_export import export

    stage = tmp_path_factory.mktemp("gguf")
    files, details = export(merged, stage, "f32", "tiny")
    assert files == ["tiny-f32.gguf"] and details["architecture"] == "llama" and details["pre"] == "gpt-2"
    return stage / files[0]


def field(reader, key):
    f = reader.fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]]


def test_gguf_reads_back(merged, f32_file):
    import gguf
    import numpy as np
    from loft.runtime.gguf_export import permute_qk
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoTokenizer

    r = gguf.GGUFReader(str(f32_file))
    cfg = AutoConfig.from_pretrained(str(merged))
    tok = AutoTokenizer.from_pretrained(str(merged))
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.block_count") == cfg.num_hidden_layers
    assert field(r, "llama.attention.head_count_kv") == cfg.num_key_value_heads
    assert field(r, "llama.context_length") == cfg.max_position_embeddings
    assert field(r, "tokenizer.ggml.model") == "gpt2"
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == cfg.vocab_size and tokens == [tok.convert_ids_to_tokens(i) for i in range(len(tokens))]
    assert field(r, "tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert field(r, "tokenizer.ggml.bos_token_id") == tok.bos_token_id
    assert field(r, "tokenizer.chat_template") == TEMPLATE
    weights = load_file(str(merged / "model.safetensors"))
    by_name = {t.name: t for t in r.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(cfg.num_hidden_layers)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_norm", "ffn_gate", "ffn_up", "ffn_down",
                  "ffn_norm")}
    assert set(by_name) == expected  # tied embeddings: no output.weight
    pairs = {"token_embd.weight": "model.embed_tokens.weight", "blk.1.ffn_down.weight": "model.layers.1.mlp.down_proj.weight",
             "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight"}
    for g, h in pairs.items():
        assert list(by_name[g].shape) == list(reversed(weights[h].shape))
        assert np.array_equal(np.asarray(by_name[g].data).reshape(weights[h].shape), weights[h])
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    k = weights["model.layers.0.self_attn.k_proj.weight"]
    assert np.array_equal(np.asarray(by_name["blk.0.attn_q.weight"].data).reshape(q.shape), permute_qk(q, 4))
    assert np.array_equal(np.asarray(by_name["blk.0.attn_k.weight"].data).reshape(k.shape), permute_qk(k, 2))
    assert not np.array_equal(permute_qk(q, 4), q)


def test_q8_0_is_quantized_and_close(merged, tmp_path):
    import gguf
    import numpy as np
    from loft.runtime.gguf_export import export
    from safetensors.numpy import load_file

    [name], _ = export(merged, tmp_path, "q8_0", "tiny")
    r = gguf.GGUFReader(str(tmp_path / name))
    t = next(t for t in r.tensors if t.name == "blk.0.ffn_up.weight")
    norm = next(t for t in r.tensors if t.name == "blk.0.ffn_norm.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0 and norm.tensor_type == gguf.GGMLQuantizationType.F32
    w = load_file(str(merged / "model.safetensors"))["model.layers.0.mlp.up_proj.weight"]
    back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w.shape)
    assert np.abs(back - w).max() < np.abs(w).max() / 100  # 8-bit blocks: within 1% of the range
    assert field(r, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q8_0)


def test_unsupported_inputs_are_refused(merged, tmp_path):
    import json
    import shutil

    from loft.runtime.gguf_export import check_quant, inspect_source
    from loft.runtime.train.model import StageError

    with pytest.raises(StageError, match="unknown GGUF quant type 'q9'"):
        check_quant("q9")
    other = tmp_path / "gemma"
    shutil.copytree(merged, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPTBigCodeForCausalLM"],
                                                   "model_type": "gpt_bigcode"}))
    with pytest.raises(StageError, match="LLAMA_CPP_DIR"):
        inspect_source(other)


def test_llama_cpp_loads_it_and_generates_what_transformers_does(merged, f32_file):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install "
                                                        "llama-cpp-python builds llama.cpp from source)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged))
    prompt = tok.encode("user: What is AI?", add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(str(merged)).eval()
    with torch.no_grad():
        ref = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                             pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
    llm = llama_cpp.Llama(model_path=str(f32_file), n_ctx=64, n_threads=1, verbose=False, seed=0)
    assert llm.tokenize(b"user: What is AI?", add_bos=False, special=False) == prompt  # same tokenizer
    got = []
    for t in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        got.append(t)
        if len(got) == 6:
            break
    assert got == ref and len(set(ref)) > 1, (got, ref)


def test_k_quant_through_llama_cpp(merged, tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import gguf
    from loft.runtime.gguf_export import export

    files, details = export(merged, tmp_path, "q4_k_m", "tiny")
    assert files == ["tiny-q4_k_m.gguf"] and details["quantizer"] == "llama-cpp-python"
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # the f16 intermediate is gone
    r = gguf.GGUFReader(str(tmp_path / files[0]))
    assert field(r, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    assert field(r, "tokenizer.chat_template") == TEMPLATE


def test_k_quant_without_llama_cpp_names_what_to_install(merged, tmp_path, monkeypatch):
    import sys

    from loft.runtime.gguf_export import export
    from loft.runtime.train.model import StageError

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    with pytest.raises(StageError, match="pip install llama-cpp-python"):
        export(merged, tmp_path, "q4_k_m", "tiny")


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qwen_architectures(tiny_model_dir, tmp_path, arch):
    """Qwen2 (q/k/v biases) and Qwen3 (q/k norms): their GGUF names, no q/k permutation (NeoX rope), and
    llama.cpp's greedy tokens equal to transformers' where llama-cpp-python is installed."""
    import gguf
    import numpy as np
    import torch
    from loft.runtime.gguf_export import export
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base = AutoConfig.from_pretrained(str(tiny_model_dir))
    cfg = AutoConfig.for_model(arch, vocab_size=base.vocab_size, hidden_size=64, intermediate_size=128,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                               max_position_embeddings=512, tie_word_embeddings=False, rms_norm_eps=1e-6,
                               bos_token_id=base.bos_token_id, eos_token_id=base.eos_token_id)
    cfg.architectures = [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[arch]]
    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3) if p.ndim > 1 else p.uniform_(0.5, 1.5)
    src = tmp_path / arch
    model.save_pretrained(str(src))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(src))
    [name], details = export(src, tmp_path, "f32", "q")
    assert details["architecture"] == arch
    r = gguf.GGUFReader(str(tmp_path / name))
    tensors = {t.name: t for t in r.tensors}
    assert "output.weight" in tensors  # untied
    extra = {"blk.0.attn_q.bias", "blk.0.attn_k.bias"} if arch == "qwen2" else {"blk.0.attn_q_norm.weight",
                                                                                  "blk.0.attn_k_norm.weight"}
    assert extra <= set(tensors)
    q = load_file(str(src / "model.safetensors"))["model.layers.0.self_attn.q_proj.weight"]
    assert np.array_equal(np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(q.shape), q)  # not permuted
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    tok = AutoTokenizer.from_pretrained(str(src))
    prompt = tok.encode("user: What is AI?", add_special_tokens=False)
    with torch.no_grad():
        ref = model.eval().generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                    pad_token_id=0)[0, len(prompt):].tolist()
    llm = llama_cpp.Llama(model_path=str(tmp_path / name), n_ctx=64, n_threads=1, verbose=False, seed=0)
    got = []
    for t in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        got.append(t)
        if len(got) == 6:
            break
    assert got == ref, (got, ref)
