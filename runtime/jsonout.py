"""One `--json` shape for every loftc and loft command, so a script reads them all the same way.

Success: `{"ok": true, ...the command's report...}`. Failure: `{"ok": false, "errors": [ERROR, ...]}` where
each ERROR has the same keys as loftc's diagnostics: file, line, col, key, code, message, expected, hint,
severity (null where a field does not apply). Human text always goes to stderr, so stdout carries exactly
one JSON object. Pure (json and argparse only): the compiler's CLI uses it too.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn, TextIO

ERROR_FIELDS = ("code", "col", "expected", "file", "hint", "key", "line", "message", "severity")


def error_object(message: str, code: str, **fields: Any) -> dict[str, Any]:
    """One structured error; unknown field names are a bug, not silently dropped."""
    unknown = set(fields) - set(ERROR_FIELDS)
    if unknown:
        raise TypeError(f"error_object: unknown fields {sorted(unknown)}")
    out: dict[str, Any] = dict.fromkeys(ERROR_FIELDS)
    out["severity"] = "error"
    out.update(fields)
    out.update(message=message, code=code)
    return out


def dumps(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def print_ok(report: dict[str, Any], stream: TextIO | None = None, **head: Any) -> None:
    print(dumps({**report, **head, "ok": True}), file=stream or sys.stdout, flush=True)


def print_errors(errors: list[dict[str, Any]], stream: TextIO | None = None, **head: Any) -> None:
    print(dumps({**head, "ok": False, "errors": errors}), file=stream or sys.stdout, flush=True)


def fail(prog: str, message: str, code: str, as_json: bool, exit_code: int = 1, **fields: Any) -> int:
    """Report one error the loft way: `PROG: error: MESSAGE` on stderr, and the JSON object on stdout under
    --json. Returns the exit code (1 bad input, 2 usage) for `return fail(...)`."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    if as_json:
        print_errors([error_object(message, code, **fields)])
    return exit_code


class UsageExit(Exception):
    """A command line argparse refused: exit 2, reported as JSON too when --json was given."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors raise UsageExit (after the usage line) instead of exiting, so a command
    can answer them under --json like any other error; --help and --version still exit 0."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageExit(f"{self.prog}: {message}")


def parse(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """`ap.parse_args(argv)`, or the exit code when it printed help (0) or refused the line (2)."""
    try:
        return ap.parse_args(argv)
    except UsageExit as e:
        print(f"error: {e.message}", file=sys.stderr)
        if "--json" in argv:
            print_errors([error_object(e.message, "usage")])
        return 2
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
