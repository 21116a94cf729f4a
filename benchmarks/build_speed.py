"""Cold `loftc build` against its import floor, in one run.

Each sample is a fresh process (nothing cached in the interpreter; the OS file cache is warm for both):
    build: loftc build examples/quickstart.yaml -o <new temp dir>
    floor: python -c 'import ruamel.yaml, jsonschema, jinja2'   (the libraries a build needs)
Samples alternate so drift on a shared machine hits both alike. Targets: median build <= 2.5x the floor
and < 0.3 s. `--profile` prints the slowest imports of one build (python -X importtime).

    .venv/bin/python benchmarks/build_speed.py [-n 21] [--profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
LOFTC = [PY, "-c", "import sys; from loft.compiler.cli import main; sys.exit(main())"]
FLOOR = [PY, "-c", "import ruamel.yaml, jsonschema, jinja2"]
TARGET_RATIO = 2.5
TARGET_SECONDS = 0.3


def project(tmp: Path) -> Path:
    """examples/ copied under tmp, with the tiny model the quickstart points at (built once)."""
    shutil.copytree(ROOT / "examples", tmp / "examples", ignore=shutil.ignore_patterns("__pycache__", "models"))
    model = ROOT / "examples" / "models" / "tiny-llama"
    dest = tmp / "examples" / "models" / "tiny-llama"
    if model.is_dir():
        shutil.copytree(model, dest)
    else:
        subprocess.run([PY, str(ROOT / "examples" / "tiny.py"), str(dest)], check=True, capture_output=True)
    return tmp


# Byte-code caching on, as on a user's machine (this environment may export PYTHONDONTWRITEBYTECODE=1,
# which makes every process recompile every module and measures the compiler, not loftc).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], cwd: Path, cpu: list[float] | None = None) -> float:
    """Wall seconds of one run; its CPU seconds (user + sys) appended to `cpu`, which a loaded machine
    inflates far less than wall time."""
    cpu0 = _child_cpu()
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    if cpu is not None:
        cpu.append(_child_cpu() - cpu0)
    return elapsed


def profile(cwd: Path) -> None:
    r = subprocess.run([PY, "-X", "importtime", *LOFTC[1:], "build", "examples/quickstart.yaml", "-o", "prof-run"],
                       cwd=cwd, capture_output=True, text=True, env=ENV)
    rows: list[tuple[int, str]] = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _self, cumulative, name = (p.strip() for p in line[len("import time:"):].split("|"))
            rows.append((int(cumulative), name))
    print("slowest imports (cumulative µs):")
    for us, module in sorted(rows, reverse=True)[:25]:
        print(f"  {us:>9}  {module}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=21, help="samples of each (default 21)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="loft-bench-") as t:
        cwd = project(Path(t))
        if args.profile:
            profile(cwd)
            return
        timed([*LOFTC, "build", "examples/quickstart.yaml", "-o", "warm"], cwd)  # byte-compile once
        timed(FLOOR, cwd)
        build: list[float] = []
        floor: list[float] = []
        build_cpu: list[float] = []
        floor_cpu: list[float] = []
        load0 = os.getloadavg()[0]
        for i in range(args.n):
            floor.append(timed(FLOOR, cwd, floor_cpu))
            build.append(timed([*LOFTC, "build", "examples/quickstart.yaml", "-o", f"run-{i}"], cwd, build_cpu))
        load1 = os.getloadavg()[0]
    b, f = statistics.median(build), statistics.median(floor)
    bc, fc = statistics.median(build_cpu), statistics.median(floor_cpu)
    ratio = b / f
    print(f"machine: {platform.node() or '?'}  {platform.machine()}  {os.cpu_count()} CPUs  "
          f"Python {platform.python_version()}  load average {load0:.1f} → {load1:.1f}")
    print(f"CPU time (user+sys), medians: floor {fc * 1000:.0f} ms, build {bc * 1000:.0f} ms, "
          f"ratio {bc / fc:.2f}x")
    print(f"samples: {args.n} of each, alternating")
    print(f"floor  (import ruamel.yaml, jsonschema, jinja2): median {f * 1000:.0f} ms  "
          f"(min {min(floor) * 1000:.0f}, max {max(floor) * 1000:.0f})")
    print(f"build  (loftc build examples/quickstart.yaml):   median {b * 1000:.0f} ms  "
          f"(min {min(build) * 1000:.0f}, max {max(build) * 1000:.0f})")
    ok = ratio <= TARGET_RATIO and b < TARGET_SECONDS
    print(f"ratio: {ratio:.2f}x the floor (target <= {TARGET_RATIO}x); build {b:.3f} s (target < {TARGET_SECONDS} s): "
          f"{'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
