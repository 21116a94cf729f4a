"""The bundle's package locks: which packages a plan needs, cut from the resolver's locks in targets/locks/.

`make lock` (compiler/lockgen.py) resolves one superset lock per CUDA build of torch with a real resolver
(uv): every transitive package pinned with `--hash`, for linux x86_64 and aarch64 and every Python the lock
claims. A plan needs only part of it (wandb only when tracking, deepspeed only with ZeRO, …), so the
compiler keeps the packages the plan's top-level requirements reach through the resolver's `# via`
annotations: a closed subset of one consistent resolution, which pip's `--require-hashes` mode accepts.
Reading and cutting a few hundred kB of text keeps `loftc build` offline and fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .resources import data_dir

LOCK_DIR = "locks"
PYPI = "https://pypi.org/simple"
EVAL_LOCK = "eval-vllm"
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 name: `Jinja2` and `jinja_2` compare equal to `jinja2`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Entry:
    """One pinned requirement of a lock: its text block (pin, hashes, `# via` lines) and who needs it."""

    name: str
    text: str
    via: tuple[str, ...]  # package names, and "-r <file>" for a top-level requirement


@dataclass(frozen=True)
class Lock:
    header: tuple[str, ...]  # comment lines and pip options (--index-url, …) before the first pin
    entries: tuple[Entry, ...]


def requirements() -> dict[str, Any]:
    """targets/requirements.json: the pins, the CUDA builds and the Python range the locks are made for."""
    return _requirements_cached()


@cache
def _requirements_cached() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((data_dir("targets") / "requirements.json").read_text(encoding="utf-8"))
    return data


def lock_path(name: str) -> Path:
    return data_dir("targets") / LOCK_DIR / f"{name}.txt"


def parse(text: str) -> Lock:
    """Split a `uv pip compile --generate-hashes` output (annotation style split) into entries."""
    header: list[str] = []
    entries: list[Entry] = []
    block: list[str] = []

    def close() -> None:
        if block:
            m = _NAME.match(block[0])
            assert m, block[0]
            entries.append(Entry(normalize(m.group(1)), "\n".join(block) + "\n", _via(block)))
            block.clear()

    for line in text.splitlines():
        starts_pin = bool(line) and not line[0].isspace() and not line.startswith(("#", "-"))
        if starts_pin:
            close()
            block.append(line)
        elif block:
            block.append(line)
        else:
            header.append(line)
    close()
    return Lock(tuple(header), tuple(entries))


def _via(block: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    in_via = False
    for line in block[1:]:
        s = line.strip()
        if s.startswith("# via"):
            rest = s[len("# via"):].strip()
            in_via = True
            if rest:
                out.append(rest)
        elif (in_via and s.startswith("#   ")) or (in_via and s.startswith("#")):
            out.append(s[1:].strip())
    return tuple(normalize(v) if not v.startswith("-r") else v for v in out if v)


def closure(lock: Lock, roots: set[str]) -> list[Entry]:
    """The entries the `roots` (top-level names) need: the roots and everything they reach, in lock order."""
    wanted = {normalize(r) for r in roots}
    known = {e.name for e in lock.entries}
    missing = sorted(wanted - known)
    if missing:
        raise ValueError(f"the lock has no pin for {', '.join(missing)}: run `make lock`")
    changed = True
    while changed:
        changed = False
        for e in lock.entries:
            if e.name not in wanted and any(v in wanted for v in e.via):
                wanted.add(e.name)
                changed = True
    return [e for e in lock.entries if e.name in wanted]


def cut(lock: Lock, roots: set[str], title: list[str]) -> str:
    """A lock file holding only what `roots` need: `title` comments, the resolver's pip options, the pins."""
    # PyPI is pip's default: naming it would override a mirror the box is configured for (hashes still hold);
    # a second index (the PyTorch wheel index for a CUDA build) stays, since the pins need it
    options = [h for h in lock.header if h.startswith("--") and h != f"--index-url {PYPI}"]
    kept = closure(lock, roots)
    names = {e.name for e in kept}
    body = "".join(_only_via(e, names) for e in kept)
    return "\n".join([*(f"# {t}" if t else "#" for t in title), *options]) + "\n" + body


def _only_via(entry: Entry, names: set[str]) -> str:
    """The entry's text with `# via` names that the cut left out dropped (they would mislead a reader)."""
    lines = entry.text.splitlines()
    vias = [v for v in entry.via if v.startswith("-r") or v in names]
    head = [ln for ln in lines if not ln.lstrip().startswith("#")]
    if len(vias) == 1:
        tail = [f"    # via {vias[0]}"]
    else:
        tail = ["    # via", *(f"    #   {v}" for v in vias)]
    return "\n".join(head + tail) + "\n"


@cache
def load(name: str) -> Lock | None:
    """A committed lock by name (`train-cu130`, `eval-vllm`), or None when `make lock` has not produced it."""
    path = lock_path(name)
    return parse(path.read_text(encoding="utf-8")) if path.is_file() else None


def plan_roots(cfg: dict[str, Any]) -> set[str]:
    """The top-level packages a resolved config needs on the GPU box (normalized names)."""
    req = requirements()
    roots = set(req["packages"]) | {"jsonschema"}  # the runtime checks plan.lock against plan.schema.json
    training = cfg.get("training", {})
    if int(cfg.get("deepspeed", {}).get("stage") or 0) > 0:
        roots.add("deepspeed")
    if cfg.get("adapter", {}).get("type") == "qlora" or "8bit" in str(training.get("optimizer")):
        roots.add("bitsandbytes")
    if (cfg.get("tracking") or {}).get("wandb"):
        roots.add("wandb")
    kernels = training.get("kernels") or {}
    if kernels.get("liger"):
        roots.add("liger-kernel")
    if kernels.get("cut_cross_entropy"):
        roots.add("cut-cross-entropy")
    if cfg.get("sweep"):
        roots.add("optuna")  # the sweep stage's study, sampler and pruners
    if "gguf" in ((cfg.get("export") or {}).get("formats") or []):
        roots.add("gguf")  # runtime/gguf_export.py writes GGUF with the gguf package
    if str((cfg.get("target") or {}).get("gpu", "cpu")).lower() != "cpu":
        roots.add("nvidia-ml-py")  # NVML utilisation and memory per GPU in metrics.jsonl
    if needs_flash_attn(cfg):
        roots.update(req["build"]["flash-attn"]["needs"])  # its build and import dependencies
    return {normalize(r) for r in roots}


# import name of each top-level package whose import launch.sh's preflight and `check` try
_IMPORTS = {"accelerate": "accelerate", "bitsandbytes": "bitsandbytes", "cut-cross-entropy": "cut_cross_entropy",
            "datasets": "datasets", "deepspeed": "deepspeed", "gguf": "gguf", "huggingface-hub": "huggingface_hub",
            "jinja2": "jinja2", "jsonschema": "jsonschema", "nvidia-ml-py": "pynvml",
            "liger-kernel": "liger_kernel", "matplotlib": "matplotlib", "numpy": "numpy", "optuna": "optuna", "peft": "peft",
            "pyarrow": "pyarrow", "safetensors": "safetensors", "tokenizers": "tokenizers", "torch": "torch",
            "transformers": "transformers", "wandb": "wandb"}


def plan_imports(cfg: dict[str, Any]) -> list[str]:
    """Modules the runtime will import for this plan, torch first (build tools such as ninja left out)."""
    names = sorted({_IMPORTS[r] for r in plan_roots(cfg) if r in _IMPORTS} - {"torch"})
    return ["torch", *names, *(["flash_attn"] if needs_flash_attn(cfg) else [])]


def needs_flash_attn(cfg: dict[str, Any]) -> bool:
    return str(cfg.get("model", {}).get("attn_implementation")) == "flash_attention_2"


def needs_vllm_env(cfg: dict[str, Any]) -> bool:
    """eval may generate with vLLM (backend auto or vllm): the bundle carries the separate eval lock."""
    ev = cfg.get("eval") or {}
    return bool(ev.get("enabled", True)) and ev.get("backend", "auto") in ("auto", "vllm")


def builds() -> dict[str, dict[str, Any]]:
    """CUDA builds of the pinned torch (`cu126` …), newest CUDA last."""
    b: dict[str, dict[str, Any]] = requirements()["cuda_builds"]
    return dict(sorted(b.items(), key=lambda kv: _cuda_key(kv[1]["cuda"])))


def _cuda_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def build_for_cuda(cuda: str) -> str | None:
    """The build for a `target.cuda` value (`12.8` → `cu128`); None when torch publishes none for it."""
    for name, b in builds().items():
        if b["cuda"] == cuda:
            return name
    return None


# --------------------------------------------------------------------------- the bundle's lock files

INDEX_FILE = "requirements/locks.json"


def bundle_locks(cfg: dict[str, Any], gpus_per_node: int) -> dict[str, str]:
    """Every lock file of a bundle, by bundle path, plus `requirements/locks.json` telling launch.sh which
    file serves which CUDA build. `requirements.lock` is the default build (`target.cuda`, else the newest
    CUDA build with a committed lock); the other builds go to `requirements/train-<build>.lock`."""
    req = requirements()
    roots = plan_roots(cfg)
    want = str((cfg.get("target") or {}).get("cuda") or "auto")
    all_builds = builds()
    made = {name: load(f"train-{name}") for name in all_builds}
    chosen = build_for_cuda(want) if want != "auto" else None
    if want != "auto" and (chosen is None or made[chosen] is None):
        have = [b["cuda"] for n, b in all_builds.items() if made[n] is not None]
        raise ConfigError.one(
            f"no package lock for CUDA {want} in this loft: torch {req['packages']['torch']} locks exist for "
            f"CUDA {', '.join(have) or 'none'}", key="target.cuda", expected=" | ".join(["auto", *have]),
            hint="a maintainer generates the others with `make lock` where the PyTorch wheel index is reachable",
            code="no-lock")
    candidates = [chosen] if chosen else [n for n in all_builds if made[n] is not None]
    default = candidates[-1] if candidates else None
    files: dict[str, str] = {}
    index: dict[str, Any] = {"target_cuda": want, "default": default, "python": req["python"], "builds": {},
                             "imports": plan_imports(cfg)}
    for name, b in all_builds.items():
        lock = made[name]
        entry: dict[str, Any] = {"cuda": b["cuda"], "index": b.get("index"), "file": None}
        if chosen and name != chosen:
            continue
        if lock is None:
            entry["missing"] = (f"no committed lock for {name}: a maintainer runs `make lock` with "
                                f"{b.get('index') or 'PyPI'} reachable")
        else:
            path = "requirements.lock" if name == default else f"requirements/train-{name}.lock"
            files[path] = cut(lock, roots, _title(name, b, req, roots))
            entry["file"] = path
        index["builds"][name] = entry
    if needs_flash_attn(cfg) and (fa := load("build-flash-attn")) is not None:
        files["requirements/flash-attn.lock"] = cut(fa, {"flash-attn"}, [
            "flash-attn, compiled against the installed torch before prepare (launch.sh install / prepare):",
            f"  {req['build']['flash-attn']['why']}."])
        index["flash_attn"] = "requirements/flash-attn.lock"
    if gpus_per_node > 0 and needs_vllm_env(cfg) and (ev := load(EVAL_LOCK)) is not None:
        files["requirements/eval-vllm.lock"] = cut(ev, set(req["eval"]), [
            "vLLM for `launch.sh eval`, installed into its own virtual environment (vLLM pins its own torch).",
            "launch.sh eval creates it once (keyed by this file's sha256) and reuses it."])
        index["eval"] = "requirements/eval-vllm.lock"
    files[INDEX_FILE] = json.dumps(index, sort_keys=True, indent=2) + "\n"
    return dict(sorted(files.items()))


def _title(name: str, build: dict[str, Any], req: dict[str, Any], roots: set[str]) -> list[str]:
    return [
        f"Packages for this loft bundle: torch built for CUDA {build['cuda']} ({name}), Python {req['python']},",
        "linux x86_64/aarch64; every package pinned with --hash (cut from targets/locks/"
        f"train-{name}.txt for: {', '.join(sorted(roots))}).",
        f"Needs an NVIDIA driver that supports CUDA {build['cuda']} (`nvidia-smi` shows `CUDA Version` >= "
        f"{build['cuda']}).",
        "Install for this machine's driver: bash launch.sh install   (or: pip install -r <this file>)",
        "",
    ]
