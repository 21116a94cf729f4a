"""The estimator's tensor accounting checked against real torch ops on the CPU (small shapes).

Peak bytes are read from torch's profiler memory events (every allocation and free, in order), so these
tests check what autograd really keeps alive — the same op-level behaviour the CUDA kernels share — for
the two terms issue 18 asked about: the loss path of a large vocabulary and the tied embedding's gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from estimate_facts import plan
from loft.compiler.estimate.setup import setup_from_plan
from loft.compiler.estimate.vram import logits_bytes_per_token

torch = pytest.importorskip("torch")


def live_bytes(fn: Callable[[], object]) -> tuple[int, int]:
    """(peak, final) bytes allocated inside `fn` beyond what existed before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak, live


def test_loss_path_bytes_per_token_match_transformers_causal_lm_loss() -> None:
    """ForCausalLMLoss: bf16 logits → .float() → cross_entropy (log_softmax + nll). Forward 10·V per token
    with the logits, backward 14·V (the logits + the saved fp32 output + the incoming and outgoing fp32
    gradients)."""
    vocab, tokens = 4096, 128
    facts = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
             "intermediate_size": 128, "vocab_size": vocab}
    s, _ = setup_from_plan(plan(facts))
    assert s is not None
    logits = torch.randn(tokens, vocab, dtype=torch.bfloat16, requires_grad=True)  # 2·V per token, already live
    labels = torch.randint(0, vocab, (tokens,))

    def forward() -> None:
        up = logits.float()
        torch.nn.functional.cross_entropy(up, labels)

    def step() -> None:
        up = logits.float()
        loss = torch.nn.functional.cross_entropy(up, labels)
        del up
        loss.backward()

    fwd_peak, _ = live_bytes(forward)
    bwd_peak, _ = live_bytes(step)
    per = vocab * tokens
    assert (2 * per + fwd_peak) / per == pytest.approx(logits_bytes_per_token(s, "forward") / vocab, abs=0.01)
    assert (2 * per + bwd_peak) / per == pytest.approx(logits_bytes_per_token(s, "backward") / vocab, abs=0.01)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_embedding_gradient_is_added_while_both_are_alive(tied: bool) -> None:
    """Tied: the lm_head's V×h gradient waits in autograd's input buffer until the embedding's arrives, so
    two V×h tensors are alive at once (one more than the final .grad). Untied: each gradient becomes .grad
    itself, nothing beyond the final gradients is alive."""
    vocab, hidden, tokens = 8192, 128, 16
    emb = torch.randn(vocab, hidden, dtype=torch.bfloat16, requires_grad=True)
    head = emb if tied else torch.randn(vocab, hidden, dtype=torch.bfloat16, requires_grad=True)
    ids = torch.randint(0, vocab, (tokens,))

    def step() -> None:
        x = torch.nn.functional.embedding(ids, emb)
        (x @ head.t()).float().sum().backward()

    peak, final = live_bytes(step)
    vh = 2 * vocab * hidden
    assert final == pytest.approx(vh if tied else 2 * vh, rel=0.02)  # the .grad tensors that remain
    transient = peak - final
    small = 16 * tokens * (vocab + hidden)  # per-token buffers (logits and their gradient)
    if tied:
        assert vh <= transient <= vh + small
    else:
        assert transient <= small
