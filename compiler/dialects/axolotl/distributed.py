"""The distributed section: DeepSpeed (read from its JSON) and FSDP 1/2."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import did_you_mean
from . import keys as K
from .context import Translation

# Axolotl's published DeepSpeed JSONs (deepspeed_configs/*.json): used when the file is not found.
KNOWN_DEEPSPEED: dict[str, dict[str, Any]] = {
    "zero1.json": {"stage": 1, "offload_optimizer": False, "offload_params": False},
    "zero1_torch_compile.json": {"stage": 1, "offload_optimizer": False, "offload_params": False},
    "zero2.json": {"stage": 2, "offload_optimizer": True, "offload_params": False},
    "zero2_torch_compile.json": {"stage": 2, "offload_optimizer": True, "offload_params": False},
    "zero3.json": {"stage": 3, "offload_optimizer": False, "offload_params": False},
    "zero3_bf16.json": {"stage": 3, "offload_optimizer": False, "offload_params": False},
    "zero3_bf16_cpuoffload_all.json": {"stage": 3, "offload_optimizer": True, "offload_params": True},
    "zero3_bf16_cpuoffload_params.json": {"stage": 3, "offload_optimizer": False, "offload_params": True},
}


def distributed(t: Translation) -> None:
    ds = t.d.get("deepspeed")
    fsdp_list, fsdp_cfg = t.d.get("fsdp"), t.d.get("fsdp_config")
    fsdp_on = bool(fsdp_list) or bool(fsdp_cfg)
    if ds and fsdp_on:
        t.err(["deepspeed"], "DeepSpeed and FSDP are both configured", code="contradiction",
              hint="keep one")
        return
    if ds:
        deepspeed(t, ds)
    if fsdp_on:
        fsdp(t, fsdp_list, fsdp_cfg if isinstance(fsdp_cfg, dict) else {})


def deepspeed(t: Translation, ds: Any) -> None:
    data: dict[str, Any]
    if isinstance(ds, dict):
        data = ds
        label = "the inline deepspeed config"
    elif isinstance(ds, str):
        found, label = read_deepspeed(t, ds)
        if found is None:
            return
        data = found
    else:
        t.err(["deepspeed"], "expected a path to a DeepSpeed JSON file or a mapping", code="type")
        return
    zero = data.get("zero_optimization") if isinstance(data.get("zero_optimization"), dict) else data
    assert isinstance(zero, dict)
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        t.err(["deepspeed"], f"{label}: ZeRO stage {stage!r} is not 0-3", code="type")
        return

    def offloaded(key: str) -> bool:
        v = zero.get(key)
        if isinstance(v, dict):
            return str(v.get("device", "none")).lower() in ("cpu", "nvme")
        return bool(v) if isinstance(v, bool) else False

    t.put("deepspeed.stage", stage, "deepspeed")
    t.put("deepspeed.offload_optimizer", offloaded("offload_optimizer"), "deepspeed")
    t.put("deepspeed.offload_params", offloaded("offload_param"), "deepspeed")
    if "compile" in data:
        t.warn(["deepspeed"], f"{label} enables torch.compile: a speed setting loft does not copy")
    for block in ("optimizer", "scheduler"):
        if isinstance(data.get(block), dict):
            t.err(["deepspeed"], f"{label} defines its own {block}, which would replace the one the config "
                  "names; loft renders ds_config.json from training.* and does not copy it",
                  hint=f"remove the {block} block and set it with Axolotl's `optimizer` / `lr_scheduler` keys")
    fixed = [k for k in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                         "gradient_clipping") if k in data and data[k] != "auto"]
    if fixed:
        t.warn(["deepspeed"], f"{label} fixes {', '.join(fixed)}; loft's ds_config.json takes these from "
               "training.* (the values in the Axolotl config)", code="axolotl-differs")


def read_deepspeed(t: Translation, ref: str) -> tuple[dict[str, Any] | None, str]:
    """Find the JSON next to the config or in an Axolotl checkout above it; else Axolotl's known files."""
    rel = PurePosixPath(ref)
    if rel.is_absolute() or ".." in rel.parts or rel.suffix != ".json":
        t.err(["deepspeed"], f"{ref!r}: expected a relative path to a .json file inside the project",
              code="path")
        return None, ref
    here = Path(t.doc.path).resolve().parent
    for base in (here, *here.parents):
        p = base / rel
        if p.is_file():
            try:
                data = json.loads(p.read_text("utf-8"))
            except (OSError, ValueError) as e:
                t.err(["deepspeed"], f"cannot read {p}: {e}", code="path")
                return None, ref
            if not isinstance(data, dict):
                t.err(["deepspeed"], f"{p} is not a JSON object", code="type")
                return None, ref
            return data, ref
    known = KNOWN_DEEPSPEED.get(rel.name)
    if known is not None and rel.parent.name in ("deepspeed_configs", ""):
        t.warn(["deepspeed"], f"{ref} was not found next to the config; using Axolotl's published "
               f"{rel.name} (ZeRO-{known['stage']}, optimizer offload: {known['offload_optimizer']}, "
               f"parameter offload: {known['offload_params']})", code="axolotl-deepspeed-builtin")
        return {"zero_optimization": {"stage": known["stage"],
                                      "offload_optimizer": {"device": "cpu" if known["offload_optimizer"] else "none"},
                                      "offload_param": {"device": "cpu" if known["offload_params"] else "none"}}}, ref
    t.err(["deepspeed"], f"DeepSpeed config {ref!r} was not found next to the config or above it",
          code="path", hint="copy the JSON next to the config, or set the ZeRO stage in loft's "
          "`deepspeed:` section after `loftc convert`")
    return None, ref


def fsdp(t: Translation, fsdp_list: Any, fc: dict[str, Any]) -> None:
    """Axolotl FSDP (1 or 2, prefixed or plain fsdp_config keys) -> loft's fsdp section (accelerate FSDP)."""
    t.put("fsdp.enabled", True, *[k for k in ("fsdp", "fsdp_config") if t.d.get(k)])
    opts: dict[str, tuple[str, Any]] = {}  # plain key -> (original key, value)
    for k, v in fc.items():
        plain = k[5:] if k.startswith("fsdp_") and k != "fsdp_version" else k
        if K.kind_of(plain, "fsdp_config") is None:
            t.err(["fsdp_config", k], "is not an FSDP option Axolotl reads", code="unknown-key",
                  hint=did_you_mean(plain, K.all_keys("fsdp_config")))
            continue
        opts[plain] = (k, v)
    version = t.d.get("fsdp_version")
    vsrc = "fsdp_version"
    for k in ("fsdp_version", "version"):
        if k in opts:
            version, vsrc = opts[k][1], opts[k][0]
    version = version if version is not None else 1
    if version not in (1, 2):
        t.err(["fsdp_config", vsrc] if vsrc != "fsdp_version" or "fsdp_version" not in t.d
              else ["fsdp_version"], f"expected FSDP version 1 or 2, got {version!r}", code="type")
        return
    t.put("fsdp.version", version, *([vsrc] if vsrc in t.d or vsrc in fc else []))
    flags = [str(x) for x in fsdp_list] if isinstance(fsdp_list, list) else []
    for f in flags:
        if f not in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard", "auto_wrap", "offload"):
            t.err(["fsdp"], f"unknown FSDP option {f!r}", code="unknown-key",
                  expected="full_shard | shard_grad_op | hybrid_shard | no_shard | auto_wrap | offload")
    sharding = next((f for f in flags if f in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard")),
                    None)
    reshard = opts.get("reshard_after_forward", (None, None))[1]
    legacy = opts.get("sharding_strategy")
    if legacy is not None:
        lv = str(legacy[1]).lower()
        if version == 2:
            implied = {"full_shard": True, "shard_grad_op": False}.get(lv)
            if reshard is not None and implied is not None and implied != reshard:
                t.err(["fsdp_config", legacy[0]], f"{legacy[1]} contradicts reshard_after_forward: "
                      f"{reshard}", code="contradiction")
            else:
                t.warn(["fsdp_config", legacy[0]], "is an FSDP1 key that Axolotl ignores with "
                       "fsdp_version: 2 (FSDP2 uses reshard_after_forward); loft ignores it too",
                       code="axolotl-ignored")
        else:
            sharding = sharding or lv
    if version == 2 and reshard is not None:
        sharding = "full_shard" if reshard else "shard_grad_op"
    sharding = sharding or "full_shard"
    if sharding not in ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard"):
        t.err(["fsdp_config"], f"unknown sharding strategy {sharding!r}", code="type")
        return
    t.put("fsdp.sharding", sharding, *(["fsdp"] if flags else []))
    off = opts.get("offload_params", (None, None))[1]
    if "offload" in flags or off is True:
        t.put("fsdp.offload_params", True, *([opts["offload_params"][0]] if off is True else ["fsdp"]))
    sd = opts.get("state_dict_type") or opts.get("final_state_dict_type")
    if sd is None and t.d.get("fsdp_final_state_dict_type"):
        sd = ("fsdp_final_state_dict_type", t.d["fsdp_final_state_dict_type"])
    if sd is not None and sd[1] is not None:
        m = {"FULL_STATE_DICT": "full", "SHARDED_STATE_DICT": "sharded"}.get(str(sd[1]))
        if m is None:
            t.err(["fsdp_config", sd[0]], f"state dict type {sd[1]!r} is not supported",
                  expected="FULL_STATE_DICT | SHARDED_STATE_DICT")
        elif m != "full":
            t.put("fsdp.state_dict_type", m, sd[0])
    awp = opts.get("auto_wrap_policy")
    if awp is not None and awp[1] not in (None, "TRANSFORMER_BASED_WRAP"):
        t.err(["fsdp_config", awp[0]], f"auto wrap policy {awp[1]!r} is not supported",
              expected="TRANSFORMER_BASED_WRAP")
    cls = opts.get("transformer_layer_cls_to_wrap")
    if cls is not None and cls[1]:
        names = cls[1] if isinstance(cls[1], list) else [c.strip() for c in str(cls[1]).split(",")]
        t.put("fsdp.transformer_layer_cls", [str(n) for n in names if n], cls[0])
    ac = opts.get("activation_checkpointing")
    if ac is not None and ac[1] is True:
        t.put("training.gradient_checkpointing", True, ac[0])
    noeff = [orig for plain, (orig, v) in opts.items()
             if K.kind_of(plain, "fsdp_config") == "no-effect" and v is not None]
    if noeff:
        t.warn(["fsdp_config", noeff[0]], f"{', '.join(noeff)}: loading and communication settings that "
               "loft's accelerate FSDP config chooses itself (no effect on the trained model)")
    for plain, (orig, v) in opts.items():
        if K.kind_of(plain, "fsdp_config") == "unsupported" and v is not None:
            t.err(["fsdp_config", orig], "is not supported (size-based wrapping)")
