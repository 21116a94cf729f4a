"""Progress for long commands, and the terminal habits every loft command shares (NO_COLOR, TTY or not).

`progress(total, desc)` is tqdm's bar on a terminal; when stderr is not a TTY (a log file, CI, `nohup`) it
prints a plain line at most every `LOFT_PROGRESS_S` seconds (default 10) and one at the end, so logs stay
readable instead of filling with carriage returns. `LOFT_PROGRESS=0` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def color_enabled(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org: any non-empty value)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("LOFT_PROGRESS_S", "10")))
    except ValueError:
        return 10.0


class Progress:
    """One unit of work counted in steps; a tqdm bar on a TTY, plain periodic lines otherwise."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.n = 0
        self.start = self.last = time.monotonic()
        self.enabled = os.environ.get("LOFT_PROGRESS", "1") != "0" if enabled is None else enabled
        self.bar: Any = None
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self.last >= _interval():
            self.last = now
            self._line()

    def _line(self, done: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        tail = "done" if done else (f"eta {(self.total - self.n) / rate:.0f}s" if rate and self.total else "")
        print(f"[loft] {self.desc}: {self.n}{of} {self.unit}{pct}, {rate:.1f} {self.unit}/s, "
              f"{elapsed:.1f}s {tail}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.n:
            self._line(done=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def progress(total: int | None, desc: str, unit: str = "it", stream: TextIO | None = None) -> Progress:
    return Progress(total, desc, unit, stream)


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Iterate with progress (total from len() when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit) as bar:
        for item in items:
            yield item
            bar.update()
