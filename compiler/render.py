"""Render stage: a locked plan → every file of the run bundle, as `{relative path: bytes}`.

Templates live in `targets/<target>/*.j2` and `targets/common/*.j2` and run in Jinja's immutable sandbox
with StrictUndefined, so a template can read the view handed to it and nothing else. Shell templates
get a second guard: every `{{ … }}` must go through `shquote` (or `shname` for an env var name), else
rendering fails, so a value from a config can never reach a script unquoted.

Everything here is a pure function of the plan: sorted keys, no timestamps, no absolute paths. The
runtime copy is read from the installed `loft.runtime` package, so a bundle runs the code of the
compiler that built it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError, did_you_mean
from .locks import bundle_locks, needs_flash_attn, needs_vllm_env, plan_imports
from .resources import data_dir
from .sweep_report import sweep_view

STAGES = ("prepare", "train", "eval", "merge", "export")
RUNTIME_PREFIX = "loft/runtime/"
# Slurm sends USR1 this long before the time limit: train saves a checkpoint and the job requeues itself.
SLURM_SIGNAL_S = 600
SCHEMAS_PREFIX = "loft/schemas/"  # the schemas the runtime validates plan.lock against (runtime/contract.py)
RUNTIME_SCHEMAS = ("config.schema.json", "plan.schema.json")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SLURM_SAFE = re.compile(r"[A-Za-z0-9_.:,+@%=/-]+")  # always fullmatch: `$` would pass a trailing newline
_TOKEN = re.compile(r"[a-z][a-z_]*")


class Shell(str):
    """Text already safe to paste into shell source (a quoted value or a checked name)."""


def render_bundle(plan: dict[str, Any], attachments: dict[str, bytes]) -> dict[str, bytes]:
    """Every bundle file except MANIFEST.sha256, keyed by bundle-relative POSIX path, in sorted order."""
    target = _target(plan)
    files: dict[str, bytes] = {"plan.lock": canonical_json(plan).encode()}
    view = launch_view(plan)
    shell_env = _environment(shell=True)
    text_env = _environment(shell=False)
    for name in _template_names(target):
        env = shell_env if _is_shell(name) else text_env
        files[name] = _render(env, f"{target}/{name}.j2", view).encode()
    files["plan.md"] = _render(text_env, "common/plan.md.j2", plan_md_view(plan)).encode()
    if view["accelerate_config"]:
        files[view["accelerate_config"]] = _render(text_env, "common/accelerate.yaml.j2", view).encode()
    if view["deepspeed_config"]:
        files[view["deepspeed_config"]] = canonical_json(ds_config(plan)).encode()
    files["sweep.jsonl"] = sweep_jsonl(plan).encode()
    for rel, text in bundle_locks(plan["config"], view["gpus_per_node"]).items():
        files[rel] = text.encode()
    for rel, data in attachments.items():
        files[_safe_rel(rel)] = data
    files.update(runtime_files())
    return dict(sorted(files.items()))


def trial_records(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """sweep.jsonl's lines: each resolved trial (config, derived, estimate); the run itself without a sweep
    (and for bayes, whose trials are chosen while it runs: they go to out/sweep/results.jsonl)."""
    sweep = plan.get("sweep")
    if sweep and sweep["trials"]:
        return list(sweep["trials"])
    return [{"trial": 0, "overrides": {}, "config": plan["config"], "derived": plan["derived"],
             "estimate": plan.get("estimate"), "fits": None}]


def sweep_jsonl(plan: dict[str, Any]) -> str:
    return "".join(json.dumps(t, sort_keys=True, ensure_ascii=False) + "\n" for t in trial_records(plan))


def trial_count(plan: dict[str, Any]) -> int:
    """Trials `LOFT_TRIAL=N` may select: the resolved ones (a bayes sweep's are chosen while it runs)."""
    sweep = plan.get("sweep")
    return len(sweep["trials"]) or 1 if sweep else 1


def canonical_json(obj: Any) -> str:
    """The one JSON spelling loft writes (plan.lock, ds_config.json): sorted keys, 2-space indent."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- runtime copy


def runtime_files() -> dict[str, bytes]:
    """Every file of the installed runtime package as `loft/runtime/<path>` (no caches, no dotfiles), and
    the plan and config schemas it checks plan.lock against as `loft/schemas/<name>`."""
    out: dict[str, bytes] = {}
    for rel, node in _walk(data_dir("runtime"), ""):
        out[RUNTIME_PREFIX + rel] = node.read_bytes()
    for name in RUNTIME_SCHEMAS:
        out[SCHEMAS_PREFIX + name] = (data_dir("schemas") / name).read_bytes()
    return dict(sorted(out.items()))


def _walk(node: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        name = child.name
        if name.startswith(".") or name == "__pycache__" or name.endswith((".pyc", ".pyo")):
            continue
        if child.is_dir():
            yield from _walk(child, f"{prefix}{name}/")
        elif child.is_file():
            yield f"{prefix}{name}", child


# --------------------------------------------------------------------------- templates


class _PackageLoader(jinja2.BaseLoader):
    """Loads `target/file.j2` from the installed loft.targets package (works from a wheel or a checkout)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        node = data_dir("targets")
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise jinja2.TemplateNotFound(template)
            node = node.joinpath(part)
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), template, lambda: True


def _shquote(value: Any) -> Shell:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return Shell(shlex.quote(str(value)))


def _shname(value: Any) -> Shell:
    """An environment variable name, checked, so it can be used as `${NAME:-}`."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError.one(f"{value!r} is not an environment variable name", key="tracking.wandb.api_key_env",
                              expected="letters, digits and _ (e.g. WANDB_API_KEY)", code="bad-env-name")
    return Shell(value)


def _slurm(value: Any) -> Shell:
    """A value for an `#SBATCH` line (sbatch does not unquote, so only plain tokens are allowed)."""
    text = str(value)
    if not _SLURM_SAFE.fullmatch(text):
        raise ConfigError.one(f"{text!r} cannot be written into an #SBATCH line", key="target.slurm",
                              expected="letters, digits and _.:,+@%=/-", code="bad-slurm-value")
    return Shell(text)


def _shint(value: Any) -> Shell:
    """An integer for a comment line: comments hold no config text, since a newline in it would end the
    comment and the rest of the line would run."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise jinja2.TemplateError(f"only integers may appear in a comment line, not {value!r}")
    return Shell(str(value))


def _shtoken(value: Any) -> Shell:
    """One of loft's own words (a stage name) for a comment line; anything else is a template bug."""
    text = str(value)
    if not _TOKEN.fullmatch(text):
        raise jinja2.TemplateError(f"{text!r} is not a plain word and cannot appear in a comment line")
    return Shell(text)


def _shell_finalize(value: Any) -> Any:
    if isinstance(value, Shell):
        return value
    raise jinja2.TemplateError(f"unquoted value {value!r} in a shell template: pipe it through |shquote")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _yaml(value: Any) -> str:
    """A YAML flow scalar: JSON with every non-ASCII character escaped, since YAML folds NEL (U+0085) and
    the Unicode line/paragraph separators inside a quoted string (and JSON leaves them as they are)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def _mdcell(value: Any) -> str:
    """A value safe inside a Markdown table cell."""
    text = "—" if value is None or value == "" else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_ENV_OPTIONS_ID = "trim-lstrip-keepnl-1"  # change when _environment's options change


def _bytecode_cache(kind: str) -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (like .pyc files): compiling them is most of a cold render.
    Keyed by template source checksum, so an edited template is recompiled; output is unaffected."""
    if os.environ.get("LOFT_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # generated code depends on the environment's options (finalize, whitespace control): one cache each
    path = os.path.join(base, "loft", f"jinja-{jinja2.__version__}-{kind}-{_ENV_OPTIONS_ID}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(path) if os.access(path, os.W_OK) else None


def _environment(shell: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=_PackageLoader(),
        bytecode_cache=_bytecode_cache("shell" if shell else "text"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shell_finalize if shell else None,
    )
    env.filters.update(shquote=_shquote, shname=_shname, shint=_shint, shtoken=_shtoken, slurm=_slurm, json=_json, yaml=_yaml,
                       mdcell=_mdcell)
    return env


def _render(env: ImmutableSandboxedEnvironment, name: str, view: dict[str, Any]) -> str:
    return env.get_template(name).render(view)


def _is_shell(name: str) -> bool:
    return name.endswith((".sh", ".sbatch"))


def _targets() -> list[str]:
    root = data_dir("targets")
    return sorted(c.name for c in root.iterdir() if c.is_dir() and c.joinpath("launch.sh.j2").is_file())


def _target(plan: dict[str, Any]) -> str:
    target = str(plan.get("launch", {}).get("target") or plan["config"]["target"]["kind"])
    known = _targets()
    if target not in known:
        raise ConfigError.one(f"no launch templates for target {target!r}", key="target.kind",
                              expected=" | ".join(known), hint=did_you_mean(target, known), code="unknown-target")
    return target


def _template_names(target: str) -> list[str]:
    node = data_dir("targets").joinpath(target)
    return sorted(c.name[: -len(".j2")] for c in node.iterdir() if c.is_file() and c.name.endswith(".j2"))


def _safe_rel(rel: str) -> str:
    parts = rel.replace("\\", "/").split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == "MANIFEST.sha256":
        raise ConfigError.one(f"bundle file name {rel!r} escapes the bundle", code="bad-bundle-path")
    return "/".join(parts)


# --------------------------------------------------------------------------- views


def enabled_stages(plan: dict[str, Any]) -> list[str]:
    """The stages `launch.sh all` runs, in order; the plan turns eval/merge/export on and off."""
    cfg = plan["config"]
    stages = ["prepare", "train"]
    if cfg.get("eval", {}).get("enabled", True):
        stages.append("eval")
    export = cfg.get("export", {})
    if cfg.get("adapter", {}).get("type", "none") != "none" and export.get("merge", False):
        stages.append("merge")
    if export.get("formats") or export.get("push_to_hub"):
        stages.append("export")
    return stages


def launch_view(plan: dict[str, Any]) -> dict[str, Any]:
    """What the launch templates (launch.sh, slurm.sbatch, sky.yaml, accelerate.yaml) may read."""
    cfg = plan["config"]
    launch = plan.get("launch", {})
    target_cfg = cfg.get("target", {})
    nodes = int(launch.get("nodes") or target_cfg.get("nodes") or 1)
    gpus_given = launch.get("gpus_per_node", target_cfg.get("num_gpus"))
    gpus = 1 if gpus_given is None else int(gpus_given)  # 0: CPU only, one process
    ds_stage = int(cfg.get("deepspeed", {}).get("stage") or 0)
    fsdp = cfg.get("fsdp", {})
    launcher = str(launch.get("launcher") or ("python" if nodes * gpus == 1 else "torchrun"))
    deepspeed_config = launch.get("deepspeed_config") or ("ds_config.json" if ds_stage > 0 else None)
    if ds_stage == 0:
        deepspeed_config = None
    accelerate_config = launch.get("accelerate_config")
    if not accelerate_config and (fsdp.get("enabled") or launcher == "accelerate"):
        accelerate_config = "accelerate.yaml"
    wandb = (cfg.get("tracking") or {}).get("wandb") or None
    wandb_view = None
    if wandb:
        wandb_view = {"mode": wandb.get("mode", "online"), "key_env": wandb.get("api_key_env") or "WANDB_API_KEY",
                      "project": wandb.get("project")}
    modules = plan_imports(cfg)
    precision = cfg.get("training", {}).get("precision", "bf16")
    return {
        "name": plan.get("name", "run"),
        "loft_version": plan.get("loft_version", ""),
        "source_file": plan.get("source", {}).get("file", ""),
        "target": _target(plan),
        "launcher": launcher,
        "nodes": nodes,
        "gpus_per_node": gpus,
        "world_size": nodes * max(gpus, 1),
        "stages": enabled_stages(plan),
        "all_stages": list(STAGES),
        "output_dir": cfg.get("output_dir", "out"),
        "trials": trial_count(plan),
        "sweep_per_gpu": bool(plan.get("sweep") and plan["sweep"]["parallel"] == "per_gpu" and gpus > 1),
        "wandb": wandb_view,
        "modules": modules,
        "deepspeed_config": deepspeed_config,
        "accelerate_config": accelerate_config,
        "fsdp": {"enabled": bool(fsdp.get("enabled")), "version": int(fsdp.get("version", 2)),
                 "sharding": fsdp.get("sharding", "full_shard"), "offload_params": bool(fsdp.get("offload_params")),
                 "state_dict_type": "SHARDED_STATE_DICT" if fsdp.get("state_dict_type") == "sharded"
                 else "FULL_STATE_DICT",
                 "layer_cls": ",".join(fsdp.get("transformer_layer_cls") or [])},
        "mixed_precision": {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no"),
        "gradient_checkpointing": bool(cfg.get("training", {}).get("gradient_checkpointing")),
        "gpu": target_cfg.get("gpu", ""),
        "slurm": target_cfg.get("slurm") or {},
        "skypilot": target_cfg.get("skypilot") or {},
        "provider": target_cfg.get("provider"),
        "flash_attn": needs_flash_attn(cfg),
        "vllm_env": gpus > 0 and needs_vllm_env(cfg),
        "eval_backend": (cfg.get("eval") or {}).get("backend", "auto"),
        "sky_bucket": _bucket_name(plan),
        "slurm_signal_s": SLURM_SIGNAL_S,
    }


def _bucket_name(plan: dict[str, Any]) -> str:
    """A SkyPilot storage name for out/: 3-63 lowercase letters, digits and hyphens, the same for every
    build of the same source (so a relaunch finds its checkpoints), different for different sources."""
    stem = re.sub(r"[^a-z0-9]+", "-", str(plan.get("name", "run")).lower()).strip("-")[:40] or "run"
    sha = str((plan.get("source") or {}).get("sha256") or "0" * 8)[:8]
    return f"loft-{stem}-{sha}"


def ds_config(plan: dict[str, Any]) -> dict[str, Any]:
    """A DeepSpeed config whose batch/clip/optimizer numbers the HF Trainer fills ("auto") at launch."""
    cfg = plan["config"]
    ds = cfg["deepspeed"]
    stage = int(ds["stage"])
    precision = cfg.get("training", {}).get("precision", "bf16")
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "offload_optimizer": {"device": "cpu", "pin_memory": True} if ds.get("offload_optimizer") else {"device": "none"},
    }
    if stage == 3:
        zero.update({
            "offload_param": {"device": "cpu", "pin_memory": True} if ds.get("offload_params") else {"device": "none"},
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1_000_000_000,
            "stage3_max_reuse_distance": 1_000_000_000,
            "stage3_gather_16bit_weights_on_model_save": True,
            "sub_group_size": 1_000_000_000,
        })
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16,
                 "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1},
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }
    if ds.get("offload_optimizer"):
        # ZeRO-Offload needs DeepSpeed's CPU Adam; the Trainer fills its numbers from the plan.
        out["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                        "weight_decay": "auto"}}
    return out


# --------------------------------------------------------------------------- plan.md


def plan_md_view(plan: dict[str, Any]) -> dict[str, Any]:
    """Pre-formatted rows for plan.md, so the template only lays them out."""
    cfg = plan["config"]
    model = plan.get("model") or {}
    derived = plan.get("derived") or {}
    template = plan.get("template") or {}
    launch = launch_view(plan)
    training = cfg.get("training", {})
    adapter = cfg.get("adapter", {})
    seq = cfg.get("sequence", {})
    source = plan.get("source", {})
    base = model.get("id") or model.get("path") or cfg.get("model", {}).get("base")
    given = ((source.get("config") or {}).get("model") or {}) if isinstance(source.get("config"), dict) else {}
    given_base = given.get("base") if isinstance(given, dict) else None
    base_text = _code(base)
    if model.get("path") and given_base and given_base != model.get("path"):
        base_text += f" (bundled copy of {_code(given_base)})"
    model_rows = [
        ("base", base_text),
        ("revision", _code(model.get("revision")) if model.get("revision") else "not pinned"),
        ("architecture", f"{model.get('architecture') or '—'} (`{model.get('model_type') or '?'}`)"),
        ("parameters", _params(model.get("params"))),
        ("shape", f"{model.get('num_hidden_layers', '?')} layers × hidden {model.get('hidden_size', '?')}, "
                  f"{model.get('num_attention_heads', '?')} heads ({model.get('num_key_value_heads', '?')} KV), "
                  f"vocab {_int(model.get('vocab_size'))}"
                  + (f", {model.get('num_experts')} experts ({model.get('num_experts_per_tok')} active)"
                     if model.get("num_experts") else "")),
        ("dtype / attention", f"{cfg.get('model', {}).get('dtype', '—')} / "
                              f"{cfg.get('model', {}).get('attn_implementation', '—')}"),
        ("facts from", model.get("source", "—")),
    ]
    cfg_sets = {d.get("name"): d for d in cfg.get("data", {}).get("datasets", [])}
    datasets = []
    for d in (plan.get("data") or {}).get("datasets", []):
        c = cfg_sets.get(d.get("name"), {})
        datasets.append({
            "name": d.get("name"), "path": _code(d.get("path")), "format": c.get("format", "—"),
            "rows": _int(d.get("rows")), "sha256": _code(_short(d.get("sha256"))),
            "weight": c.get("weight", "—"), "epochs": c.get("epochs", "—"),
            "bundled": "yes" if d.get("bundled") else ("hub" if d.get("source") == "hub" else "no"),
        })
    data_cfg = cfg.get("data", {})
    micro, accum = derived.get("micro_batch_size"), derived.get("gradient_accumulation_steps")
    world, glob = derived.get("world_size", launch["world_size"]), derived.get("global_batch_size")
    devices = f"{world} GPU(s)" if launch["gpus_per_node"] else f"{world} CPU process(es)"
    batch = (f"{micro} micro × {accum} accumulation × {devices} = **{glob}** sequences per step"
             f", {_int(derived.get('tokens_per_step'))} tokens per step")
    if training.get("max_steps"):
        length = f"{training['max_steps']} steps (max_steps)"
    else:
        length = f"{training.get('epochs', '—')} epochs"
    steps = derived.get("total_steps")
    train_rows = [
        ("learning rate", f"{training.get('learning_rate')} ({training.get('lr_scheduler')}, {_warmup(derived, training)})"),
        ("optimizer", f"{training.get('optimizer')} (weight decay {training.get('weight_decay')}, "
                      f"max grad norm {training.get('max_grad_norm')})"),
        ("precision", f"{training.get('precision')}, gradient checkpointing "
                      f"{'on' if training.get('gradient_checkpointing') else 'off'}"),
        ("length", length),
        ("effective batch", batch),
        ("total", f"{_int(steps)} steps, {_int(derived.get('total_tokens'))} tokens"
                  + ("" if steps is not None else " (counted by `launch.sh prepare`)")),
        ("seed", training.get("seed")),
        ("eval / save", f"{_eval_cadence(cfg)} / "
                        f"{_cadence(training.get('save_steps'), training.get('saves_per_epoch'))}, "
                        f"keep {training.get('save_total_limit')} checkpoints"),
    ]
    kernels = training.get("kernels") or {}
    on = [k for k in sorted(kernels) if kernels[k]]
    if on:
        train_rows.append(("kernels", ", ".join(on)))
    if adapter.get("type", "none") == "none":
        adapter_text = "none (full fine-tune)"
    else:
        mods = adapter.get("target_modules")
        adapter_text = (f"{adapter.get('type')}: r={adapter.get('r')}, alpha={adapter.get('alpha')}, "
                        f"dropout={adapter.get('dropout')}, modules="
                        f"{', '.join(mods) if isinstance(mods, list) else mods}"
                        + (", rsLoRA" if adapter.get("rslora") else "") + (", DoRA" if adapter.get("dora") else ""))
    ds_stage = int(cfg.get("deepspeed", {}).get("stage") or 0)
    parallel = "none"
    if ds_stage:
        parallel = f"DeepSpeed ZeRO-{ds_stage} (`ds_config.json`)"
    elif launch["fsdp"]["enabled"]:
        parallel = f"FSDP{launch['fsdp']['version']} {launch['fsdp']['sharding']} (`accelerate.yaml`)"
    launch_rows = [
        ("target", f"{launch['target']}: " + (f"{launch['nodes']} node(s) × {launch['gpus_per_node']} {launch['gpu']}"
                                             if launch["gpus_per_node"] else "CPU")),
        ("launcher", launch["launcher"]),
        ("sharding", parallel),
        ("stages", " → ".join(launch["stages"])),
    ]
    return {
        "name": plan.get("name", ""),
        "loft_version": plan.get("loft_version", ""),
        "source_file": source.get("file", ""),
        "dialect": source.get("dialect", ""),
        "source_sha": _short(source.get("sha256")),
        "model_rows": model_rows,
        "datasets": datasets,
        "data_rows": [("eval split", data_cfg.get("eval_split")), ("temperature", data_cfg.get("temperature")),
                      ("bad samples", data_cfg.get("bad_samples"))],
        "template_rows": [
            ("chat template", f"{template.get('name', '—')} ({template.get('source', '—')}), "
                              f"sha256 {_code(_short(template.get('sha256')))}"),
            ("masking", f"{template.get('mask', '—')}; end of turn {_code(template.get('end_of_turn'))}; "
                        f"train on {', '.join((cfg_sets and next(iter(cfg_sets.values())).get('roles_to_train')) or ['assistant'])}"),
            ("max length", f"{seq.get('max_length')}" + (f" (auto: {seq.get('auto_length')})"
                                                          if seq.get("max_length") == "auto" else "")),
            ("strategy", f"{seq.get('strategy')}, packing {'on' if seq.get('packing') else 'off'}"),
        ],
        "adapter": adapter_text,
        "train_rows": train_rows,
        "estimate_md": _estimate_md(plan.get("estimate")),
        "launch_rows": launch_rows,
        "sweep": sweep_view(plan),
        "warnings": [{"code": w.get("code", ""), "key": w.get("key", ""), "message": w.get("message", "")}
                     for w in plan.get("warnings") or []],
        "wandb": launch["wandb"],
    }


def _estimate_md(estimate: Any) -> str:
    """The estimate section of plan.md: the same report `loftc estimate` prints, as markdown."""
    if not estimate:
        return "_no estimate in this plan_\n"
    from .estimate.report import to_markdown

    text = to_markdown(estimate)
    return text if text.endswith("\n") else text + "\n"


def _flatten(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for k in sorted(node):
            yield from _flatten(node[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, node


def _warmup(derived: dict[str, Any], training: dict[str, Any]) -> str:
    if derived.get("warmup_steps") is not None:
        return f"{derived['warmup_steps']} warmup steps"
    if training.get("warmup_steps") is not None:
        return f"{training['warmup_steps']} warmup steps"
    ratio = training.get("warmup_ratio")
    return f"warmup {ratio:.0%} of the steps" if isinstance(ratio, int | float) else "no warmup"


def _cadence(steps: Any, per_epoch: Any) -> str:
    """How often, as the train stage does it: every N steps, N times per epoch, or once per epoch."""
    if steps:
        return f"every {steps} steps"
    if per_epoch:
        return f"{per_epoch} times per epoch"
    return "every epoch"


def _eval_cadence(cfg: dict[str, Any]) -> str:
    data = cfg.get("data", {})
    has_eval = bool(data.get("eval_split")) or any(d.get("eval_split") for d in data.get("datasets", []))
    if not has_eval:
        return "no eval (no eval split)"
    training = cfg.get("training", {})
    return _cadence(training.get("eval_steps"), training.get("evals_per_epoch"))


def _code(value: Any) -> str:
    return "—" if value in (None, "") else f"`{value}`"


def _short(sha: Any) -> str | None:
    return str(sha)[:12] if sha else None


def _int(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    return f"{int(value):,}"


def _params(n: Any) -> str:
    if not isinstance(n, int | float) or isinstance(n, bool):
        return "—"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f} {unit} ({int(n):,})"
    return f"{int(n):,}"
