"""Shared test setup: offline hub, the repo root importable (for examples.tiny), ../shared when present."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (read-only material); tests that need it skip where a clone has none."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (a user's clone has none); this test needs its reference material")
    return SHARED


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-architecture model (llama3 chat tokens) with random weights, built once per session."""
    from examples.tiny import build_model

    return build_model(tmp_path_factory.mktemp("tiny-llama") / "model")
