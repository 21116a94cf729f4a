"""The export stage: the plan's ``export.formats`` into ``<out>/export/<format>/``.

* ``safetensors``: the merged model (or the full fine-tune; the adapter alone when merging is off) with its
  tokenizer and chat template.
* ``gguf``: llama.cpp's ``convert_hf_to_gguf.py`` (found via ``LLAMA_CPP_DIR`` or on PATH) run on the
  merged model. Without it the stage fails with what to install; it is never silently skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .train.model import StageError

if TYPE_CHECKING:
    from .plan import Bundle

GGUF_HELP = ("gguf export needs llama.cpp's converter: `git clone https://github.com/ggml-org/llama.cpp && "
             "pip install -r llama.cpp/requirements.txt` (this installs the `gguf` package), then set "
             "LLAMA_CPP_DIR=/path/to/llama.cpp (or put convert_hf_to_gguf.py on PATH) and run "
             "`loft export RUN_DIR` again")


def _say(msg: str) -> None:
    print(f"[loft] {msg}", file=sys.stderr, flush=True)


def source_dir(bundle: Bundle) -> Path:
    merged = bundle.out / "merged"
    if (merged / "config.json").is_file():
        return merged
    final = bundle.out / "final"
    if (final / "config.json").is_file() or (final / "adapter_config.json").is_file():
        return final
    raise StageError(f"nothing to export under {bundle.out}: run train (and merge) first")


def export_safetensors(src: Path, dest: Path) -> list[str]:
    """Copy the safetensors weights and the files needed to load them; re-save if weights are pickles."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if not any(src.glob("*.safetensors")):
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(str(src)).save_pretrained(str(tmp))
    tmp.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file() and f.suffix not in (".bin", ".pt", ".pth") and not (tmp / f.name).exists():
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return sorted(p.name for p in dest.iterdir())


def find_gguf_converter() -> Path | None:
    root = os.environ.get("LLAMA_CPP_DIR")
    if root and (Path(root) / "convert_hf_to_gguf.py").is_file():
        return Path(root) / "convert_hf_to_gguf.py"
    found = shutil.which("convert_hf_to_gguf.py")
    return Path(found) if found else None


def export_gguf(src: Path, dest: Path, name: str, dtype: str) -> list[str]:
    if (src / "adapter_config.json").is_file():
        raise StageError("gguf export needs merged weights: set export.merge: true (the adapter alone "
                         "cannot be converted here)")
    script = find_gguf_converter()
    if script is None:
        raise StageError(GGUF_HELP)
    dest.mkdir(parents=True, exist_ok=True)
    outtype = {"bf16": "bf16", "fp16": "f16"}.get(dtype, "f32")
    outfile = dest / f"{name}-{outtype}.gguf"
    proc = subprocess.run([sys.executable, str(script), str(src), "--outfile", str(outfile), "--outtype", outtype],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageError(f"llama.cpp's converter failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return [outfile.name]


def push(dest: Path, target: Any) -> str:
    spec = target if isinstance(target, dict) else {"repo_id": str(target)}
    from huggingface_hub import HfApi

    token_env = spec.get("token_env", "HF_TOKEN")
    api = HfApi(token=os.environ.get(token_env))
    api.create_repo(spec["repo_id"], private=bool(spec.get("private", True)), exist_ok=True)
    api.upload_folder(repo_id=spec["repo_id"], folder_path=str(dest))
    return str(spec["repo_id"])


def run(bundle: Bundle) -> int:
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "export"):
        return 0
    ecfg = bundle.config.get("export") or {}
    formats = list(ecfg.get("formats") or [])
    if not formats:
        _say("export is off in this plan (export.formats: [])")
        return 0
    src = source_dir(bundle)
    root = bundle.out / "export"
    report: dict[str, Any] = {"source": str(src), "formats": {}}
    errors: list[str] = []
    from .progress import track

    for fmt in track(formats, "export", unit="formats"):
        dest = root / fmt
        try:
            if fmt == "safetensors":
                files = export_safetensors(src, dest)
            elif fmt == "gguf":
                files = export_gguf(src, dest, str(bundle.plan.get("name") or "model"),
                                    bundle.config["model"].get("dtype", "bf16"))
            else:
                raise StageError(f"export format {fmt!r} is not supported (safetensors, gguf)")
            report["formats"][fmt] = {"dir": str(dest), "files": files}
            _say(f"exported {fmt}: {dest}")
        except StageError as e:
            errors.append(f"{fmt}: {e}")
            report["formats"][fmt] = {"error": str(e)}
    if ecfg.get("push_to_hub") and not errors:
        report["pushed_to"] = push(root / formats[0], ecfg["push_to_hub"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "export_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if errors:
        raise StageError("; ".join(errors))
    return 0
