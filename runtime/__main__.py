"""`loft STAGE RUN_DIR [--trial N] [--json]` (also `python -m loft.runtime`): run one stage of a compiled bundle.
Tools beside the stages: `loft dashboard`, `analyze`, `spikes`, `augment`, `debug-tokens` (each its own parser).

Heavy libraries are imported by the stage that needs them, so `--help` and plan errors are instant.
Broken bundles and unmet requirements print one clear line and exit 1 (no traceback); `--debug` shows it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

STAGES = ("prepare", "train", "eval", "merge", "export", "sweep", "debug-tokens")
HELP = {
    "prepare": "tokenize, mask, pack and split the data into <out>/prepared",
    "train": "train (resumes from the newest complete checkpoint); SIGUSR1 / touch RUN_DIR/STOP / Ctrl-C "
             "save and quit",
    "eval": "fine-tuned vs base: eval loss, perplexity, generations, lm-eval scores → <out>/eval/report.{json,md}",
    "merge": "merge the LoRA adapter into the base weights → <out>/merged; or, with --base/--adapters, "
             "combine adapters by PEFT's weighted merging (linear, ties, dare_*, cat, svd) → -o OUT",
    "export": "write the plan's export formats (safetensors, gguf, awq, gptq) with a model card → <out>/export",
    "sweep": "run every sweep trial in one process (base model loaded once) → <out>/sweep/results.md",
    "debug-tokens": "show how samples are tokenized and masked",
}
TOOLS = {  # commands with their own arguments: name -> (module, help)
    "debug-tokens": ("inspect:main_debug_tokens", "show how samples are tokenized and masked"),
    "dashboard": ("dashboard:main", "live dashboard of metrics.jsonl on 127.0.0.1 (--tui: in the terminal)"),
    "analyze": ("analyze:main", "duplicates, languages, lengths and shape of the data, before preparing"),
    "spikes": ("spikes:main", "loss spikes and the samples behind them; --blocklist for data.blocklist"),
    "augment": ("augment:main", "system prompts, personas, reply splitting, LLM style transfer of jsonl data"),
}
REPORTS = {"train": "train_report.json", "eval": "eval/report.json", "export": "export/export_report.json"}
# stage-specific options: (flags, argparse kwargs with a dest); each reaches the stage's run() by that name
STAGE_OPTIONS: dict[str, list[tuple[tuple[str, ...], dict[str, Any]]]] = {
    "eval": [(("--checkpoints",), {"dest": "checkpoints", "metavar": "all|N,M,...", "default": None,
                                   "help": "also evaluate saved checkpoints (all, or their steps): a table and a "
                                           "PNG of eval loss by step, the best named (default: eval.checkpoints)"})],
    "export": [(("--format",), {"dest": "export_format", "default": None, "metavar": "merged|gguf|awq|gptq",
                                "help": "write this format only (default: the plan's export.formats)"}),
               (("--quant",), {"dest": "quant", "default": None, "metavar": "TYPE",
                               "help": "GGUF type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 (Python), q4_k_m q5_k_m "
                                       "q6_k ... (llama-cpp-python); default: export.quant"})],
    "train": [(("--allow-device-mismatch",), {"dest": "allow_device_mismatch", "action": "store_true",
                                              "help": "train even when the machine's GPUs differ from the plan's "
                                                      "(also LOFT_ALLOW_DEVICE_MISMATCH=1)"})],
}


def _stage_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {kw["dest"]: getattr(args, kw["dest"]) for _, kw in STAGE_OPTIONS.get(args.stage, ())}


def _parser() -> argparse.ArgumentParser:
    from .jsonout import Parser

    ap = Parser(prog="loft", description="Run one stage of a loft bundle (built by `loftc build`).")
    ap.add_argument("--version", action="version", version=f"loft {_version()}")
    sub = ap.add_subparsers(dest="stage", metavar="STAGE")
    for name in STAGES:
        if name in TOOLS:
            continue
        p = sub.add_parser(name, help=HELP[name], description=HELP[name])
        if name == "merge":  # optional: `loft merge --base M --adapters ...` needs no bundle
            p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="the bundle directory (holds plan.lock)")
        else:
            p.add_argument("run_dir", metavar="RUN_DIR", help="the bundle directory (holds plan.lock)")
        p.add_argument("--trial", type=int, default=None, metavar="N",
                       help="run sweep trial N: apply its overrides, write to <output_dir>/trial-N")
        p.add_argument("--json", action="store_true",
                       help="print the stage's report as one JSON object on stdout (errors: {\"error\": {...}})")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        for flags, kwargs in STAGE_OPTIONS.get(name, ()):
            p.add_argument(*flags, **kwargs)
        if name == "merge":
            from .merge import MERGE_OPTIONS

            for flags, kwargs in MERGE_OPTIONS:
                p.add_argument(*flags, **kwargs)
    for name, (_, text) in TOOLS.items():
        sub.add_parser(name, help=text, description=text, add_help=False)
    return ap


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loft")
    except Exception:  # a bundle's copy of the runtime, not installed
        return "unknown (not installed)"


def _tool(name: str) -> Callable[[list[str]], int]:
    import importlib

    module, func = TOOLS[name][0].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), func)


def _emit(args: argparse.Namespace, bundle: Any, result: object) -> None:
    """--json: the stage's report on stdout (the returned dict, else its report file)."""
    import json

    from .jsonout import print_ok

    if not isinstance(result, dict):
        rel = REPORTS.get(args.stage)
        path = bundle.out / rel if rel else None
        result = json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}
    print_ok({"report": result}, stage=args.stage)


def _error(args: argparse.Namespace, code: str, message: str, exc: BaseException | None = None) -> None:
    """--json: the error as loft's one structured shape; a plan that fails its schema gives one error per
    problem, each naming the key path."""
    if not getattr(args, "json", False):
        return
    from .jsonout import error_object, print_errors
    from .plan import PlanError

    if isinstance(exc, PlanError) and exc.problems:
        errors = [error_object(what, "plan-schema", file=exc.file, key=key) for key, what in exc.problems]
    else:
        file = getattr(exc, "file", None) or getattr(exc, "filename", None)
        errors = [error_object(message, code, file=str(file) if file else None)]
    print_errors(errors, stage=args.stage)


def _stage(name: str) -> Callable[..., int]:
    if name == "prepare":
        from .prepare import run as prepare_run

        return prepare_run  # type: ignore[return-value]
    if name == "train":
        from .train.trainer import run as train_run

        return train_run
    if name == "eval":
        from .eval import run as eval_run

        return eval_run
    if name == "sweep":
        from .sweep.runner import run as sweep_run

        return sweep_run
    if name == "merge":
        from .merge import run as merge_run

        return merge_run
    from .export import run as export_run

    return export_run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        return int(_tool(argv[0])(argv[1:]) or 0)
    from .jsonout import parse

    ap = _parser()
    parsed = parse(ap, argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    if not args.stage:
        ap.print_help()
        return 2
    from .plan import PlanError, load, with_trial

    if args.stage == "merge" and (args.adapters or args.run_dir is None):
        return _merge_standalone(args)
    try:
        bundle = load(args.run_dir)
        if args.trial is not None:
            bundle = with_trial(bundle, args.trial)
    except PlanError as e:
        _error(args, "plan", str(e), e)
        print(f"loft: error: {e}", file=sys.stderr)
        return 1
    from .train.model import StageError

    user_errors: list[type[BaseException]] = [StageError, PlanError, RuntimeError, FileNotFoundError, KeyError]
    try:
        stage = _stage(args.stage)
        if args.stage == "prepare":
            from .prepare.errors import PrepareError

            user_errors.append(PrepareError)
        if args.json:  # stdout carries the one JSON object; what the stage prints goes to stderr
            import contextlib

            with contextlib.redirect_stdout(sys.stderr):
                result = stage(bundle, **_stage_kwargs(args))
        else:
            result = stage(bundle, **_stage_kwargs(args))
        if args.json and not (isinstance(result, int) and result != 0):
            _emit(args, bundle, result)
        return result if isinstance(result, int) else 0  # stages may return a report dict: success
    except tuple(user_errors) as e:
        if args.debug or os.environ.get("LOFT_DEBUG"):
            raise
        what = f"the plan lacks {e}" if isinstance(e, KeyError) else str(e)
        _error(args, type(e).__name__, what, e)
        print(f"loft {args.stage}: error: {what}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"loft {args.stage}: aborted", file=sys.stderr)
        return 130


def _merge_standalone(args: argparse.Namespace) -> int:
    """``loft merge --base M --adapters ... -o OUT``: no bundle, the same error handling as a stage."""
    if not args.adapters or not args.base:
        print("loft merge: error: give RUN_DIR (merge a run's adapter), or --base M --adapters A [B ...] -o OUT",
              file=sys.stderr)
        return 2
    from .merge import main_standalone
    from .train.model import StageError

    try:
        return main_standalone(args)
    except (StageError, FileNotFoundError) as e:
        if args.debug or os.environ.get("LOFT_DEBUG"):
            raise
        _error(args, type(e).__name__, str(e))
        print(f"loft merge: error: {e}  (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
