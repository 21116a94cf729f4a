"""GGUF written in Python with the ``gguf`` package (llama.cpp's own gguf-py), for the architectures loft
trains with a byte-level BPE tokenizer: Llama (and Mistral, which llama.cpp runs as llama), Qwen2, Qwen3.

What llama.cpp's ``convert_hf_to_gguf.py`` does for these, and so what this does: hyperparameters under the
architecture's keys; tensor names from ``gguf.get_tensor_name_map``; Llama's q/k projections permuted back
from the HF rotary layout to the interleaved one llama.cpp's rope expects (Qwen uses NeoX rope: unchanged);
a ``rope_freqs`` tensor for Llama 3.1-style rope scaling (computed by transformers' own rope init); 1-D
tensors (norms, biases) kept in f32; the vocabulary as a "gpt2" (byte-level BPE) tokenizer with token types,
merges, special ids and the chat template (``gguf.SpecialVocab``). Other architectures and tokenizers are
refused with a message pointing at llama.cpp's converter (``LLAMA_CPP_DIR``), which ``export`` runs instead.

Quantization: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 in Python (``gguf.quants``); K-quants (q4_k_m, ...)
by llama.cpp's quantizer through llama-cpp-python (``llama_model_quantize``) from an f16 file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .train.model import StageError

ARCHS = {  # HF architecture -> (gguf arch name, permute q/k for llama.cpp's rope)
    "LlamaForCausalLM": ("LLAMA", True),
    "MistralForCausalLM": ("LLAMA", True),
    "Qwen2ForCausalLM": ("QWEN2", False),
    "Qwen3ForCausalLM": ("QWEN3", False),
}
PYTHON_QUANTS = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1",
                 "q5_0": "Q5_0", "q5_1": "Q5_1"}
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
              "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "q5_0": "MOSTLY_Q5_0", "q5_1": "MOSTLY_Q5_1",
              "q2_k": "MOSTLY_Q2_K", "q3_k_s": "MOSTLY_Q3_K_S", "q3_k_m": "MOSTLY_Q3_K_M",
              "q3_k_l": "MOSTLY_Q3_K_L", "q4_k_s": "MOSTLY_Q4_K_S", "q4_k_m": "MOSTLY_Q4_K_M",
              "q5_k_s": "MOSTLY_Q5_K_S", "q5_k_m": "MOSTLY_Q5_K_M", "q6_k": "MOSTLY_Q6_K"}
K_QUANTS = tuple(q for q in FILE_TYPES if q not in PYTHON_QUANTS)
QUANTS = tuple(FILE_TYPES)
# the pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre), keyed by the HF Split pattern
PRE_TOKENIZERS = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
}
LLAMA_CPP_INSTALL = "pip install llama-cpp-python (builds llama.cpp; or `pip install 'loft[gguf]'`)"


def check_quant(quant: str) -> str:
    q = quant.lower()
    if q not in FILE_TYPES:
        raise StageError(f"unknown GGUF quant type {quant!r}: expected one of {', '.join(QUANTS)}")
    return q


@dataclass
class Source:
    """A merged model directory as the writer needs it."""

    path: Path
    config: Any  # transformers PretrainedConfig
    arch: str  # gguf MODEL_ARCH member name
    permute: bool


def inspect_source(path: Path) -> Source:
    """The model's architecture, checked to be one this writer handles (else a StageError saying so)."""
    from transformers import AutoConfig

    if (path / "adapter_config.json").is_file():
        raise StageError("gguf export needs merged weights (run `loft merge RUN` first, or set export.merge: true)")
    config = AutoConfig.from_pretrained(str(path))
    archs = list(getattr(config, "architectures", None) or [])
    match = next((ARCHS[a] for a in archs if a in ARCHS), None)
    if match is None:
        raise StageError(f"gguf: architecture {archs or config.model_type} is not one loft writes itself "
                         f"({', '.join(sorted(ARCHS))}); set LLAMA_CPP_DIR to a llama.cpp checkout to use its "
                         "converter (convert_hf_to_gguf.py)")
    return Source(path=path, config=config, arch=match[0], permute=match[1])


def _rope(config: Any) -> tuple[float, dict[str, Any]]:
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    theta = float(params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)
    return theta, params


def permute_qk(w: Any, n_head: int) -> Any:
    """HF stores rotary q/k rows as [first halves | second halves] per head; llama.cpp's (GPT-J style)
    rope expects them interleaved: the inverse of transformers' convert_llama_weights_to_hf permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hparams(writer: Any, src: Source, name: str, ftype: Any) -> None:
    c = src.config
    heads = int(c.num_attention_heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    theta, _ = _rope(c)
    writer.add_name(name)
    writer.add_context_length(int(c.max_position_embeddings))
    writer.add_embedding_length(int(c.hidden_size))
    writer.add_block_count(int(c.num_hidden_layers))
    writer.add_feed_forward_length(int(c.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(getattr(c, "num_key_value_heads", None) or heads))
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(float(c.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != c.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(int(c.vocab_size))
    writer.add_file_type(ftype)


def _rope_tensors(src: Source) -> dict[str, Any]:
    """Llama 3.1-style rope scaling as llama.cpp's ``rope_freqs`` factors: default inverse frequencies over
    the scaled ones, both from transformers' rope init functions."""
    _, params = _rope(src.config)
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind == "default":
        return {}
    if kind != "llama3":
        raise StageError(f"gguf: rope scaling {kind!r} is not written by loft; set LLAMA_CPP_DIR to use "
                         "llama.cpp's converter")
    import copy

    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](src.config, "cpu")
    plain_config = copy.deepcopy(src.config)
    if getattr(plain_config, "rope_parameters", None):
        plain_config.rope_parameters = {"rope_type": "default", "rope_theta": _rope(src.config)[0]}
    else:
        plain_config.rope_scaling = None
    default_fn = getattr(type(plain_config), "compute_default_rope_parameters", None) or \
        ROPE_INIT_FUNCTIONS.get("default")
    if default_fn is None:
        raise StageError("gguf: this transformers version has no default rope init to compare against")
    plain, _ = default_fn(plain_config, "cpu")
    return {"rope_freqs.weight": (plain / scaled).float().numpy()}


def vocabulary(writer: Any, path: Path, vocab_size: int) -> dict[str, Any]:
    """Byte-level BPE vocabulary, token types, merges, special ids and chat template (llama.cpp's "gpt2")."""
    import gguf
    from transformers import AutoTokenizer

    tj = path / "tokenizer.json"
    spec = json.loads(tj.read_text(encoding="utf-8")) if tj.is_file() else {}
    if (spec.get("model") or {}).get("type") != "BPE":
        raise StageError("gguf: loft writes byte-level BPE tokenizers (tokenizer.json with a BPE model); this "
                         "one is not (SentencePiece?); set LLAMA_CPP_DIR to use llama.cpp's converter")
    tok = AutoTokenizer.from_pretrained(str(path))
    pre = _pre_name(spec.get("pre_tokenizer") or {})
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(str(path), load_merges=True, n_vocab=vocab_size)
    if tok.chat_template and not special.chat_template:
        special.chat_template = tok.chat_template
    special.add_to_gguf(writer, quiet=True)
    return {"tokenizer_model": "gpt2", "pre": pre, "tokens": len(tokens),
            "chat_template": bool(special.chat_template)}


def _pre_name(pre: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer: plain GPT-2 byte-level, or a known Split regex."""
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    for p in pre.get("pretokenizers") or []:
        regex = (p.get("pattern") or {}).get("Regex")
        if p.get("type") == "Split" and regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
    raise StageError("gguf: this tokenizer's pre-tokenizer is not one loft can name for llama.cpp; set "
                     "LLAMA_CPP_DIR to use llama.cpp's converter (it identifies tokenizers by their output)")


def _tensors(src: Source) -> dict[str, Any]:
    """Every weight of the model as float32 numpy, by HF name (safetensors files, lazily per file)."""
    from safetensors import safe_open

    files = sorted(src.path.glob("*.safetensors"))
    if not files:
        raise StageError(f"gguf: no *.safetensors weights in {src.path}")
    out: dict[str, Any] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                out[name] = st.get_tensor(name).float().numpy()
    return out


def write(src: Source, dest: Path, quant: str, name: str) -> dict[str, Any]:
    """Write ``dest`` (a .gguf file) at a Python-supported quant type; returns what was written."""
    import gguf
    import numpy as np

    qname = PYTHON_QUANTS[quant]
    qtype = gguf.GGMLQuantizationType[qname]
    arch = gguf.MODEL_ARCH[src.arch]
    c = src.config
    blocks = int(c.num_hidden_layers)
    names = gguf.get_tensor_name_map(arch, blocks)
    writer = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[arch])
    _hparams(writer, src, name, gguf.LlamaFileType[FILE_TYPES[quant]])
    vocab = vocabulary(writer, src.path, int(c.vocab_size))
    heads, kv = int(c.num_attention_heads), int(getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
    tensors = _tensors(src)
    if getattr(c, "tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)  # llama.cpp reuses token_embd when output.weight is absent
    written: dict[str, list[int]] = {}
    for hf_name, data in {**_rope_tensors(src), **tensors}.items():
        if hf_name.endswith(".rotary_emb.inv_freq"):
            continue
        new = hf_name if hf_name == "rope_freqs.weight" else names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise StageError(f"gguf: no GGUF name for tensor {hf_name!r} in {src.arch}; set LLAMA_CPP_DIR to use "
                             "llama.cpp's converter")
        if src.permute and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, heads)
        elif src.permute and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, kv)
        data = np.ascontiguousarray(data)
        kind = qtype if data.ndim > 1 else gguf.GGMLQuantizationType.F32
        if kind not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) and \
                data.shape[-1] % gguf.GGML_QUANT_SIZES[kind][0]:
            kind = gguf.GGMLQuantizationType.F16  # rows not a whole number of blocks (llama.cpp does the same)
        if kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(new, data.astype(np.float32))
        elif kind == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(new, data.astype(np.float16))
        else:
            writer.add_tensor(new, gguf.quants.quantize(data, kind), raw_dtype=kind)
        written[new] = list(data.shape)
    if qtype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"architecture": gguf.MODEL_ARCH_NAMES[arch], "quant": quant, "tensors": len(written), **vocab}


def k_quantize(src_file: Path, dest: Path, quant: str) -> None:
    """llama.cpp's quantizer (K-quants need its importance-aware code) through llama-cpp-python."""
    try:
        import llama_cpp
    except ImportError:
        raise StageError(f"GGUF quant {quant} is a llama.cpp K-quant: {LLAMA_CPP_INSTALL}; or export "
                         f"q8_0 / f16 (written without it)") from None
    import ctypes

    import gguf

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(gguf.LlamaFileType[FILE_TYPES[quant]])
    rc = llama_cpp.llama_model_quantize(str(src_file).encode(), str(dest).encode(), ctypes.byref(params))
    if rc != 0 or not dest.is_file():
        raise StageError(f"llama.cpp's quantizer failed for {quant} (code {rc})")


def export(src_dir: Path, stage: Path, quant: str, name: str) -> tuple[list[str], dict[str, Any]]:
    """``<stage>/<name>-<quant>.gguf`` from a merged model directory; (files, details)."""
    quant = check_quant(quant)
    src = inspect_source(src_dir)
    out = stage / f"{name}-{quant}.gguf"
    if quant in PYTHON_QUANTS:
        return [out.name], write(src, out, quant, name)
    f16 = stage / f".{name}-f16.gguf"
    details = write(src, f16, "f16", name)
    k_quantize(f16, out, quant)
    f16.unlink()
    return [out.name], {**details, "quant": quant, "quantizer": "llama-cpp-python"}
