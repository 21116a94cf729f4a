"""`loft STAGE RUN_DIR [--trial N]` (also `python -m loft.runtime`): run one stage of a compiled bundle.

Heavy libraries are imported by the stage that needs them, so `--help` and plan errors are instant.
Broken bundles and unmet requirements print one clear line and exit 1 (no traceback); `--debug` shows it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

STAGES = ("prepare", "train", "eval", "merge", "export", "debug-tokens")
HELP = {
    "prepare": "tokenize, mask, pack and split the data into <out>/prepared",
    "train": "train (resumes from the newest complete checkpoint); SIGUSR1 / touch RUN_DIR/STOP / Ctrl-C "
             "save and quit",
    "eval": "eval loss, perplexity and sample generations → <out>/eval/report.{json,md}",
    "merge": "merge the LoRA adapter into the base weights → <out>/merged",
    "export": "write the plan's export formats (safetensors, gguf) → <out>/export",
    "debug-tokens": "show how samples are tokenized and masked",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="loft", description="Run one stage of a loft bundle (built by `loftc build`).")
    sub = ap.add_subparsers(dest="stage", metavar="STAGE")
    for name in STAGES:
        p = sub.add_parser(name, help=HELP[name], description=HELP[name])
        p.add_argument("run_dir", metavar="RUN_DIR", help="the bundle directory (holds plan.lock)")
        p.add_argument("--trial", type=int, default=None, metavar="N",
                       help="run sweep trial N: apply its overrides, write to <output_dir>/trial-N")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


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
    if name == "merge":
        from .merge import run as merge_run

        return merge_run
    from .export import run as export_run

    return export_run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "debug-tokens":
        from .inspect import main_debug_tokens

        return int(main_debug_tokens(argv[1:]) or 0)
    ap = _parser()
    args = ap.parse_args(argv)
    if not args.stage:
        ap.print_help()
        return 2
    from .plan import PlanError, load, with_trial

    try:
        bundle = load(args.run_dir)
        if args.trial is not None:
            bundle = with_trial(bundle, args.trial)
    except PlanError as e:
        print(f"loft: error: {e}", file=sys.stderr)
        return 1
    from .train.model import StageError

    user_errors: list[type[BaseException]] = [StageError, PlanError, RuntimeError, FileNotFoundError, KeyError]
    try:
        stage = _stage(args.stage)
        if args.stage == "prepare":
            from .prepare.errors import PrepareError

            user_errors.append(PrepareError)
        result = stage(bundle)
        return result if isinstance(result, int) else 0  # stages may return a report dict: success
    except tuple(user_errors) as e:
        if args.debug or os.environ.get("LOFT_DEBUG"):
            raise
        what = f"the plan lacks {e}" if isinstance(e, KeyError) else str(e)
        print(f"loft {args.stage}: error: {what}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"loft {args.stage}: aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
