"""Packed (flattened, position_ids) and padded batches give the same per-sample losses as one-by-one."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from loft.runtime.train.collate import IGNORE_INDEX, flatten, pad  # noqa: E402


def _rows() -> list[dict]:
    a = {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9], "sample_ids": [1]}
    b = {"input_ids": [10, 11, 12], "labels": [-100, 11, 12], "sample_ids": [2]}
    packed = {"input_ids": [13, 14, 15, 16, 17, 18], "labels": [13, 14, 15, 16, 17, 18],
              "position_ids": [0, 1, 2, 0, 1, 2], "sample_ids": [3, 4]}
    return [a, b, packed]


def test_flatten_shapes_and_boundaries():
    batch = flatten(_rows())
    assert batch["input_ids"].shape == (1, 14)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 0, 1, 2]]
    labels = batch["labels"][0].tolist()
    # every sample's first label is masked: no sample is trained to predict the next one's first token
    for i, p in enumerate(batch["position_ids"][0].tolist()):
        if p == 0:
            assert labels[i] == IGNORE_INDEX
    assert labels[2:5] == [7, 8, 9] and labels[-2:] == [17, 18]
    assert batch["sample_ids"] == [[1], [2], [3, 4]]
    assert "attention_mask" not in batch


def test_pad_shapes():
    batch = pad(_rows()[:2], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["labels"][1].tolist() == [-100, 11, 12, -100, -100]


def test_packed_loss_equals_separate_samples(tiny_model_dir):
    """Block-diagonal attention from position_ids: a packed row scores each sample as if it were alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    samples = []
    for n in (7, 4, 9):
        ids = torch.randint(3, model.config.vocab_size, (n,), generator=g).tolist()
        samples.append({"input_ids": ids, "labels": [-100, *ids[1:]], "sample_ids": [len(samples)]})
    with torch.no_grad():
        total, count = 0.0, 0
        for s in samples:
            b = pad([s], pad_token_id=0)
            b.pop("sample_ids")
            n_lab = sum(1 for x in s["labels"][1:] if x != -100)
            total += float(model(**b, use_cache=False).loss) * n_lab
            count += n_lab
        sep = total / count
        fb = flatten(samples)
        fb.pop("sample_ids")
        packed = float(model(**fb, use_cache=False).loss)  # the Trainer turns the cache off too
        pb = pad(samples, pad_token_id=0)
        pb.pop("sample_ids")
        padded = float(model(**pb, use_cache=False).loss)
    assert packed == pytest.approx(sep, abs=1e-5)
    assert padded == pytest.approx(sep, abs=1e-5)
