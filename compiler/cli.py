"""`loftc`: the command line. Each subcommand lives in commands/<name>.py (`add_parser`, `run`).

Only the module of the command being run is imported (all of them for `--help`), so another command's
imports never slow down `loftc build`. Exit codes: 0 ok, 1 invalid input
(ConfigError, printed as file:line:col diagnostics), 2 usage errors, 3 an internal error (a bug;
`--debug` shows the traceback).

Every command takes `--json` (one flag name everywhere; `--format json` where it existed is the same):
its result as one JSON object on stdout, and any error as `{"ok": false, "errors": [{file, line, col, key,
code, message, expected, hint, severity}]}` (the human lines still go to stderr).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from loft.runtime.jsonout import Parser, UsageExit

from .errors import ConfigError, Diagnostic

COMMANDS = ("build", "check", "estimate", "convert", "verify", "diff", "templates", "schema", "gpus", "sweep")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__package__}.commands.{name}")


def _add_json(parser: argparse.ArgumentParser) -> None:
    """`--json` on every (sub)command that lacks it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any("--json" in a.option_strings for a in sub._actions):
                    sub.add_argument("--json", action="store_true", default=False,
                                     help="print the result (or the errors) as one JSON object on stdout")
                _add_json(sub)


def make_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = Parser(
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
    _add_json(parser)
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


def _json_errors(diags: Sequence[Diagnostic]) -> None:
    from loft.runtime.jsonout import print_errors

    print_errors([d.as_json() for d in diags])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    as_json = "--json" in argv or "--format=json" in argv
    try:
        parser, mods = make_parser(_command_of(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse: --help / --version exit 0
            return int(e.code or 0)
        debug = bool(getattr(args, "debug", False))
        if getattr(args, "json", False) and hasattr(args, "format"):
            args.format = "json"  # the older spelling of the same request
        as_json = bool(getattr(args, "json", False)) or getattr(args, "format", None) == "json"
        return int(mods[args.command].run(args))
    except ConfigError as e:
        if debug:
            raise
        print_diagnostics(e.diagnostics)
        if as_json:
            _json_errors(e.diagnostics)
        return 1
    except UsageExit as e:  # argparse's (the shared Parser) and the commands' own UsageError
        if debug:
            raise
        print(f"loftc: error: {e}", file=sys.stderr)
        if as_json:
            _json_errors([Diagnostic(str(e), code="usage")])
        return 2
    except KeyboardInterrupt:
        print("loftc: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if debug:
            raise
        print(f"loftc: error: {e}", file=sys.stderr)
        if as_json:
            _json_errors([Diagnostic(e.strerror or str(e), file=str(e.filename or ""), code="os-error")])
        return 1
    except Exception as e:
        if debug:
            raise
        print(f"loftc: internal error: {type(e).__name__}: {e} (this is a bug; --debug shows the traceback)",
              file=sys.stderr)
        if as_json:
            _json_errors([Diagnostic(f"{type(e).__name__}: {e}", code="internal")])
        return 3


if __name__ == "__main__":
    sys.exit(main())
