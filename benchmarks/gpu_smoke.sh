#!/usr/bin/env bash
# GPU smoke test: the user's path on a real GPU box, end to end, recorded in benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_smoke.sh            (from a checkout, on a Linux machine with an NVIDIA GPU)
#
# 1. a fresh venv ($WORK/venv) with loft installed from this checkout (the compiler's small dependencies);
# 2. a probe bundle for Qwen/Qwen2.5-0.5B-Instruct (catalog facts, no download) whose `launch.sh install`
#    installs the lock that fits this machine's driver into that venv: the bundle's real install path;
# 3. a 0.5B-shaped model with random weights from a config.json (Qwen2.5-0.5B's layers, hidden size, heads
#    and MLP; a 512-token tokenizer trained on the shipped chat data, so no hub access is needed);
# 4. three bundles, each `bash run/launch.sh` (check → prepare → train → eval → merge → export):
#    LoRA bf16; QLoRA (nf4, paged 8-bit AdamW); full fine-tune with DeepSpeed ZeRO-2 on every visible GPU.
#    eval generates with vLLM from its own env (launch.sh eval makes it from requirements/eval-vllm.lock);
# 5. replaces the section between the gpu-smoke markers of benchmarks/RESULTS.md with each mode's result
#    (exit status, seconds per stage, losses, eval backend, measured peak memory), the versions installed
#    and the first lines of the model card.
#
# env: WORK=dir (default .gpu-smoke), PYTHON=python3.X for the venv, STEPS=20, MODES="lora qlora zero2".
set -euo pipefail

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="${WORK:-$ROOT/.gpu-smoke}"
PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-20}"
MODES="${MODES:-lora qlora zero2}"
RESULTS="$ROOT/benchmarks/RESULTS.md"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_smoke: no nvidia-smi: run this on a machine with an NVIDIA GPU (RESULTS.md stays 'not yet measured')" >&2
  exit 1
fi
mkdir -p "$WORK"
GPUS="$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)"

echo "==> gpu_smoke: venv $WORK/venv" >&2
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "$ROOT"

echo "==> gpu_smoke: probe bundle, launch.sh install (the lock for this driver)" >&2
cat > "$WORK/probe.yaml" <<'YAML'
loft: 1
name: probe
model: {base: Qwen/Qwen2.5-0.5B-Instruct}
data: {datasets: [{path: chat.jsonl, format: messages}]}
adapter: {type: qlora}
training: {optimizer: paged_adamw_8bit}
deepspeed: {stage: 2}
YAML
cp "$ROOT/examples/data/chat.jsonl" "$WORK/chat.jsonl"
"$WORK/venv/bin/loftc" build "$WORK/probe.yaml" -o "$WORK/probe" --force >/dev/null
PYTHON="$VPY" bash "$WORK/probe/launch.sh" install

echo "==> gpu_smoke: 0.5B-shaped random model" >&2
"$VPY" - "$ROOT" "$WORK/model" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from examples.tiny import build_tokenizer
from transformers import AutoTokenizer
out = Path(sys.argv[2])
build_tokenizer(out, family="chatml")
tok = AutoTokenizer.from_pretrained(str(out))
config = {  # Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV, MLP 4864), this tokenizer's vocab
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": len(tok),
    "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    "hidden_act": "silu", "torch_dtype": "bfloat16", "bos_token_id": tok.bos_token_id,
    "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id, "initializer_range": 0.02,
}
(out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
PY

mode_config() {
  local adapter="{type: lora, r: 16}" optimizer=adamw_torch_fused target="{kind: local, gpu: H100}" zero=0 lr=2.0e-4
  case "$1" in
    qlora) adapter="{type: qlora, r: 16}"; optimizer=paged_adamw_8bit ;;
    zero2) adapter="{type: none}"; zero=2; lr=2.0e-5; target="{kind: multi_gpu, gpu: H100, num_gpus: $GPUS}" ;;
  esac
  cat <<YAML
loft: 1
name: smoke-$1
model: {base: ./model, init: random, dtype: bf16}
data: {datasets: [{path: chat.jsonl, format: messages}], eval_split: 0.05}
template: chatml
sequence: {max_length: 512, packing: true}
adapter: $adapter
training: {max_steps: $STEPS, micro_batch_size: 4, gradient_accumulation_steps: 1, learning_rate: $lr,
           optimizer: $optimizer, precision: bf16, logging_steps: 5, save_steps: $STEPS}
deepspeed: {stage: $zero}
eval: {prompts: ["Hello, how are you?"], max_new_tokens: 32}
export: {merge: true, formats: [safetensors]}
target: $target
YAML
}

for mode in $MODES; do
  echo "==> gpu_smoke: $mode" >&2
  mode_config "$mode" > "$WORK/$mode.yaml"
  rm -rf "$WORK/$mode-run"
  "$WORK/venv/bin/loftc" build "$WORK/$mode.yaml" -o "$WORK/$mode-run" >/dev/null
  start=$SECONDS
  set +e
  PYTHON="$VPY" bash "$WORK/$mode-run/launch.sh" 2>&1 | tee "$WORK/$mode.log"
  rc=${PIPESTATUS[0]}
  set -e
  echo "$rc $((SECONDS - start))" > "$WORK/$mode.status"
done

echo "==> gpu_smoke: writing $RESULTS" >&2
"$VPY" - "$WORK" "$RESULTS" "$MODES" <<'PY'
import json, re, subprocess, sys
from importlib import metadata
from pathlib import Path
work, results, modes = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()

def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}

smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip().splitlines()
head = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
cuda = (re.search(r"CUDA Version:\s*([0-9.]+)", head) or [None, "?"])[1]
lines = ["<!-- gpu-smoke:begin -->", "## GPU smoke (`benchmarks/gpu_smoke.sh`)", "",
         f"Machine: {len(smi)} × {smi[0] if smi else '?'}, CUDA (driver) {cuda}. 0.5B-shaped random model "
         "(Qwen2.5-0.5B layers/hidden/heads/MLP, 512-token tokenizer), chat.jsonl, `bash run/launch.sh`.", "",
         "| mode | exit | seconds | first → last loss | eval backend | measured peak GiB | merged | exported |",
         "|---|---:|---:|---|---|---:|---|---|"]
card = ""
for mode in modes:
    run = work / f"{mode}-run"
    status = (work / f"{mode}.status").read_text().split() if (work / f"{mode}.status").exists() else ["—", "—"]
    out = run / "out"
    losses = [json.loads(l).get("loss") for l in (out / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in l] if (out / "metrics.jsonl").exists() else []
    losses = [x for x in losses if isinstance(x, (int, float))]
    train = read(out / "train_report.json")
    ev = read(out / "eval" / "report.json")
    peak = train.get("peak_memory_gib") or (train.get("measured") or {}).get("peak_reserved_gib") or "—"
    loss = f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "—"
    lines.append(f"| {mode} | {status[0]} | {status[1]} | {loss} | {ev.get('backend', '—')} | {peak} | "
                 f"{'yes' if (out / 'merged').is_dir() else 'no'} | {'yes' if (out / 'export').is_dir() else 'no'} |")
    for c in (out / "export" / "README.md", out / "merged" / "README.md", out / "final" / "README.md"):
        if not card and c.is_file():
            card = "\n".join(c.read_text().splitlines()[:15])
versions = []
for pkg in ("torch", "transformers", "peft", "accelerate", "datasets", "deepspeed", "bitsandbytes", "flash-attn"):
    try:
        versions.append(f"{pkg} {metadata.version(pkg)}")
    except metadata.PackageNotFoundError:
        pass
vllm_py = sorted(Path.home().glob(".cache/loft/eval-vllm-*/bin/python"))
if vllm_py:
    v = subprocess.run([str(vllm_py[-1]), "-c", "import vllm, torch; print(vllm.__version__, torch.__version__)"],
                       capture_output=True, text=True).stdout.split()
    if len(v) == 2:
        versions.append(f"vllm {v[0]} (own env, torch {v[1]})")
lines += ["", "Versions: " + ", ".join(versions) + "."]
if card:
    lines += ["", "Model card (first lines):", "", "```", card, "```"]
lines.append("<!-- gpu-smoke:end -->")
text = results.read_text()
block = "\n".join(lines)
new = re.sub(r"<!-- gpu-smoke:begin -->.*?<!-- gpu-smoke:end -->", lambda m: block, text, flags=re.S)
results.write_text(new if new != text or "gpu-smoke:begin" in text else text.rstrip("\n") + "\n\n" + block + "\n")
print(block)
PY
