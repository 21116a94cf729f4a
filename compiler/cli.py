"""`loftc`: the command line. Each subcommand lives in commands/<name>.py (`add_parser`, `run`).

Only the module of the command being run is imported (all of them for `--help`), so another command's
imports never slow down `loftc build`. Exit codes: 0 ok, 1 invalid input
(ConfigError, printed as file:line:col diagnostics), 2 usage errors, 3 an internal error (a bug;
`--debug` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from .errors import ConfigError, Diagnostic, UsageError

COMMANDS = ("build", "check", "estimate", "convert", "verify", "diff", "templates", "schema", "gpus")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.commands.{name}")


def make_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="loftc", description="Compile a fine-tuning config into a locked, reproducible run bundle.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    parser.add_argument("--version", action="version", version=f"loftc {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    mods: dict[str, ModuleType] = {}
    for name in COMMANDS if only is None else (only,):
        mod = _module(name)
        mod.add_parser(sub)
        mods[name] = mod
        p = sub.choices.get(name)
        if p is not None and not any("--debug" in a.option_strings for a in p._actions):
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show Python tracebacks")
    return parser, mods


def _version() -> str:
    from .resolve import LOFT_VERSION

    return LOFT_VERSION


def print_diagnostics(diags: Sequence[Diagnostic]) -> None:
    for d in diags:
        print(d.render(), file=sys.stderr)


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, when it is a known one and help is not asked for."""
    for a in argv:
        if a in ("-h", "--help"):
            return None
        if not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser, mods = make_parser(_command_of(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
            return int(e.code or 0)
        debug = bool(getattr(args, "debug", False))
        return int(mods[args.command].run(args))
    except ConfigError as e:
        if debug:
            raise
        print_diagnostics(e.diagnostics)
        return 1
    except UsageError as e:
        if debug:
            raise
        print(f"loftc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loftc: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if debug:
            raise
        print(f"loftc: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if debug:
            raise
        print(f"loftc: internal error: {type(e).__name__}: {e} (this is a bug; --debug shows the traceback)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
