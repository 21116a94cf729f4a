"""progress.py: tqdm on a terminal, plain periodic lines otherwise, silent with LOFT_PROGRESS=0."""

from __future__ import annotations

import io

from loft.runtime.progress import Progress, track


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal(monkeypatch):
    monkeypatch.setenv("LOFT_PROGRESS_S", "0")
    out = io.StringIO()
    with Progress(4, "tokenize chat", "rows", stream=out) as bar:
        for _ in range(4):
            bar.update()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[loft] tokenize chat: 1/4 rows (25%)") and "\r" not in out.getvalue()
    assert lines[-1].startswith("[loft] tokenize chat: 4/4 rows (100%)") and lines[-1].endswith("done")


def test_a_bar_on_a_terminal_and_silence_when_asked(monkeypatch):
    tty = Tty()
    with Progress(3, "eval", stream=tty) as bar:
        assert bar.bar is not None
        bar.update(3)
    assert "eval" in tty.getvalue()
    monkeypatch.setenv("LOFT_PROGRESS", "0")
    quiet = io.StringIO()
    with Progress(3, "eval", stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
    assert list(track([1, 2, 3], "x")) == [1, 2, 3]
