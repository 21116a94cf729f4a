"""Stage 1: read a YAML file safely, keeping line:col for every key so later errors point at the source.

ruamel's round-trip loader keeps positions; it builds only plain maps, lists and scalars (no Python
objects, no tags that construct anything). Values are turned into plain JSON-compatible data by
`plain()`, with one deliberate difference from YAML 1.1 loaders: strings that read as numbers in
scientific notation without a dot (`2e-5`, which PyYAML returns as a string) become floats, because
configs are written for both loaders and users mean a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import ConfigError, Diagnostic

_SCI = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")


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

        line, col = self.pos(keys)
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


def parse_text(text: str, path: str = "<string>") -> Document:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
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
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Diagnostic("no such file", file=str(path), code="missing-file")]) from None
    except IsADirectoryError:
        raise ConfigError([Diagnostic("is a directory, not a config file", file=str(path), code="missing-file")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([Diagnostic(f"not UTF-8 text (byte {e.start})", file=str(path), code="encoding")]) from None
    return parse_text(text, str(path))
