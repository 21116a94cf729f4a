"""`make lock`: resolve targets/requirements.json into fully pinned, hashed locks under targets/locks/.

A maintainer command, never run by `loftc build`. uv does the resolving (it is a real resolver, and
`--universal` writes one lock valid on linux x86_64 and aarch64 for every Python from the lower bound up,
with markers where the two differ). For each CUDA build of torch (`cuda_builds`) it writes
`train-<build>.txt`, the superset of every package any plan may need; `eval-vllm.txt` holds vLLM with
its own torch. Each lock is then checked per claimed Python × platform with `--only-binary :all:` against
the lock as constraints, so the Python range the lock claims is one its wheels really cover; and the
smallest and largest cut a plan can get (compiler/locks.py) are dry-run installed with `--require-hashes`,
so the `# via` closure the compiler cuts by is complete.

Builds whose index is unreachable (the PyTorch wheel index, for cu126/cu128) are reported and skipped;
their old lock, if any, is kept. `python -m loft.compiler.lockgen --help` lists the options.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .locks import EVAL_LOCK, cut, lock_path, normalize, parse, requirements

# Packages with no wheel on PyPI that the train lock still pins (built from source by pip on the box).
SOURCE_ONLY = ("deepspeed",)
LINUX = "; sys_platform == 'linux'"


def inputs(req: dict[str, Any], torch_pin: str) -> str:
    """The resolver's input for a train lock: every package and optional package, linux only."""
    pins = {**req["packages"], **req["optional"], "torch": torch_pin}
    return "".join(f"{name}=={pins[name]} {LINUX}\n" for name in sorted(pins, key=str.lower))


def torch_pin(req: dict[str, Any], build: dict[str, Any], name: str) -> str:
    """`2.13.0` from PyPI (whose wheel is this build), `2.13.0+cu128` from the PyTorch index."""
    base = req["packages"]["torch"]
    return base if build.get("index") is None else f"{base}+{name}"


def compile_lock(uv: str, src: Path, out: Path, req: dict[str, Any], index: str | None,
                 no_deps: bool = False) -> subprocess.CompletedProcess[str]:
    lower = req["pythons"][0]
    cmd = [uv, "pip", "compile", src.name, "--universal", "--python-version", lower, "--generate-hashes",
           "--emit-index-url", "--annotation-style", "split", "--no-header", "-o", out.name]
    if no_deps:  # a source build whose dependencies the train lock already pins (`needs`)
        cmd.append("--no-deps")
    if index:
        cmd += ["--extra-index-url", index, "--index-strategy", "unsafe-best-match"]
    return _uv(cmd, src.parent)


def check_wheels(uv: str, src: Path, lock: Path, req: dict[str, Any], index: str | None,
                 platforms: list[str]) -> list[str]:
    """Problems: each claimed Python × platform must install from wheels (source-only packages aside)."""
    problems = []
    for py in req["pythons"]:
        for plat in platforms:
            cmd = [uv, "pip", "compile", src.name, "-c", lock.name, "--python-version", py, "--python-platform", plat,
                   "--only-binary", ":all:", *[a for p in SOURCE_ONLY for a in ("--no-binary", p)],
                   "--no-header", "-o", os.devnull]
            if index:
                cmd += ["--extra-index-url", index, "--index-strategy", "unsafe-best-match"]
            r = _uv(cmd, src.parent)
            if r.returncode != 0:
                problems.append(f"python {py} on {plat}: {_last(r.stderr)}")
    return problems


def check_cuts(uv: str, lock_file: Path, req: dict[str, Any], platforms: list[str]) -> list[str]:
    """Problems: the smallest and the largest cut a plan can get must install with `--require-hashes`
    (uv's dry run resolves their metadata), so the `# via` closure the compiler relies on is complete."""
    lock = parse(lock_file.read_text(encoding="utf-8"))
    core = {normalize(p) for p in req["packages"]}
    every = core | {normalize(p) for p in req["optional"]}
    problems = []
    for label, roots in (("core", core), ("every optional package", every)):
        cut_file = lock_file.with_suffix(".cut.txt")
        cut_file.write_text(cut(lock, roots, ["check"]), encoding="utf-8")
        for py in (req["pythons"][0], req["pythons"][-1]):
            for plat in platforms:
                r = _uv([uv, "pip", "install", "--dry-run", "--require-hashes", "-r", cut_file.name,
                         "--python-version", py, "--python-platform", plat, "--target", "dry-run-target"],
                        lock_file.parent)
                if r.returncode != 0:
                    problems.append(f"cut for {label}, python {py} on {plat}: {_last(r.stderr)}")
    return problems


def header(name: str, what: str, req: dict[str, Any], index: str | None, platforms: list[str]) -> str:
    src = "PyPI" if index is None else f"PyPI + {index}"
    where = ", ".join(f"{arch} glibc {tag.replace('_', '.')}"
                      for arch, _, tag in (p.partition("-manylinux_") for p in platforms))
    return "".join(f"# {line}\n" for line in (
        f"loft lock {name}: {what}",
        f"Resolved by uv (`make lock`, compiler/lockgen.py) from targets/requirements.json; indexes: {src}.",
        (f"Linux {where} or newer; Python {req['python']} (wheels checked for {', '.join(req['pythons'])})."
         if platforms else "A source distribution: no wheels to check; built with the train lock's packages."),
        "Generated file: edit targets/requirements.json and rerun `make lock` instead.",
    ))


def generate(out_dir: Path, only: list[str] | None, uv: str) -> int:
    req = requirements()
    made, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jobs: list[tuple[str, str, str, str | None, list[str]]] = []
        for name, build in req["cuda_builds"].items():
            jobs.append((f"train-{name}", inputs(req, torch_pin(req, build, name)),
                         f"training packages with torch built for CUDA {build['cuda']} ({name})", build.get("index"),
                         req["platforms"]["train"]))
        vllm = "".join(f"{k}=={v} {LINUX}\n" for k, v in sorted(req["eval"].items()))
        jobs.append((EVAL_LOCK, vllm, "vLLM for eval, in its own environment (it pins its own torch)", None,
                     req["platforms"]["eval"]))
        for pkg, spec in sorted(req["build"].items()):
            jobs.append((f"build-{pkg}", f"{pkg}=={spec['version']} {LINUX}\n",
                         f"{pkg} source, built on the GPU box against its torch ({spec['why']})", None, []))
        for name, text, what, index, platforms in jobs:
            if only and name not in only:
                continue
            src = Path(tmp) / f"{name}.in"
            src.write_text(text, encoding="utf-8")
            raw = Path(tmp) / f"{name}.txt"
            r = compile_lock(uv, src, raw, req, index, no_deps=name.startswith("build-"))
            if r.returncode != 0:
                failed.append(f"{name}: {_last(r.stderr)}")
                continue
            problems = check_wheels(uv, src, raw, req, index, platforms)
            if not problems and name.startswith("train-"):
                problems = check_cuts(uv, raw, req, platforms)
            if problems:
                failed += [f"{name}: {p}" for p in problems]
                continue
            dest = out_dir / f"{name}.txt"
            dest.write_text(header(name, what, req, index, platforms) + raw.read_text(encoding="utf-8"), encoding="utf-8")
            made.append(name)
    for name in made:
        print(f"lock: wrote {out_dir / name}.txt", file=sys.stderr)
    for line in failed:
        print(f"lock: NOT written: {line}", file=sys.stderr)
    return 1 if failed and not made else 0


def _uv(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """uv in the scratch folder, so the lock's `# via -r <file>` names no machine path."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}  # resolve for a Python version; never fetch one
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)


def _last(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "failed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loft.compiler.lockgen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="NAME", help="only this lock (train-cu128, eval-vllm, ...)")
    ap.add_argument("--out", type=Path, default=lock_path("x").parent, help="where the locks go (targets/locks)")
    ap.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv executable")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    uv = shutil.which(args.uv) or args.uv
    return generate(args.out.resolve(), args.only, str(Path(uv).resolve()) if os.sep in uv else uv)


if __name__ == "__main__":
    sys.exit(main())
