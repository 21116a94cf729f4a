"""`loft merge --base M --adapters a b --weights ... --method ...`: PEFT's add_weighted_adapter, checked
against PEFT run by hand, logits against base + adapter, and bad input refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}"


def make_adapter(base_dir: Path, out: Path, seed: int, r: int = 4, config_edit: dict | None = None) -> Path:
    """A LoRA adapter with random (non-zero) A and B on the tiny base: what training would leave."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    if config_edit:
        cfg = AutoConfig.from_pretrained(str(base_dir))
        for k, v in config_edit.items():
            setattr(cfg, k, v)
        base = AutoModelForCausalLM.from_config(cfg)
    else:
        base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("adapters")
    first = make_adapter(tiny_model_dir, root / "a", 1)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tok.chat_template = TEMPLATE
    tok.save_pretrained(str(first))  # as train saves it beside the adapter
    return [first, make_adapter(tiny_model_dir, root / "b", 2)]


def by_hand(base_dir, adapters, weights, method, density):
    """The same merge, written directly against PEFT."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(adapters[0]),
                                      adapter_name="x")
    model.load_adapter(str(adapters[1]), adapter_name="y")
    torch.manual_seed(0)
    model.add_weighted_adapter(["x", "y"], weights, "m", combination_type=method, density=density)
    model.set_adapter("m")
    return model


@pytest.mark.parametrize(("method", "density"), [("linear", None), ("ties", 0.5), ("dare_linear", 0.5),
                                                  ("dare_ties", 0.7), ("cat", None), ("svd", None)])
def test_weighted_merge_equals_peft(tiny_model_dir, adapters, tmp_path, method, density):
    import torch
    from loft.runtime.__main__ import main
    from safetensors.torch import load_file

    out = tmp_path / "merged"
    argv = ["merge", "--base", str(tiny_model_dir), "--adapters", *map(str, adapters), "--weights", "0.7", "0.3",
            "--method", method, "-o", str(out)]
    assert main([*argv, *(["--density", str(density)] if density else [])]) == 0
    ours = load_file(str(out / "model.safetensors"))
    reference = by_hand(tiny_model_dir, adapters, [0.7, 0.3], method, density)
    with torch.no_grad():
        ids = torch.tensor([[1, 5, 9, 30, 2, 77]])
        unmerged = reference(input_ids=ids).logits
    theirs = {k: v for k, v in reference.merge_and_unload().state_dict().items() if k in ours}
    assert set(theirs) == set(ours) - {"lm_head.weight"} or set(theirs) == set(ours)
    for k, v in theirs.items():
        assert torch.equal(ours[k], v), k
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).chat_template == TEMPLATE  # the first adapter's tokenizer
    record = json.loads((out / "loft_merge.json").read_text())
    assert record["method"] == method and record["weights"] == [0.7, 0.3]
    if method in ("linear", "cat"):  # exact combinations: the merged logits are the combined adapter's
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(str(out))
        with torch.no_grad():
            assert torch.allclose(merged(input_ids=ids).logits, unmerged, atol=1e-5)


def test_single_adapter_merge_is_base_plus_adapter(tiny_model_dir, adapters, tmp_path):
    import torch
    from loft.runtime.__main__ import main
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "one"
    assert main(["merge", "--base", str(tiny_model_dir), "--adapters", str(adapters[0]), "-o", str(out)]) == 0
    ids = torch.tensor([[1, 5, 9, 30, 2, 77]])
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(adapters[0]))
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    with torch.no_grad():
        a = AutoModelForCausalLM.from_pretrained(str(out))(input_ids=ids).logits
        b = adapted(input_ids=ids).logits
        c = plain(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-4)


def test_bad_merge_requests_are_clear_and_write_nothing(tiny_model_dir, adapters, tmp_path, capsys):
    from loft.runtime.__main__ import main

    other = make_adapter(tiny_model_dir, tmp_path / "other-base", 3, config_edit={"intermediate_size": 256})
    no_weights = tmp_path / "empty-adapter"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text((adapters[0] / "adapter_config.json").read_text())
    base = ["merge", "--base", str(tiny_model_dir)]
    cases = [
        ([*base, "--adapters", str(adapters[0]), str(other)], "does not fit this base model"),
        ([*base, "--adapters", str(no_weights)], "no adapter weights"),
        ([*base, "--adapters", str(tmp_path / "nope")], "no such directory"),
        ([*base, "--adapters", *map(str, adapters), "--weights", "1"], "1 weight(s) for 2 adapter(s)"),
        ([*base, "--adapters", *map(str, adapters), "--method", "ties"], "give --density"),
        ([*base, "--adapters", *map(str, adapters), "--method", "average"], "expected one of linear"),
        ([*base, "--adapters", str(adapters[0]), "--density", "1.5", "--method", "ties"], "0 < D <= 1"),
        ([*base, "--adapters", str(tiny_model_dir)], "not a LoRA adapter"),
    ]
    for argv, message in cases:
        out = tmp_path / "out"
        assert main([*argv, "-o", str(out)]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert not out.exists() and not list(tmp_path.glob(".out*")), argv  # nothing half-written
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("user data")
    assert main([*base, "--adapters", str(adapters[0]), "-o", str(keep)]) == 1
    assert "not empty" in capsys.readouterr().err and (keep / "mine.txt").read_text() == "user data"
    assert main(["merge"]) == 2
