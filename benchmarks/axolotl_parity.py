"""Row-level parity with the real Axolotl: same configs, same tiny models, same data; input_ids and labels
compared row by row, dropped rows included.

    .venv/bin/python benchmarks/axolotl_parity.py [--venv DIR] [--install] [--case NAME ...] [--write]

For every case of `tests/axolotl/parity/cases.json` (an Axolotl config + a dataset + one of the tiny models
under tests/axolotl/parity/models), it runs `axolotl preprocess` (from the Axolotl install in `--venv`,
default $AXOLOTL_VENV or .axolotl-venv; `--install` creates it from the package registry: Axolotl with
--no-deps plus the small pure-Python packages `preprocess` imports, over this checkout's own torch /
transformers / datasets) with `shuffle_merged_datasets: false` and no packing, and loft's translate →
resolve → prepare on the same file. Rows are compared in source order (loft's rows sorted by sample id).
`--write` stores Axolotl's rows as the cases' expected rows (tests/axolotl/parity/expected/NAME.json), so
that tests/axolotl/test_axolotl_parity.py checks loft against them offline in `make test`; the table it prints
goes into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PARITY = ROOT / "tests" / "axolotl" / "parity"
# Installed into the Axolotl venv next to axolotl itself (--no-deps): what `axolotl preprocess` imports on
# a CPU box. torch, transformers, datasets, tokenizers ... come from this checkout's .venv (a .pth file).
AXOLOTL_DEPS = ["addict", "fire", "colorama", "art", "python-dotenv", "requests", "urllib3", "charset-normalizer",
                "certifi", "fastcore", "langdetect", "immutabledict", "posthog", "axolotl-contribs-lgpl==0.0.7",
                "axolotl-contribs-mit==0.0.6", "sentencepiece", "termcolor", "six", "backoff", "distro", "httpcore",
                "httpx", "h11", "numba", "llvmlite", "trl", "pillow"]
ENV = {"AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def cases() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((PARITY / "cases.json").read_text("utf-8"))
    return data


def install(venv: Path) -> None:
    """Axolotl from the package registry into its own venv (Python 3.11, CPU)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    Path(site, "zz_loft_shared.pth").write_text(ours + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, "--ignore-requires-python", "axolotl"], check=True)
    subprocess.run([*pip, *AXOLOTL_DEPS], check=True)


def stage(case: dict[str, Any], work: Path) -> Path:
    """The case's working directory: the model, the data file and the config (relative paths inside)."""
    shutil.copytree(PARITY / "models" / case["model"], work / "model")
    (work / "data").mkdir(parents=True)
    (work / "data" / case["data"]).write_bytes((PARITY / "data" / case["data"]).read_bytes())
    (work / "cfg.yml").write_text(case["config"], "utf-8")
    return work / "cfg.yml"


def axolotl_rows(venv: Path, cfg: Path) -> tuple[list[dict[str, list[int]]], float]:
    """`axolotl preprocess` on the config; its prepared rows in order."""
    import datasets

    t = time.perf_counter()
    r = subprocess.run([str(venv / "bin" / "axolotl"), "preprocess", cfg.name], cwd=cfg.parent,
                       env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600, check=False)
    took = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"axolotl preprocess failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    found = [p for p in (cfg.parent / "prepared").iterdir() if (p / "state.json").is_file()]
    ds = datasets.load_from_disk(str(found[0]))
    return [{"input_ids": list(x["input_ids"]), "labels": list(x["labels"])} for x in ds], took


def loft_rows(cfg: Path) -> list[dict[str, list[int]]]:
    """loft's build (translate → resolve → render) and prepare stage on the same file; rows in source order."""
    import datasets
    from loft.compiler.pipeline import build
    from loft.runtime import plan as plan_mod
    from loft.runtime.prepare import run as prepare

    run_dir = cfg.parent / "run"
    build(cfg, run_dir)
    prepare(plan_mod.load(run_dir), log=lambda *a, **k: None)
    ds = datasets.load_from_disk(str(run_dir / "out" / "prepared" / "train"))

    def order(sample_ids: list[str]) -> tuple[tuple[int, int], ...]:
        """`name:index` or `name:index:chunkN` -> (index, N): source order, chunks in order."""
        out = []
        for sid in sample_ids:
            parts = sid.split(":")
            chunk = int(parts[2][len("chunk"):]) if len(parts) > 2 else 0
            out.append((int(parts[1]), chunk))
        return tuple(out)

    rows = sorted(ds, key=lambda x: order(x["sample_ids"]))
    return [{"input_ids": list(x["input_ids"]), "labels": list(x["labels"])} for x in rows]


def compare(expected: list[dict[str, list[int]]], got: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Rows identical in order; rows only one side kept (a drop the other did not make)."""
    key = [json.dumps(r, sort_keys=True) for r in expected]
    mine = [json.dumps(r, sort_keys=True) for r in got]
    same_ids = sum(a["input_ids"] == b["input_ids"] for a, b in zip(expected, got, strict=False))
    same = sum(a == b for a, b in zip(key, mine, strict=False))
    return {"rows_axolotl": len(expected), "rows_loft": len(got), "identical": same, "same_input_ids": same_ids,
            "only_axolotl": len(set(key) - set(mine)), "only_loft": len(set(mine) - set(key)),
            "parity": len(expected) == len(got) and same == len(expected)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, default=Path(os.environ.get("AXOLOTL_VENV", ROOT / ".axolotl-venv")))
    ap.add_argument("--install", action="store_true", help="create the Axolotl venv first")
    ap.add_argument("--case", action="append", help="run only these cases")
    ap.add_argument("--write", action="store_true", help="store Axolotl's rows as the expected fixtures")
    args = ap.parse_args()
    os.environ.update(ENV)
    if args.install and not (args.venv / "bin" / "axolotl").exists():
        install(args.venv)
    if not (args.venv / "bin" / "axolotl").exists():
        print(f"no Axolotl in {args.venv}: run with --install (or set AXOLOTL_VENV)", file=sys.stderr)
        return 2
    version = subprocess.run([str(args.venv / "bin" / "python"), "-c", "import axolotl; print(axolotl.__version__)"],
                             capture_output=True, text=True, env={**os.environ, **ENV}, check=True).stdout.strip()
    results: dict[str, dict[str, Any]] = {}
    for name, case in cases().items():
        if args.case and name not in args.case:
            continue
        with tempfile.TemporaryDirectory(prefix=f"loft-parity-{name}-") as tmp:
            cfg = stage(case, Path(tmp) / "a")
            expected, took = axolotl_rows(args.venv, cfg)
            cfg2 = stage(case, Path(tmp) / "b")
            try:
                got = loft_rows(cfg2)
            except Exception as e:  # a case loft refuses is reported, not fatal
                got = []
                print(f"{name}: loft failed: {e}", file=sys.stderr)
        results[name] = {**compare(expected, got), "axolotl_s": round(took, 1)}
        print(f"{name:28s} {json.dumps(results[name])}", flush=True)
        if args.write:
            out = PARITY / "expected" / f"{name}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"axolotl": version, "rows": expected}, separators=(",", ":")) + "\n")
    ok = sum(r["parity"] for r in results.values())
    rows = sum(r["rows_axolotl"] for r in results.values())
    same = sum(r["identical"] for r in results.values())
    print(f"\nAxolotl {version}: {ok}/{len(results)} cases at 100% row parity; {same}/{rows} rows identical")
    print("\n| case | what it covers | Axolotl rows | loft rows | identical rows |\n|---|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {cases()[name]['covers']} | {r['rows_axolotl']} | {r['rows_loft']} | {r['identical']} |")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
