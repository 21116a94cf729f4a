"""The GPU box as `nvidia-smi` reports it, and which of the bundle's locks fits its driver.

Standard library only: launch.sh runs this before anything is installed (`launch.sh install` asks it
which lock to install, `launch.sh check` reports from it). The bundle's `requirements/locks.json`
(written by the compiler) lists one lock per CUDA build of torch; the driver's CUDA version (the
`CUDA Version` nvidia-smi prints: the newest CUDA runtime the driver can run) picks the newest build it
supports, unless the config fixed one with `target.cuda`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCKS_INDEX = "requirements/locks.json"
_QUERY = "index,name,memory.total,memory.free,driver_version"
_CUDA = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_mib: int
    free_mib: int


@dataclass(frozen=True)
class Box:
    driver: str | None = None
    cuda: str | None = None
    gpus: tuple[Gpu, ...] = ()
    problem: str | None = None  # why nothing could be read (no driver, nvidia-smi failed)
    notes: list[str] = field(default_factory=list)


def probe(exe: str = "nvidia-smi", timeout: float = 30.0) -> Box:
    """What nvidia-smi says: driver, CUDA version, each visible GPU's memory (CUDA_VISIBLE_DEVICES honoured)."""
    path = shutil.which(exe)
    if path is None:
        return Box(problem="no nvidia-smi on PATH: this machine has no NVIDIA driver installed (or it is not on PATH)")
    try:
        q = subprocess.run([path, f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits"], capture_output=True,
                           text=True, timeout=timeout, check=False)
        head = subprocess.run([path], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Box(problem=f"nvidia-smi did not answer ({e}): the driver is not loaded or a GPU is hung")
    if q.returncode != 0:
        first = (q.stderr or q.stdout).strip().splitlines()[:1]
        return Box(problem=f"nvidia-smi failed: {first[0] if first else 'exit ' + str(q.returncode)}")
    gpus, driver = [], None
    for line in q.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            gpus.append(Gpu(int(parts[0]), parts[1], int(float(parts[2])), int(float(parts[3]))))
        except ValueError:
            continue
        driver = parts[4]
    m = _CUDA.search(head.stdout)
    return Box(driver=driver, cuda=m.group(1) if m else None, gpus=tuple(_visible(gpus)))


def _visible(gpus: list[Gpu]) -> list[Gpu]:
    """The GPUs a process here may use: CUDA_VISIBLE_DEVICES (indices) when set, else all."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return gpus
    wanted = [p.strip() for p in env.split(",") if p.strip()]
    if not all(w.isdigit() for w in wanted):  # UUIDs or MIG names: trust the count only
        return gpus[: len(wanted)]
    by_index = {g.index: g for g in gpus}
    return [by_index[int(w)] for w in wanted if int(w) in by_index]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def read_index(root: Path) -> dict[str, Any]:
    path = root / LOCKS_INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rebuild the bundle with a loftc that writes locks")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def choose(index: dict[str, Any], box: Box) -> tuple[str | None, str | None, list[str]]:
    """(bundle-relative lock file, build name, problems) for this box."""
    builds = index.get("builds") or {}
    usable = sorted(((b["cuda"], n) for n, b in builds.items() if b.get("file")), key=lambda cb: version(cb[0]))
    missing = {n: b for n, b in builds.items() if not b.get("file")}
    if not usable:
        return None, None, ["this bundle holds no package lock (requirements/locks.json lists none with a file)"]
    if box.cuda is None:  # no driver to ask: the compiler's default, and check says why
        name = index.get("default") or usable[-1][1]
        return builds[name]["file"], name, []
    fits = [(c, n) for c, n in usable if version(c) <= version(box.cuda)]
    if fits:
        cuda, name = fits[-1]
        better = [n for n, b in missing.items() if version(cuda) < version(b["cuda"]) <= version(box.cuda)]
        if better and index.get("target_cuda", "auto") == "auto":
            box.notes.append(f"the driver could run {', '.join(sorted(better))}, which this loft has no lock for; "
                             f"using {name}")
        return builds[name]["file"], name, []
    cuda, name = usable[0]
    why = [f"the NVIDIA driver {box.driver or '?'} supports CUDA up to {box.cuda}, but this bundle's torch needs "
           f"CUDA {cuda} or newer ({name}"
           + (", fixed by target.cuda" if index.get("target_cuda", "auto") != "auto" else "") + "): update the "
           "driver (nvidia-smi must show `CUDA Version` >= " + cuda + ")"]
    older = sorted(n for n, b in missing.items() if version(b["cuda"]) <= version(box.cuda))
    if older:
        why[0] += (f"; or use a build this driver runs ({', '.join(older)}): not locked in this loft; a maintainer "
                   f"runs `make lock` where the PyTorch index is reachable, then rebuild the bundle")
    return None, name, why


def main(argv: list[str] | None = None) -> int:
    """`python -m loft.runtime.box lock RUN_DIR`: print the lock this box should install (exit 1: none fits)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "lock":
        print("usage: python -m loft.runtime.box lock RUN_DIR", file=sys.stderr)
        return 2
    root = Path(args[1]).resolve()
    try:
        index = read_index(root)
    except (OSError, ValueError) as e:
        print(f"loft: {e}", file=sys.stderr)
        return 1
    box = probe()
    lock, name, problems = choose(index, box)
    for note in box.notes:
        print(f"loft: note: {note}", file=sys.stderr)
    if lock is None:
        for p in problems:
            print(f"loft: {p}", file=sys.stderr)
        return 1
    where = f"driver {box.driver}, CUDA {box.cuda}" if box.cuda else (box.problem or "no driver")
    print(f"loft: {lock} (torch for {name}; {where})", file=sys.stderr)
    print(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
