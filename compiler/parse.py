"""Stage 1: read a YAML file safely, keeping line:col for every key so later errors point at the source.

ruamel's round-trip loader keeps positions; it builds only plain maps, lists and scalars (no Python
objects, no tags that construct anything). Before it runs, `check_limits` bounds the work a hostile file
can cause: the file's size, nesting depth (a cheap scan of the text first, since ruamel's scanner is
quadratic in flow depth and its composer recursive), the number of nodes once every alias is expanded (a
"billion laughs" file is refused from its event stream in well under a second, before anything is
expanded) and the digits of an integer. Values are turned into plain JSON-compatible data by
`plain()`, with one deliberate difference from YAML 1.1 loaders: strings that read as numbers in
scientific notation without a dot (`2e-5`, which PyYAML returns as a string) become floats, because
configs are written for both loaders and users mean a number.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import ConfigError, Diagnostic

_SCI = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")
_INT_LIKE = re.compile(r"[-+]?([0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)")

MAX_BYTES = 64 << 10  # configs are a few KiB (the largest Axolotl example: 3 KiB); bounds the parse time
MAX_DEPTH = 64  # nesting of maps and lists
MAX_NODES = 10_000  # scalars, maps and lists after expanding every alias
MAX_INT_DIGITS = 30  # no config number needs more (int64 has 19)


@dataclass(frozen=True)
class Document:
    """A parsed config: its path (as the user named it), its raw text, and the ruamel tree."""

    path: str
    text: str
    tree: Any  # CommentedMap at the top for a valid config

    @property
    def data(self) -> Any:
        """The document as plain JSON-compatible data (dicts, lists, str, int, float, bool, None)."""
        return plain(self.tree)

    def pos(self, keys: tuple[object, ...] | list[object]) -> tuple[int, int]:
        """1-based (line, col) of the deepest existing node on the key path; (0, 0) when unknown."""
        node: Any = self.tree
        best = (0, 0)
        for k in keys:
            if isinstance(node, CommentedMap) and k in node:
                try:
                    line, col = node.lc.key(k)
                    best = (line + 1, col + 1)
                except (KeyError, TypeError, AttributeError):
                    pass
                node = node[k]
            elif isinstance(node, CommentedSeq) and isinstance(k, int) and 0 <= k < len(node):
                try:
                    line, col = node.lc.item(k)
                    best = (line + 1, col + 1)
                except (KeyError, TypeError, AttributeError):
                    pass
                node = node[k]
            else:
                break
        return best

    def diag(self, message: str, keys: tuple[object, ...] | list[object] = (), **kw: Any) -> Diagnostic:
        """A Diagnostic located at `keys` in this document."""
        from .errors import key_path

        line, col = self.pos(keys) if keys else (0, 0)
        if not line:  # a key missing at the top level: the top of the file
            line, col = 1, 1
        return Diagnostic(message, key=kw.pop("key", key_path(list(keys))), file=self.path, line=line, col=col, **kw)


def plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        s = str(node)
        if _SCI.match(s.strip()):
            return float(s)
        return s
    # timestamps and other YAML scalars become strings: a config has no use for them as objects
    return str(node)


def _limit(path: str, message: str, where: tuple[int, int] = (0, 0), expected: str = "") -> ConfigError:
    return ConfigError([Diagnostic(message, file=path, line=where[0], col=where[1], code="too-large",
                                   expected=expected)])


def _flow_depth(text: str, path: str) -> None:
    """Refuse flow nesting (`[[[[…`) deeper than MAX_DEPTH from the raw text, skipping quoted strings and
    comments; an unbalanced or odd text only ever errs towards counting less (YAML then reports it)."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _limit(path, f"lists and mappings nest more than {MAX_DEPTH} deep",
                             (line, i - text.rfind("\n", 0, i)), expected=f"at most {MAX_DEPTH} levels")
        elif c in "]}":
            depth = max(0, depth - 1)
        elif c == "\n":
            line += 1
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "'\"" and (i == 0 or text[i - 1] in " \t\n[{,:-"):
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c == '"' and text[j] == "\\" else 1
            line += text.count("\n", i, min(j, n))
            i = j + 1
            continue
        i += 1


_COUNTED = {"MappingStartEvent", "SequenceStartEvent", "MappingEndEvent", "SequenceEndEvent", "AliasEvent",
            "ScalarEvent"}


def _events(yaml: YAML, text: str) -> Iterator[Any]:
    """YAML events, from libyaml when PyYAML has it (C: ~50x faster than ruamel's pure parser, so even a
    file at the size limit is counted at once); ruamel's own parser otherwise, or where libyaml refuses
    something ruamel accepts (then ruamel reports its own errors)."""
    try:
        import yaml as pyyaml

        loader = pyyaml.CSafeLoader
    except (ImportError, AttributeError):
        yield from yaml.parse(text)
        return
    try:
        events = list(pyyaml.parse(text, Loader=loader))
    except pyyaml.YAMLError:
        events = None
    yield from events if events is not None else yaml.parse(text)


def check_limits(yaml: YAML, text: str, path: str) -> None:
    """Bound the work of loading `text`: size, nesting depth, expanded node count, integer digits."""
    if len(text) > MAX_BYTES:
        raise _limit(path, f"the file is {len(text):,} characters; configs are limited to {MAX_BYTES:,}",
                     expected="a config file (a few KiB)")
    _flow_depth(text, path)
    anchors: dict[str, int] = {}
    stack: list[list[Any]] = []  # [expanded node count, anchor] per open collection
    total = 0
    for ev in _events(yaml, text):
        kind = type(ev).__name__
        if kind not in _COUNTED:
            continue
        mark = ev.start_mark
        where = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            stack.append([1, ev.anchor])
            if len(stack) > MAX_DEPTH:
                raise _limit(path, f"lists and mappings nest more than {MAX_DEPTH} deep", where,
                             expected=f"at most {MAX_DEPTH} levels")
            continue
        if kind in ("MappingEndEvent", "SequenceEndEvent"):
            count, anchor = stack.pop() if stack else (1, None)
        elif kind == "AliasEvent":
            count, anchor = anchors.get(ev.anchor, 1), None
        else:
            count, anchor = 1, ev.anchor
            value = ev.value or ""
            if not ev.style and len(value) > MAX_INT_DIGITS and _INT_LIKE.fullmatch(value):
                raise _limit(path, f"a number of {len(value)} digits is too large", where,
                             expected=f"numbers of at most {MAX_INT_DIGITS} digits")
        if anchor is not None:
            anchors[anchor] = count
        if stack:
            stack[-1][0] += count
        total += count if not stack else 0
        if (stack[0][0] if stack else total) > MAX_NODES:
            raise _limit(path, f"the document expands to more than {MAX_NODES:,} values (aliases included)",
                         where, expected="a config without alias bombs")


def parse_text(text: str, path: str = "<string>") -> Document:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        check_limits(yaml, text, path)
        tree = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = (e.problem or e.context or "invalid YAML").strip()
        raise ConfigError([Diagnostic(f"invalid YAML: {msg}", file=path, line=line, col=col, code="yaml")]) from None
    except YAMLError as e:
        raise ConfigError([Diagnostic(f"invalid YAML: {e}", file=path, code="yaml")]) from None
    if tree is None:
        raise ConfigError([Diagnostic("the file is empty", file=path, code="empty",
                                      expected="a mapping of config keys")])
    if not isinstance(tree, CommentedMap):
        raise ConfigError([Diagnostic(f"the top level is a {type(tree).__name__}, not a mapping of keys",
                                      file=path, line=1, col=1, code="not-a-mapping",
                                      expected="a mapping such as `model: ...`")])
    return Document(path=path, text=text, tree=tree)


def parse(path: str | Path) -> Document:
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(str(p))
        if not stat.S_ISREG(st.st_mode):  # a FIFO, device or socket would block or never end
            raise ConfigError([Diagnostic("is not a regular file", file=str(path), code="not-a-file",
                                          expected="a YAML config file")])
        with open(p, "rb") as f:
            raw = f.read(MAX_BYTES * 4 + 1)  # UTF-8: at most 4 bytes a character
    except FileNotFoundError:
        raise ConfigError([Diagnostic("no such file", file=str(path), code="missing-file")]) from None
    except IsADirectoryError:
        raise ConfigError([Diagnostic("is a directory, not a config file", file=str(path), code="missing-file")]) from None
    except OSError as e:
        raise ConfigError([Diagnostic(f"cannot be read: {e.strerror or e}", file=str(path), code="unreadable")]) from None
    if len(raw) > MAX_BYTES * 4:
        raise _limit(str(path), f"the file is larger than {MAX_BYTES * 4:,} bytes", expected="a config file (a few KiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([Diagnostic(f"not UTF-8 text (byte {e.start})", file=str(path), code="encoding")]) from None
    return parse_text(text, str(path))
