"""The export stage (``loft export RUN [--format merged|gguf|awq|gptq] [--quant q8_0]``): the plan's
``export.formats`` into ``<out>/export/<format>/``, each with a model card (README.md, model_card.py).

* ``safetensors`` (``--format merged``): the merged model (or the full fine-tune; the adapter alone when
  merging is off) with its tokenizer and chat template.
* ``gguf``: written in Python by ``gguf_export.py`` (gguf package) at ``export.quant``; K-quants through
  llama-cpp-python. With ``LLAMA_CPP_DIR`` set (or ``convert_hf_to_gguf.py`` on PATH), llama.cpp's own
  converter is run instead (any architecture it knows).
* ``awq`` / ``gptq``: 4-bit weights by llm-compressor (a GPU extra), calibrated on the run's prepared train
  rows; a clear error where it or a GPU is missing.

Every format is written to a staging directory and renamed into place; an error (bad quant type, a full
disk) leaves no partial file, and the other formats are still written (the stage then exits 1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import check_weights
from .atomic import staged_dir
from .gguf_export import PYTHON_QUANTS, check_quant
from .train.model import StageError

if TYPE_CHECKING:
    from .plan import Bundle

FORMATS = ("safetensors", "gguf", "awq", "gptq")
ALIASES = {"merged": "safetensors"}
CONVERTER_OUTTYPES = ("f32", "f16", "bf16", "q8_0")
QUANT_INSTALL = "pip install llmcompressor (the bundle's GPU extra: pip install 'loft[quant]')"


def _say(msg: str) -> None:
    print(f"[loft] {msg}", file=sys.stderr, flush=True)


def source_dir(bundle: Bundle) -> Path:
    merged = bundle.out / "merged"
    if (merged / "config.json").is_file():
        check_weights(merged, "merged model")
        return merged
    final = bundle.out / "final"
    if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        check_weights(final, "trained model")
        return final
    raise StageError(f"nothing to export under {bundle.out}: run train (and merge) first")


def default_quant(bundle: Bundle) -> str:
    """``export.quant: auto`` = the plan's weights dtype, unquantized."""
    quant = (bundle.config.get("export") or {}).get("quant") or "auto"
    if quant != "auto":
        return str(quant)
    return {"bf16": "bf16", "fp16": "f16"}.get(bundle.config["model"].get("dtype", "bf16"), "f32")


def export_safetensors(src: Path, stage: Path) -> list[str]:
    """Copy the safetensors weights and the files needed to load them; re-save if weights are pickles."""
    if not any(src.glob("*.safetensors")):
        from transformers import AutoModelForCausalLM

        auto: Any = AutoModelForCausalLM
        auto.from_pretrained(str(src)).save_pretrained(str(stage))
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix not in (".bin", ".pt", ".pth") and f.name != "README.md" \
                and not (stage / f.name).exists():
            shutil.copy2(f, stage / f.name)
    return sorted(p.name for p in stage.iterdir())


def find_gguf_converter() -> Path | None:
    root = os.environ.get("LLAMA_CPP_DIR")
    if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
        return Path(root) / "convert_hf_to_gguf.py"
    found = shutil.which("convert_hf_to_gguf.py")
    return Path(found) if found else None


def export_gguf(src: Path, stage: Path, name: str, quant: str) -> tuple[list[str], dict[str, Any]]:
    from . import gguf_export

    if (src / "adapter_config.json").is_file():
        raise StageError("gguf export needs merged weights: set export.merge: true (the adapter alone "
                         "cannot be converted here)")
    script = find_gguf_converter()
    if script is None:
        return gguf_export.export(src, stage, quant, name)
    outtype = quant if quant in CONVERTER_OUTTYPES else "f16"
    outfile = stage / f"{name}-{outtype}.gguf"
    proc = subprocess.run([sys.executable, str(script), str(src), "--outfile", str(outfile), "--outtype", outtype],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError(f"llama.cpp's converter failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    if outtype == quant:
        return [outfile.name], {"converter": str(script), "quant": quant}
    final = stage / f"{name}-{quant}.gguf"
    gguf_export.k_quantize(outfile, final, quant)
    outfile.unlink()
    return [final.name], {"converter": str(script), "quant": quant, "quantizer": "llama-cpp-python"}


def export_quantized(bundle: Bundle, src: Path, stage: Path, method: str) -> list[str]:
    """AWQ or GPTQ 4-bit (W4A16) weights by llm-compressor's ``oneshot``, calibrated on prepared train rows."""
    import torch

    if not torch.cuda.is_available():
        raise StageError(f"{method} export calibrates on a CUDA GPU; none is visible here (export gguf or "
                         "safetensors on this machine, or run `loft export RUN --format "
                         f"{method}` on the GPU box)")
    try:
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import GPTQModifier
    except ImportError:
        raise StageError(f"{method} export needs llm-compressor: {QUANT_INSTALL}") from None
    if (src / "adapter_config.json").is_file():
        raise StageError(f"{method} export needs merged weights: set export.merge: true")
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if method == "awq":
        from llmcompressor.modifiers.awq import AWQModifier

        recipe: Any = AWQModifier(targets=["Linear"], scheme="W4A16", ignore=["lm_head"])
    else:
        recipe = GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    train = bundle.prepared / "train"
    if not train.is_dir():
        raise StageError(f"{method} export calibrates on {train}: run prepare first")
    rows = load_from_disk(str(train))
    n = min(256, len(rows))
    calib = rows.select(range(n)).select_columns(["input_ids"]).map(lambda r: {"attention_mask": [1] * len(r["input_ids"])})
    auto: Any = AutoModelForCausalLM
    model = auto.from_pretrained(str(src), dtype="auto")
    tok = AutoTokenizer.from_pretrained(str(src))
    oneshot(model=model, dataset=calib, recipe=recipe, max_seq_length=max(len(r) for r in calib["input_ids"]),
            num_calibration_samples=n)
    model.save_pretrained(str(stage), save_compressed=True)
    tok.save_pretrained(str(stage))
    return sorted(p.name for p in stage.iterdir())


def push(dest: Path, target: Any) -> str:
    spec = target if isinstance(target, dict) else {"repo_id": str(target)}
    from huggingface_hub import HfApi

    token_env = spec.get("token_env", "HF_TOKEN")
    api = HfApi(token=os.environ.get(token_env))
    api.create_repo(spec["repo_id"], private=bool(spec.get("private", True)), exist_ok=True)
    api.upload_folder(repo_id=spec["repo_id"], folder_path=str(dest))
    return str(spec["repo_id"])


def _formats(bundle: Bundle, fmt: str | None) -> list[str]:
    wanted = [fmt] if fmt else list((bundle.config.get("export") or {}).get("formats") or [])
    out = [ALIASES.get(f, f) for f in wanted]
    unknown = [f for f in out if f not in FORMATS]
    if unknown:
        raise StageError(f"export format {unknown[0]!r} is not supported ({', '.join(('merged', *FORMATS))})")
    return out


def run(bundle: Bundle, export_format: str | None = None, quant: str | None = None) -> int:
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "export"):
        return 0
    formats = _formats(bundle, export_format)
    if not formats:
        _say("export is off in this plan (export.formats: [])")
        return 0
    q = check_quant(quant or default_quant(bundle))  # a bad quant type fails before anything is written
    if "gguf" in formats and q not in PYTHON_QUANTS and find_gguf_converter() is None:
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            from .gguf_export import LLAMA_CPP_INSTALL

            raise StageError(f"GGUF quant {q} is a llama.cpp K-quant: {LLAMA_CPP_INSTALL}; or use "
                             f"--quant q8_0 / f16 (written without it)")
    src = source_dir(bundle)
    name = str(bundle.plan.get("name") or "model")
    root = bundle.out / "export"
    report: dict[str, Any] = {"source": str(src), "formats": {}}
    errors: list[str] = []
    from .model_card import write_card
    from .progress import track

    for fmt in track(formats, "export", unit="formats"):
        dest = root / fmt
        try:
            with staged_dir(dest) as stage:
                details: dict[str, Any] = {}
                if fmt == "safetensors":
                    files = export_safetensors(src, stage)
                elif fmt == "gguf":
                    files, details = export_gguf(src, stage, name, q)
                else:
                    files = export_quantized(bundle, src, stage, fmt)
                card_fmt = "adapter" if (src / "adapter_config.json").is_file() else fmt
                write_card(bundle, card_fmt, stage, extra_tags=(fmt,) if fmt != "safetensors" else ())
            report["formats"][fmt] = {"dir": str(dest), "files": sorted({*files, "README.md"}), **details}
            _say(f"exported {fmt}: {dest}")
        except StageError as e:
            errors.append(f"{fmt}: {e}")
            report["formats"][fmt] = {"error": str(e)}
    if (bundle.config.get("export") or {}).get("push_to_hub") and not errors:
        report["pushed_to"] = push(root / formats[0], bundle.config["export"]["push_to_hub"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "export_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if errors:
        raise StageError("; ".join(errors))
    return 0
