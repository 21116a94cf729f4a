"""Aux losses against direct computations (training temperature, adaptive label smoothing)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from loft.runtime.train.losses import aux_losses_active, causal_lm_loss  # noqa: E402


def _batch(seed: int = 0, vocab: int = 11, length: int = 9) -> tuple:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, length, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (2, length), generator=g)
    labels[0, :3] = -100
    labels[1, -2:] = -100
    amb = torch.rand(2, length, generator=g)
    return logits, labels, amb


def _direct(logits, labels, tau=1.0, amb=None, max_s=0.0, n=None) -> float:
    """Token-by-token reference: position t predicts labels[t+1]."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            z = [float(v) / tau for v in logits[b, t]]
            m = max(z)
            lse = m + math.log(sum(math.exp(v - m) for v in z))
            logp = [v - lse for v in z]
            eps = 0.0 if amb is None else max_s * min(1.0, max(0.0, float(amb[b, t + 1])))
            total += (1 - eps) * -logp[y] + eps * -sum(logp) / len(logp)
            count += 1
    return total / (n if n is not None else count)


def test_temperature_one_is_transformers_loss_bit_for_bit(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = -100
    out = model(input_ids=ids, labels=labels)
    mine = causal_lm_loss(out.logits, labels, temperature=1.0)
    assert torch.equal(mine, out.loss)
    n = torch.tensor(37)
    ref = model(input_ids=ids, labels=labels, num_items_in_batch=n).loss
    assert torch.equal(causal_lm_loss(out.logits, labels, num_items_in_batch=n), ref)


@pytest.mark.parametrize("tau", [0.5, 2.0, 3.7])
def test_temperature_matches_direct(tau):
    logits, labels, _ = _batch()
    got = float(causal_lm_loss(logits, labels, temperature=tau))
    assert got == pytest.approx(_direct(logits, labels, tau), rel=1e-5)
    assert got != pytest.approx(_direct(logits, labels, 1.0), rel=1e-3)  # τ really changes the loss


def test_adaptive_label_smoothing_matches_direct():
    logits, labels, amb = _batch(seed=3)
    got = float(causal_lm_loss(logits, labels, ambiguity=amb, max_smoothing=0.3))
    assert got == pytest.approx(_direct(logits, labels, 1.0, amb, 0.3), rel=1e-5)
    # with num_items_in_batch (gradient accumulation): a sum divided by the accumulated token count
    got_n = float(causal_lm_loss(logits, labels, ambiguity=amb, max_smoothing=0.3, num_items_in_batch=40))
    assert got_n == pytest.approx(_direct(logits, labels, 1.0, amb, 0.3, n=40), rel=1e-5)
    # both at once
    got_both = float(causal_lm_loss(logits, labels, temperature=2.0, ambiguity=amb, max_smoothing=0.2))
    assert got_both == pytest.approx(_direct(logits, labels, 2.0, amb, 0.2), rel=1e-5)


def test_zero_ambiguity_is_plain_cross_entropy_and_scores_are_clamped():
    logits, labels, amb = _batch(seed=5)
    zero = torch.zeros_like(amb)
    assert float(causal_lm_loss(logits, labels, ambiguity=zero, max_smoothing=0.5)) == pytest.approx(
        float(causal_lm_loss(logits, labels)), rel=1e-6)
    big = amb * 10  # out-of-range scores act as 1
    assert float(causal_lm_loss(logits, labels, ambiguity=big, max_smoothing=0.1)) == pytest.approx(
        float(causal_lm_loss(logits, labels, ambiguity=torch.ones_like(amb), max_smoothing=0.1)), rel=1e-6)


def test_bad_temperature_and_active_flag():
    logits, labels, _ = _batch()
    with pytest.raises(ValueError):
        causal_lm_loss(logits, labels, temperature=0.0)
    assert not aux_losses_active({"training_temperature": 1.0, "adaptive_label_smoothing": {"enabled": False}})
    assert aux_losses_active({"training_temperature": 0.7})
    assert aux_losses_active({"adaptive_label_smoothing": {"enabled": True, "max_smoothing": 0.1}})
