#!/usr/bin/env bash
# loft run bundle, compiled by loftc: its name, source config and settings are in plan.lock / plan.md.
# Generated file: change the config and rebuild instead of editing it. (No config text appears in these
# comments: a value is only ever written as a quoted shell word below.)
#
# usage: bash launch.sh [all|check|install|prepare|train|eval|merge|export|sweep]
#   all (default) runs check, then: prepare train eval merge export
#   install: pip-installs the lock that fits this machine's NVIDIA driver (requirements/locks.json) into
#   $PYTHON's environment; check: driver, GPUs, free memory and disk, packages working on the GPU.
#   sweep: prepare, then every sweep trial in one process (results in $OUTPUT_DIR/sweep/).
#   LOFT_TRIAL=N selects sweep trial N (0..0); PYTHON picks the interpreter.
#   train resumes from the newest complete checkpoint in $OUTPUT_DIR/checkpoints (trial N:
#   $OUTPUT_DIR/trial-N/checkpoints) when one exists; `touch STOP` here saves and quits.
set -euo pipefail

LOFT_BUNDLE_NAME=qlora
LOFT_SOURCE_FILE=qlora.yaml
LOFT_TARGET=local

RUN_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
export PYTHONPATH="$RUN_DIR${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python3}"
OUTPUT_DIR=out
case "$OUTPUT_DIR" in
  /*) OUT="$OUTPUT_DIR" ;;
  *) OUT="$RUN_DIR/$OUTPUT_DIR" ;;
esac
N_TRIALS=1

usage() {
  cat >&2 <<'USAGE'
usage: bash launch.sh [all|check|install|prepare|train|eval|merge|export|sweep]
  all (default): check, then prepare -> train -> eval -> merge -> export, skipping stages the plan turns off
  install: pip install the lock that fits this machine's driver (run it in the venv you will train in)
  check: is this machine ready (driver, GPUs, free memory, disk, packages on the GPU)? exit 1 lists why not
  sweep: prepare, then every sweep trial in one process (results in OUTPUT_DIR/sweep/)
  env: LOFT_TRIAL=N (sweep trial), PYTHON=/path/to/python, LOFT_SKIP_PREFLIGHT=1 (no import check, no
       check), LOFT_EVAL_VENV=DIR (vLLM's own environment; default ~/.cache/loft/eval-vllm-<lock hash>)
USAGE
  echo "  this bundle: $LOFT_BUNDLE_NAME (target $LOFT_TARGET), compiled from $LOFT_SOURCE_FILE" >&2
}

STAGE="${1:-all}"
case "$STAGE" in
  all|check|install|prepare|train|eval|merge|export|sweep) ;;
  -h|--help|help) usage; exit 0 ;;
  *) echo "launch.sh: unknown stage '$STAGE'" >&2; usage; exit 2 ;;
esac
if [[ $# -gt 1 ]]; then
  echo "launch.sh: expected at most one stage, got: $*" >&2
  usage
  exit 2
fi

TRIAL_ARGS=()
if [[ -n "${LOFT_TRIAL:-}" ]]; then
  if [[ ! "$LOFT_TRIAL" =~ ^[0-9]+$ ]] || (( LOFT_TRIAL >= N_TRIALS )); then
    echo "launch.sh: LOFT_TRIAL=$LOFT_TRIAL is not a trial of this bundle (0..$((N_TRIALS - 1)), see sweep.jsonl)" >&2
    exit 2
  fi
  TRIAL_ARGS=(--trial "$LOFT_TRIAL")
elif [[ "$N_TRIALS" -gt 1 && "$STAGE" != sweep ]]; then
  echo "==> loft: this bundle holds a sweep of $N_TRIALS trials (sweep.jsonl); running the base config." >&2
  echo "    run them all with: bash launch.sh sweep; one trial with LOFT_TRIAL=N (0..$((N_TRIALS - 1))); outputs in $OUTPUT_DIR/trial-N" >&2
fi

need_python() {
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "launch.sh: no Python interpreter '$PYTHON' (set PYTHON=/path/to/python)" >&2
    exit 1
  fi
}

# pip-install the lock that fits this machine's driver (the runtime's box module picks it; stdlib only)
install_lock() {
  need_python
  local lock
  lock="$("$PYTHON" -m loft.runtime.box lock "$RUN_DIR")" || exit 1
  echo "==> loft: installing $lock into the environment of $PYTHON" >&2
  "$PYTHON" -m pip install --require-hashes -r "$RUN_DIR/$lock"
}

# the machine against the plan: every problem listed, exit 1 (launch.sh check, and first in launch.sh all/train)
run_check() {
  need_python
  "$PYTHON" -m loft.runtime.check "$RUN_DIR" --stage "$STAGE"
}

preflight() {
  if [[ -n "${LOFT_SKIP_PREFLIGHT:-}" ]]; then
    return 0
  fi
  need_python
  local missing
  missing="$("$PYTHON" - torch accelerate bitsandbytes datasets huggingface_hub jinja2 jsonschema matplotlib numpy peft pyarrow pynvml safetensors tokenizers transformers <<'PY'
import importlib.util
import sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PY
)"
  if [[ -n "$missing" ]]; then
    echo "launch.sh: the loft runtime needs Python packages that $PYTHON cannot import: $missing" >&2
    echo "  install them with:  $PYTHON -m pip install -r \"$RUN_DIR/requirements.lock\"" >&2
    exit 1
  fi
}

stage_on() {
  case "$1" in
    prepare) return 0 ;;
    train) return 0 ;;
    eval) return 0 ;;
    merge) return 0 ;;
    export) return 0 ;;
    *) return 1 ;;
  esac
}

run_stage() {
  echo "==> loft: $1${LOFT_TRIAL:+ (trial $LOFT_TRIAL)}" >&2
  "$PYTHON" -m loft.runtime "$1" "$RUN_DIR" ${TRIAL_ARGS[@]+"${TRIAL_ARGS[@]}"}
}

# vLLM pins its own torch: it lives in its own venv, made once from requirements/eval-vllm.lock (keyed by
# the lock's hash, so bundles with the same lock share it) and passed to eval as LOFT_VLLM_PYTHON.
eval_env() {
  local lock="$RUN_DIR/requirements/eval-vllm.lock"
  local sum venv
  sum="$(sha256sum "$lock" | cut -c1-16)"
  venv="${LOFT_EVAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/loft/eval-vllm-$sum}"
  if [[ ! -f "$venv/.loft-installed" ]]; then
    echo "==> loft: making vLLM's own environment in $venv (made once, then reused)" >&2
    if ! { "$PYTHON" -m venv "$venv" && "$venv/bin/python" -m pip install --require-hashes -r "$lock"; } >&2; then
      echo "==> loft: vLLM could not be installed into $venv; eval generates with transformers" >&2
      return 0
    fi
    touch "$venv/.loft-installed"
  fi
  export LOFT_VLLM_PYTHON="$venv/bin/python"
}

run_train() {
  local stage="${1:-train}"  # train, or sweep: every trial under the same launcher
  local ckpts="$OUT${LOFT_TRIAL:+/trial-$LOFT_TRIAL}/checkpoints"
  if compgen -G "$ckpts/checkpoint-*" >/dev/null; then
    echo "==> loft: train resumes from the newest complete checkpoint in $ckpts" >&2
  fi
  echo "==> loft: $stage (python)${LOFT_TRIAL:+ (trial $LOFT_TRIAL)}" >&2
  "$PYTHON" -m loft.runtime "$stage" "$RUN_DIR" ${TRIAL_ARGS[@]+"${TRIAL_ARGS[@]}"}
}

run_named() {
  if [[ "$1" == train ]]; then
    run_train
  elif [[ "$1" == sweep ]]; then
    run_stage prepare
    run_train sweep
  elif [[ "$1" == eval ]]; then
    eval_env
    run_stage eval
  else
    run_stage "$1"
  fi
}

cd "$RUN_DIR"
case "$STAGE" in
  install) install_lock; exit 0 ;;
  check) run_check; exit $? ;;
esac
preflight
if [[ -z "${LOFT_SKIP_PREFLIGHT:-}" && ( "$STAGE" == all || "$STAGE" == train || "$STAGE" == sweep ) ]]; then
  run_check
fi
if [[ "$STAGE" != all ]]; then
  run_named "$STAGE"
  exit 0
fi
for s in prepare train eval merge export; do
  if ! stage_on "$s"; then
    echo "==> loft: $s is off in this plan, skipped" >&2
    continue
  fi
  run_named "$s"
done
echo "==> loft: done; outputs in $OUT" >&2
