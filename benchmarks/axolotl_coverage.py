"""How much of Axolotl's published example corpus loft builds, and why the rest is refused.

    .venv/bin/python benchmarks/axolotl_coverage.py [CORPUS_DIR] [--write docs/axolotl.md]

Plans every config of ../shared/corpus/axolotl/examples in-process (parse → translate → validate →
resolve → estimate: everything `loftc build` does except rendering and writing files) and prints the
coverage table that docs/axolotl.md carries between its `coverage` markers; `--write` updates the doc.
tests/axolotl/test_corpus.py checks that the doc's table is the one this computes.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "axolotl" / "examples"
START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"
KEYS_START, KEYS_END = "<!-- keys:start -->", "<!-- keys:end -->"


@dataclass
class Result:
    file: str
    ok: bool
    reasons: list[str] = field(default_factory=list)  # the feature groups refused
    keys: list[str] = field(default_factory=list)  # the Axolotl keys named by the errors
    warnings: int = 0


OFFLINE = "the model's own chat template is not in the Hugging Face cache (offline here; fetched when online)"
_GROUPS: dict[str, tuple[str, ...]] = {
    "multimodal (vision/audio) training": ("processor_type", "chat_template:vision", "model_type:ConditionalGeneration"),
    "RL / preference training (DPO, KTO, EBFT)": ("rl", "trl", "vllm", "rl_beta", "kto_desirable_weight",
                                                "kto_undesirable_weight", "ebft", "datasets:rl"),
    "expert / tensor / context parallelism": ("expert_parallel_size", "expert_parallel_num_nvl_bytes",
                                              "expert_parallel_token_capacity", "tensor_parallel_size",
                                              "context_parallel_size", "dp_shard_size", "dp_replicate_size",
                                              "plugins:ExpertParallel"),
    "low-precision training (QAT, FP4/NVFP4, GPTQ)": ("qat", "nvfp4_merge_aware", "dsv4_fp4_grouped_mode", "gptq",
                                                     "bnb_config_kwargs"),
    "diffusion language models": ("diffusion", "plugins:Diffusion"),
    "LoRA on MoE expert parameters": ("lora_target_parameters",),
    "partial fine-tuning (unfrozen_parameters, lora_modules_to_save)": ("unfrozen_parameters",
                                                                       "lora_modules_to_save"),
    "Llama 4 linearized experts / Mamba": ("llama4_linearized_experts", "model_type:other"),
    "model config overrides (router aux loss)": ("model_config",),
    "schedule options (quadratic warmup, cosine floor, early stopping)": ("lr_quadratic_warmup",
                                                                         "cosine_min_lr_ratio",
                                                                         "early_stopping_patience"),
    "dataset options (data_files, hub config name, custom types)": ("datasets:other", "pretraining_dataset"),
    "vocabulary changes (tokens)": ("tokens",),
    OFFLINE: ("template:unavailable",),
}


def reason(diag: object) -> str:
    """The feature group one error belongs to; mistakes in the config are their own group."""
    key = str(getattr(diag, "key", "") or "")
    code = str(getattr(diag, "code", ""))
    msg = str(getattr(diag, "message", ""))
    top = key.split("[")[0].split(".")[0]
    if (code in ("unknown-key", "type", "missing-key", "contradiction") and top not in ("datasets", "adapter")) \
            or "placeholder" in msg:
        return "mistakes in the config (misspelled keys, invalid values, placeholders)"
    tag = top
    if code == "template-unavailable":
        tag = "template:unavailable"
    elif top == "chat_template" and "vision" in msg:
        tag = "chat_template:vision"
    elif top == "model_type":
        tag = "model_type:ConditionalGeneration" if "ConditionalGeneration" in msg else "model_type:other"
    elif top == "plugins":
        tag = "plugins:ExpertParallel" if "expert" in msg else "plugins:Diffusion" if "diffusion" in msg else top
    elif top == "datasets":
        rl = any(s in msg for s in ("chat_template.default", "ebft")) or key.endswith(("field_chosen",
                                                                                        "field_rejected"))
        tag = "datasets:rl" if rl else "datasets:other"
    for group, tags in _GROUPS.items():
        if tag in tags:
            return group
    return f"`{top}`" + (f" ({code})" if code else "")


def run(corpus: Path) -> list[Result]:
    from loft.compiler.errors import ConfigError
    from loft.compiler.pipeline import plan

    out: list[Result] = []
    for f in sorted([*corpus.glob("*.yml"), *corpus.glob("*.yaml")]):
        try:
            r = plan(f)
            out.append(Result(f.name, True, warnings=len(r.warnings)))
        except ConfigError as e:
            errors = [d for d in e.diagnostics if d.severity == "error"]
            labels = sorted({reason(d) for d in errors})
            keys = sorted({d.key for d in errors if d.key})
            out.append(Result(f.name, False, labels, keys))
    return out


def table(results: list[Result]) -> str:
    n = len(results)
    ok = sum(r.ok for r in results)
    tally: collections.Counter[str] = collections.Counter()
    for r in results:
        tally.update(r.reasons)
    online = ok + sum(r.reasons == [OFFLINE] for r in results)
    lines = [START, "",
             f"**{ok} of {n} configs build** ({100 * ok / max(n, 1):.0f}%) offline; the other {n - ok} exit 1 "
             "naming every unsupported feature at once. With network access (or a warm Hugging Face cache), "
             f"{online} of {n} ({100 * online / max(n, 1):.0f}%): the rest of them only lack the model's own "
             "chat template files. Reasons (a config can have several):", "",
             "| configs | refused because |", "|---:|---|"]
    for label, count in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"| {count} | {label.replace('|', '/')} |")
    lines += ["", "Per config:", "", "| config | result |", "|---|---|"]
    for r in results:
        res = "builds" if r.ok else "refused: " + ", ".join(f"`{k}`" for k in r.keys)
        lines.append(f"| {r.file} | {res} |")
    lines += ["", "Generated by `benchmarks/axolotl_coverage.py`.", END]
    return "\n".join(lines)


def keys_table() -> str:
    """Every top-level Axolotl key loft knows and what it does with it (docs/axolotl.md's last table)."""
    from loft.compiler.dialects.axolotl import keys as K

    label = {"translated": "translated", "no-effect": "warning (no effect)", "unsupported": "error"}
    lines = [KEYS_START, "", "| key | loft | what loft does |", "|---|---|---|"]
    for key, kind, why in K.table():
        lines.append(f"| `{key}` | {label[kind]} | {why.replace('|', '/')} |")
    lines += ["", "Generated from `compiler/dialects/axolotl/keys.json` by `benchmarks/axolotl_coverage.py`.",
              KEYS_END]
    return "\n".join(lines)


def replace_block(text: str, start: str, end: str, block: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"no {start} ... {end} block to replace")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    ap.add_argument("--write", default=None, help="markdown file whose coverage block to replace")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"no corpus at {corpus}", file=sys.stderr)
        return 2
    block = table(run(corpus))
    if args.write:
        doc = Path(args.write)
        text = replace_block(doc.read_text("utf-8"), START, END, block)
        doc.write_text(replace_block(text, KEYS_START, KEYS_END, keys_table()), "utf-8")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
