"""Translation of Axolotl's semantics into loft keys, checked against the loft schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loft.compiler.dialects.axolotl import translate
from loft.compiler.errors import ConfigError
from loft.compiler.parse import parse, parse_text
from loft.compiler.validate import validate

from tests.axolotl.helpers import BASE, codes, errors_of, keys, tr


def test_minimal_config_translates_to_a_valid_loft_config() -> None:
    cfg, _ = tr()
    validate(cfg, doc=None, file="axo.yml")
    assert cfg["loft"] == 1
    assert cfg["model"]["base"] == "meta-llama/Llama-3.2-1B"
    assert cfg["training"]["learning_rate"] == pytest.approx(2e-5)  # "2e-5" is a number
    assert cfg["training"]["micro_batch_size"] == 2 and cfg["training"]["gradient_accumulation_steps"] == 4
    assert cfg["sequence"] == {"max_length": 1024, "packing": False, "strategy": "drop"}
    assert cfg["adapter"]["type"] == "none"  # no adapter in Axolotl = full fine-tune
    assert cfg["training"]["gradient_checkpointing"] is False  # Axolotl's default differs from loft's
    assert cfg["name"] == "axo"


def test_batch_size_derives_accumulation_per_device_like_axolotl() -> None:
    """Axolotl: gradient_accumulation_steps = batch_size // micro_batch_size (per device)."""
    cfg, warns = tr("batch_size: 32\n", base=BASE.replace("gradient_accumulation_steps: 4\n", ""))
    assert cfg["training"]["gradient_accumulation_steps"] == 16  # micro_batch_size 2
    assert "global_batch_size" not in cfg["training"] and not warns
    cfg, warns = tr("batch_size: 5\n", base=BASE.replace("gradient_accumulation_steps: 4\n", ""))
    assert cfg["training"]["gradient_accumulation_steps"] == 2 and warns[0].key == "batch_size"


def test_batch_size_and_accumulation_together_is_an_error() -> None:
    diags = errors_of("batch_size: 32\n")
    assert codes(diags) == ["contradiction"] and keys(diags) == ["batch_size"]


def test_epochs_and_max_steps() -> None:
    cfg, _ = tr("num_epochs: 3\nmax_steps: 50\n")
    assert cfg["training"]["epochs"] == 3 and cfg["training"]["max_steps"] == 50


def test_warmup_steps_and_ratio() -> None:
    assert tr("warmup_steps: 10\n")[0]["training"]["warmup_steps"] == 10
    assert tr("warmup_ratio: 0.1\n")[0]["training"]["warmup_ratio"] == 0.1
    diags = errors_of("warmup_steps: 0.1\n")  # a real corpus mistake
    assert keys(diags) == ["warmup_steps"] and "warmup_ratio: 0.1" in diags[0].hint
    assert codes(errors_of("warmup_steps: 5\nwarmup_ratio: 0.1\n")) == ["contradiction"]


def test_evals_and_saves_per_epoch() -> None:
    cfg, warns = tr("val_set_size: 0.05\nevals_per_epoch: 4\nsaves_per_epoch: 1\n")
    assert cfg["data"]["eval_split"] == 0.05
    assert cfg["training"]["evals_per_epoch"] == 4
    assert "saves_per_epoch" not in cfg["training"]  # 1 = loft's default (once per epoch)
    cfg, warns = tr("val_set_size: 0\nevals_per_epoch: 4\nsaves_per_epoch: 2\n")
    assert "evals_per_epoch" not in cfg["training"] and cfg["training"]["saves_per_epoch"] == 2
    assert any(w.key == "evals_per_epoch" and "no eval split" in w.message for w in warns)
    assert codes(errors_of("val_set_size: 0.1\neval_steps: 10\nevals_per_epoch: 2\n")) == ["contradiction"]
    assert tr("save_steps: 100\n")[0]["training"]["save_steps"] == 100


def test_train_on_inputs_trains_every_role() -> None:
    cfg, _ = tr("train_on_inputs: true\n")
    assert cfg["data"]["datasets"][0]["roles_to_train"] == ["system", "user", "assistant", "tool"]


CHAT = """\
base_model: Qwen/Qwen2.5-0.5B
chat_template: qwen_25
datasets:
  - path: mlabonne/FineTome-100k
    type: chat_template
    split: train[:20%]
    field_messages: conversations
    message_property_mappings:
      role: from
      content: value
    roles:
      user: [human, usr]
      assistant: [gpt]
    roles_to_train: [assistant]
    train_on_eos: turn
  - path: mlabonne/FineTome-100k
    type: chat_template
    split: train[:500]
    message_field_role: speaker
    message_field_content: text
micro_batch_size: 1
gradient_accumulation_steps: 1
learning_rate: 0.0002
"""


def test_chat_template_datasets() -> None:
    cfg, _ = translate(parse_text(CHAT, "chat.yml"))
    validate(cfg, doc=None, file="chat.yml")
    a, b = cfg["data"]["datasets"]
    assert a == {"name": "FineTome-100k", "path": "mlabonne/FineTome-100k", "format": "messages",
                 "field_messages": "conversations", "message_fields": {"role": "from", "content": "value"},
                 "roles": {"human": "user", "usr": "user", "gpt": "assistant"}, "roles_to_train": ["assistant"],
                 "train_on_eos": "turn", "split": "train", "subset": 0.2, "subset_mode": "first"}
    assert b["name"] == "FineTome-100k-2"  # names stay unique
    assert b["subset"] == 500 and b["message_fields"] == {"role": "speaker", "content": "text"}
    assert cfg["template"] == "qwen2.5"


@pytest.mark.parametrize(("axolotl", "loft"), [("chatml", "chatml"), ("llama3", "llama3"), ("qwen3", "qwen3"),
                                               ("gemma3", "gemma3"), ("phi_35", "phi3.5"),
                                               ("mistral_v3_tekken", "mistral-nemo"), ("cohere", "command-r"),
                                               ("tokenizer_default", "auto")])
def test_chat_template_names_map_to_the_library(axolotl: str, loft: str) -> None:
    cfg, _ = translate(parse_text(CHAT.replace("qwen_25", axolotl)))
    assert cfg["template"] == loft


def test_family_own_template_uses_the_model_template_with_a_warning() -> None:
    cfg, warns = translate(parse_text(CHAT.replace("qwen_25", "qwen3_5")))
    assert cfg["template"] == "auto"
    assert any(w.key == "chat_template" and w.code == "axolotl-differs" for w in warns)


def test_unknown_chat_template_is_an_error_listing_the_library() -> None:
    with pytest.raises(ConfigError) as e:
        translate(parse_text(CHAT.replace("qwen_25", "metharme")))
    assert "qwen2.5" in e.value.diagnostics[0].expected


def test_dataset_formats() -> None:
    cfg, _ = tr("""\
datasets:
  - path: data/a.jsonl
    type: completion
    field: body
  - path: data/b.jsonl
    type: input_output
""")
    a, b = cfg["data"]["datasets"]
    # Axolotl's completion: the tokenizer's bos/eos, over-long texts cut into sequence_len chunks
    assert a == {"name": "a", "path": "data/a.jsonl", "format": "completion", "fields": {"text": "body"},
                 "special_tokens": "tokenizer", "strategy": "chunk"}
    assert b["format"] == "input_output" and b["special_tokens"] == "none"  # Axolotl adds no bos/eos
    cfg, warns = tr("datasets:\n  - path: x/y\n    type: sharegpt\n")
    assert cfg["data"]["datasets"][0]["format"] == "sharegpt" and warns


def test_unsupported_dataset_type_and_slice_are_errors() -> None:
    diags = errors_of("datasets:\n  - path: x/y\n    type: oasst\n  - path: x/z\n    type: alpaca\n"
                      "    split: train[10%:20%]\n")
    assert keys(diags) == ["datasets[0].type", "datasets[1].split"]


def test_adapter_translation() -> None:
    cfg, _ = tr("adapter: qlora\nload_in_4bit: true\nlora_r: 32\nlora_alpha: 16\nlora_target_linear: true\n"
                "peft_use_rslora: true\n")
    assert cfg["adapter"] == {"type": "qlora", "r": 32, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear",
                              "rslora": True}
    cfg, warns = tr("adapter: lora\nload_in_4bit: true\nlora_r: 8\nlora_alpha: 16\n"
                    "lora_target_modules: [q_proj, v_proj]\n")
    assert cfg["adapter"]["type"] == "qlora" and cfg["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert any(w.key == "load_in_4bit" for w in warns)
    cfg, _ = tr("adapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_modules: 'model.layers.[0-9]+.mlp.*'\n")
    assert cfg["adapter"]["target_modules"] == "model.layers.[0-9]+.mlp.*"
    validate(cfg, doc=None, file="x")
    assert codes(errors_of("adapter: lora\nlora_r: 8\n")) == ["missing-key"]  # no targets
    assert codes(errors_of("load_in_4bit: true\n")) == ["contradiction"]  # 4-bit without an adapter


def test_optimizer_scheduler_precision_attention() -> None:
    cfg, warns = tr("optimizer: adamw_bnb_8bit\nlr_scheduler: constant_with_warmup\nbf16: auto\n"
                    "flash_attention: true\ntf32: true\n")
    assert cfg["training"]["optimizer"] == "adamw_8bit"
    assert cfg["training"]["lr_scheduler"] == "constant_with_warmup"
    assert cfg["training"]["precision"] == "bf16" and cfg["model"]["dtype"] == "bf16"
    assert cfg["model"]["attn_implementation"] == "flash_attention_2"
    assert any(w.key == "tf32" for w in warns)
    assert tr("bf16: false\nfp16: true\n")[0]["training"]["precision"] == "fp16"
    assert tr("bf16: false\n")[0]["training"]["precision"] == "fp32"
    assert tr("attn_implementation: xformers\n")[0]["model"]["attn_implementation"] == "sdpa"
    d = errors_of("optimizer: adamw_torhc\n")
    assert "adamw_torch" in d[0].hint
    assert codes(errors_of("flash_attention: true\nsdp_attention: true\n")) == ["contradiction"]


def test_wandb_keys_become_tracking_with_env_var_names_only() -> None:
    cfg, _ = tr("wandb_project: proj\nwandb_entity: team\nwandb_name: my run\n")
    assert cfg["tracking"]["wandb"] == {"project": "proj", "entity": "team", "api_key_env": "WANDB_API_KEY"}
    assert cfg["name"] == "my-run"


def test_a_secret_value_is_an_error_and_never_copied() -> None:
    with pytest.raises(ConfigError) as e:
        tr("wandb_project: p\nwandb_api_key: abcd1234secret\n")
    assert e.value.diagnostics[0].code == "secret"
    assert "abcd1234secret" not in e.value.render()


def test_fsdp1_prefixed_keys() -> None:
    cfg, warns = tr("""\
fsdp: [full_shard, auto_wrap]
fsdp_config:
  fsdp_offload_params: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_sync_module_states: true
""")
    assert cfg["fsdp"] == {"enabled": True, "version": 1, "sharding": "full_shard", "offload_params": True,
                           "state_dict_type": "sharded", "transformer_layer_cls": ["LlamaDecoderLayer"]}
    assert any("fsdp_sync_module_states" in w.message for w in warns)
    validate(cfg, doc=None, file="x")


def test_fsdp2_reshard_and_the_ignored_fsdp1_key() -> None:
    cfg, warns = tr("""\
fsdp_config:
  fsdp_version: 2
  reshard_after_forward: false
  sharding_strategy: SHARD_GRAD_OP
  activation_checkpointing: true
""")
    assert cfg["fsdp"]["version"] == 2 and cfg["fsdp"]["sharding"] == "shard_grad_op"
    assert cfg["training"]["gradient_checkpointing"] is True
    assert [w.code for w in warns if w.key == "fsdp_config.sharding_strategy"] == ["axolotl-ignored"]
    diags = errors_of("fsdp_config:\n  fsdp_version: 2\n  reshard_after_forward: false\n"
                      "  sharding_strategy: FULL_SHARD\n")
    assert codes(diags) == ["contradiction"]
    assert codes(errors_of("fsdp_config:\n  auto_wrap_policy: SIZE_BASED_WRAP\n")) == ["axolotl-unsupported"]
    assert codes(errors_of("deepspeed: deepspeed_configs/zero2.json\nfsdp: [full_shard]\n")) == ["contradiction"]


def test_deepspeed_json_is_read_next_to_the_config_or_above(tmp_path: Path) -> None:
    (tmp_path / "deepspeed_configs").mkdir()
    (tmp_path / "deepspeed_configs/z.json").write_text(json.dumps(
        {"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}}))
    (tmp_path / "examples").mkdir()
    cfg_file = tmp_path / "examples/axo.yml"
    cfg_file.write_text(BASE + "deepspeed: deepspeed_configs/z.json\n")
    cfg, warns = translate(parse(cfg_file))
    assert cfg["deepspeed"] == {"stage": 3, "offload_optimizer": False, "offload_params": True}
    assert not warns


def test_deepspeed_known_axolotl_file_and_bad_paths() -> None:
    cfg, warns = tr("deepspeed: deepspeed_configs/zero2.json\n")  # not on disk next to "axo.yml"
    assert cfg["deepspeed"] == {"stage": 2, "offload_optimizer": True, "offload_params": False}
    assert [w.code for w in warns] == ["axolotl-deepspeed-builtin"]
    assert codes(errors_of("deepspeed: ../../etc/x.json\n")) == ["path"]
    assert codes(errors_of("deepspeed: configs/mine.json\n")) == ["path"]


def test_axolotl_zero2_offloads_the_optimizer(shared_dir: Path) -> None:
    """The corpus' own zero2.json offloads the optimizer to CPU, and translation keeps that."""
    raw = json.loads((shared_dir / "corpus/axolotl/deepspeed_configs/zero2.json").read_text())
    assert raw["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    f = shared_dir / "corpus/axolotl/examples/examples__jamba__qlora_deepspeed.yaml"
    cfg, warns = translate(parse(f))
    assert cfg["deepspeed"] == {"stage": 2, "offload_optimizer": True, "offload_params": False}
    assert not [w for w in warns if w.code == "axolotl-deepspeed-builtin"]  # read from the file itself


def test_plugins_become_kernels() -> None:
    cfg, _ = tr("plugins:\n  - axolotl.integrations.liger.LigerPlugin\n"
                "  - axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin\n"
                "liger_rope: true\nliger_rms_norm: true\nliger_glu_activation: true\n")
    assert cfg["training"]["kernels"] == {"liger": True, "cut_cross_entropy": True}
    cfg, warns = tr("liger_rms_norm: true\n")  # without the plugin Axolotl ignores it
    assert "kernels" not in cfg["training"]
    assert [w.code for w in warns] == ["axolotl-ignored"]
    assert keys(errors_of("plugins:\n  - my.company.SecretSaucePlugin\n")) == ["plugins[0]"]


def test_special_tokens() -> None:
    cfg, _ = tr("special_tokens:\n  pad_token: <|end_of_text|>\n")
    assert cfg["model"]["special_tokens"] == {"pad_token": "<|end_of_text|>"}
    assert keys(errors_of("special_tokens:\n  additional_special_tokens: [a]\n")) == [
        "special_tokens.additional_special_tokens"]


def test_every_unsupported_key_is_reported_at_once_with_its_line() -> None:
    diags = errors_of("rl: dpo\nneftune_noise_alpha: 5\nqat:\n  weight_dtype: int8\n")
    assert sorted(keys(diags)) == ["neftune_noise_alpha", "qat", "rl"]
    text = BASE.count("\n")
    assert sorted(d.line for d in diags) == [text + 1, text + 2, text + 3]
    assert all(d.file == "axo.yml" and d.col == 1 for d in diags)


def test_off_values_of_unsupported_keys_are_fine_and_no_effect_keys_warn() -> None:
    _, warns = tr("lora_model_dir:\nneftune_noise_alpha:\nrl:\ndataset_prepared_path: last_run_prepared\n"
                    "torch_compile: true\n")
    assert sorted(w.key for w in warns) == ["dataset_prepared_path", "torch_compile"]
    assert all(w.severity == "warning" for w in warns)


def test_outputs_and_resume() -> None:
    assert tr("output_dir: ./outputs/lora-out\n")[0]["output_dir"] == "outputs/lora-out"
    cfg, warns = tr("output_dir: /abs/out\n")
    assert "output_dir" not in cfg and warns[0].key == "output_dir"
    assert keys(errors_of("resume_from_checkpoint: ./outputs/checkpoint-10\n")) == ["resume_from_checkpoint"]


def test_missing_required_keys() -> None:
    with pytest.raises(ConfigError) as e:
        translate(parse_text("datasets:\n  - path: a/b\n    type: alpaca\nmicro_batch_size: 1\n"))
    msgs = e.value.render()
    assert "base_model" in msgs and "learning_rate" in msgs


def test_names_are_valid_loft_names() -> None:
    cfg, _ = tr("wandb_project: p\nwandb_name: '__my run: v2!'\n")
    assert cfg["name"] == "my-run-v2"
    cfg, _ = translate(parse_text(BASE, "/tmp/__weird name.yml"))
    assert cfg["name"] == "weird-name"
    validate(cfg, doc=None, file="x")


def test_deepspeed_json_with_its_own_optimizer_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 2}, "gradient_clipping": 0.5,
                                                 "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}}}))
    f = tmp_path / "axo.yml"
    f.write_text(BASE + "deepspeed: ds.json\n")
    with pytest.raises(ConfigError) as e:
        translate(parse(f))
    assert [d.key for d in e.value.diagnostics] == ["deepspeed"] and "optimizer" in e.value.diagnostics[0].message
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}, "gradient_clipping": 0.5}))
    cfg, warns = translate(parse(f))
    assert cfg["deepspeed"]["stage"] == 1 and "gradient_clipping" in warns[0].message


def test_bnb_kwargs_matching_loft_qlora_are_accepted() -> None:
    q = "adapter: qlora\nload_in_4bit: true\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
    cfg, _ = tr(q + "bnb_config_kwargs:\n  bnb_4bit_use_double_quant: true\n")
    assert cfg["adapter"]["type"] == "qlora"
    assert [d.key for d in errors_of(q + "bnb_config_kwargs:\n  bnb_4bit_quant_type: fp4\n")] == ["bnb_config_kwargs"]


def test_type_specific_dataset_keys() -> None:
    cfg, _ = tr("datasets:\n  - path: x/y\n    type: sharegpt\n    roles_to_train: [assistant, user]\n")
    assert cfg["data"]["datasets"][0]["roles_to_train"] == ["assistant", "user"]
    cfg, warns = tr("datasets:\n  - path: x/z\n    type: alpaca\n    field_messages: conversations\n")
    assert "field_messages" not in cfg["data"]["datasets"][0]
    assert [(w.key, w.code) for w in warns if w.key.startswith("datasets[0]")] == [
        ("datasets[0].field_messages", "axolotl-ignored")]
    diags = errors_of("chat_template_jinja: a.jinja\ndatasets:\n  - path: x/y\n    type: chat_template\n"
                      "    chat_template_jinja: b.jinja\n")
    assert [d.key for d in diags] == ["datasets[0].chat_template_jinja"]
