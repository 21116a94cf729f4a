# Two entry points for a fresh clone: `make demo` and `make test`. Each creates .venv on its own.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-long test-fast lint bench lock parity clean fuzz

# torch is pinned in the same pip command as the rest: this machine holds the 2.13.0 CPU wheel,
# while an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml setup.py constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 -c constraints.txt -e '.[runtime,deepspeed,observe,dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check compiler runtime targets tests benchmarks examples
	$(VENV)/bin/mypy compiler runtime

# `make test` stays within ~10 minutes on 2 cores; the multi-process and end-to-end runs (marker `long`) are
# `make test-long`; .ci/run runs both.
test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider -m "not fuzz and not long"

test-long: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "long and not fuzz"

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow and not fuzz"

# 10,000 mutated configs (LOFT_FUZZ_CASES=N for another number); tests/fuzz/test_fuzz_configs.py
fuzz: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m fuzz tests/fuzz

bench: $(STAMP)
	$(PY) benchmarks/build_speed.py
	$(PY) benchmarks/estimator_accuracy.py

# Maintainers: re-resolve targets/locks/ from targets/requirements.json (uv; needs PyPI, and the PyTorch
# wheel index for the cu126/cu128 builds; locks whose index is unreachable are reported and kept as they are).
lock: $(STAMP)
	$(PY) -m loft.compiler.lockgen --uv $(VENV)/bin/uv

# Row-level parity with the real Axolotl (installs it into .axolotl-venv on first use; minutes per case on CPU).
# `--write` refreshes tests/axolotl/parity/expected/, which `make test` checks offline.
parity: $(STAMP)
	$(PY) benchmarks/axolotl_parity.py --install $(PARITY_ARGS)

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache
