"""Packing: every sample once, rows within capacity, best-fit efficiency."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from loft.runtime.prepare.pack import efficiency, pack


@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), max_size=200), capacity=st.integers(64, 200))
def test_pack_places_each_sample_once_within_capacity(lengths, capacity):
    bins = pack(lengths, capacity)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= capacity for b in bins)
    # Best fit opens a row only for a sample that fits no open row, so any two rows together overflow the
    # capacity (no two could be merged); hence fewer than 2·total/capacity + 1 rows. (An 11/9·total/capacity
    # bound is not sound: total/capacity underestimates the optimum, e.g. six 33-token samples in 64.)
    loads = [sum(lengths[i] for i in b) for b in bins]
    assert all(a + b > capacity for j, a in enumerate(loads) for b in loads[j + 1:])
    assert len(bins) < 2 * sum(lengths) / capacity + 1


def test_pack_is_optimal_when_no_two_samples_fit_together():
    assert len(pack([32, 33, 33, 33, 33, 33], 64)) == 6  # 32 + 33 > 64: six rows is the optimum


def test_pack_is_deterministic_and_dense():
    lengths = [60, 40, 30, 70, 10, 90, 20, 80]
    assert pack(lengths, 100) == pack(lengths, 100)
    bins = pack(lengths, 100)
    assert len(bins) == 4 and efficiency(lengths, bins, 100) == 1.0


def test_packed_position_ids_isolate_samples_in_transformers_attention(tiny_model_dir):
    """transformers 5.x finds packed samples from restarting position_ids (masking_utils, when no
    attention_mask and no cache): a packed row gives each sample the logits it gets alone, for sdpa and
    eager, provided use_cache=False. With the config's use_cache=True the model builds a DynamicCache even
    in training, the packed detection is skipped, and samples attend to each other: the train stage must
    run with use_cache=False."""
    import torch
    from transformers import AutoModelForCausalLM

    samples = [[5, 17, 42, 9, 33], [7, 8, 99, 12], [61, 3, 14]]
    ids = torch.tensor([[t for s in samples for t in s]])
    pos = torch.tensor([[p for s in samples for p in range(len(s))]])
    for impl in ("sdpa", "eager"):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation=impl).train()
        with torch.no_grad():
            packed = model(input_ids=ids, position_ids=pos, labels=ids, use_cache=False).logits[0]
            start = 0
            for s in samples:
                alone = model(input_ids=torch.tensor([s]), use_cache=False).logits[0]
                assert torch.allclose(packed[start:start + len(s)], alone, atol=1e-5), impl
                start += len(s)
            assert model.config.use_cache  # the default: packed samples then leak into each other
            leaky = model(input_ids=ids, position_ids=pos, labels=ids).logits[0]
            assert not torch.allclose(leaky[5:9], packed[5:9], atol=1e-3)
