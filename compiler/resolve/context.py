"""What every resolve sub-stage shares: the config being resolved, where its files are, and what the
sub-stages collected so far (bundle attachments, warnings, errors)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Diagnostic
from ..parse import Document
from ..validate import Locator, load_schema
from .defaults import fill_defaults
from .files import MAX_DIR_FILES, MODEL_BUNDLE_LIMIT, dir_files, is_hub_id


@dataclass
class Context:
    doc: Document
    dialect: str
    config_path: Path  # absolute
    config_dir: Path
    base_dir: Path  # plan paths are relative to this: the bundle, or the config's directory
    where: Locator
    given: dict[str, Any]  # the validated config as given
    cfg: dict[str, Any]  # the config being resolved (every schema key present)
    attachments: dict[str, bytes] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)

    @classmethod
    def create(cls, doc: Document, config: dict[str, Any], dialect: str, out_dir: str | Path | None) -> Context:
        config_path = Path(os.path.abspath(doc.path))
        return cls(doc=doc, dialect=dialect, config_path=config_path, config_dir=config_path.parent,
                   base_dir=Path(os.path.abspath(out_dir)) if out_dir is not None else config_path.parent,
                   where=Locator.for_config(doc if dialect == "loft" else None, doc.path),
                   given=config, cfg=fill_defaults(config, load_schema()))

    def rel(self, p: Path) -> str:
        """Path relative to the bundle (or config) directory, with forward slashes."""
        return Path(os.path.relpath(p, self.base_dir)).as_posix()

    def warn(self, code: str, keys: tuple[Any, ...], message: str, **kw: Any) -> None:
        self.warnings.append(self.where.diag(keys, message, code, severity="warning", **kw))

    def error(self, code: str, keys: tuple[Any, ...], message: str, **kw: Any) -> None:
        self.errors.append(self.where.diag(keys, message, code, **kw))

    def check(self) -> None:
        """Stop with every error collected so far (later sub-stages need what the earlier ones found)."""
        if self.errors:
            raise ConfigError(self.errors)

    def adopt(self, e: ConfigError, key: str) -> None:
        """Collect a sub-module's errors, pointed at the config key they belong to when they have no position."""
        line, col = self.where.doc.pos((key,)) if self.where.doc is not None else (0, 0)
        self.errors += [d if d.line else replace(d, file=d.file or self.where.file, line=line, col=col)
                        for d in e.diagnostics]

    def local(self, spec: str) -> Path | None:
        """The local path a spec names, or None when it is a hub id."""
        if spec.startswith(("/", "./", "../", "~")) or spec in (".", ".."):
            return Path(os.path.abspath(self.config_dir / os.path.expanduser(spec)))
        p = Path(os.path.abspath(self.config_dir / spec))
        # `models/x` where ./models/ exists is a local path with a typo, not a hub org called "models"
        if p.exists() or not is_hub_id(spec) or (self.config_dir / spec.split("/", 1)[0]).is_dir():
            return p
        return None

    def roots(self) -> list[Path]:
        """Folders local files may come from: the config's own, plus `data.allow_paths` (relative to it) and
        LOFT_ALLOW_PATHS (os.pathsep-separated; the way to widen them for an Axolotl config)."""
        extra = list((self.cfg.get("data") or {}).get("allow_paths") or [])
        extra += [p for p in os.environ.get("LOFT_ALLOW_PATHS", "").split(os.pathsep) if p]
        return [Path(os.path.realpath(self.config_dir))] + [
            Path(os.path.realpath(self.config_dir / os.path.expanduser(p))) for p in extra]

    def inside_roots(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == r or r in real.parents for r in self.roots())

    def allowed(self, path: Path, keys: tuple[Any, ...], what: str) -> bool:
        """A local path may enter the bundle: under an allowed root once symlinks are resolved, and a
        regular file or directory (a device or FIFO would hang the hash or read forever). Errors name the key."""
        if not self.inside_roots(path):
            real = os.path.realpath(path)
            shown = f"{path} (-> {real})" if str(path) != real else str(path)
            self.error("outside-root", keys, f"{what} {shown} is outside the config's folder",
                       expected=f"a path inside {self.config_dir}",
                       hint="add its folder to data.allow_paths (or LOFT_ALLOW_PATHS) to read it from there on purpose")
            return False
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return True  # missing: the caller says so with its own message
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            self.error("not-a-file", keys, f"{what} {path} is not a regular file or directory (a device, FIFO "
                       "or socket)", expected="a file or a directory")
            return False
        return True

    def listing(self, path: Path, keys: tuple[Any, ...], what: str) -> list[tuple[str, Path]] | None:
        """`dir_files`, refusing symlinks that leave the allowed roots, special files and huge trees."""
        files = dir_files(path, self.base_dir, limit=MAX_DIR_FILES + 1)
        if len(files) > MAX_DIR_FILES:
            self.error("too-large", keys, f"{what} {path} holds more than {MAX_DIR_FILES:,} files",
                       expected="a dataset or model directory, not a whole tree")
            return None
        bad = [rel for rel, p in files if p.is_symlink() and not self.inside_roots(p)]
        if bad:
            self.error("outside-root", keys, f"{what} {path} has symlinks that leave the config's folder: "
                       + ", ".join(bad[:3]), expected="files inside the allowed roots",
                       hint="copy the files in, or add their folder to data.allow_paths")
            return None
        return files

    def carry_dir(self, path: Path, name: str, keys: tuple[Any, ...]) -> str:
        """Bundle a small local directory under `name/`; otherwise refer to it by a relative path."""
        files = self.listing(path, keys, "directory")
        if files is None:
            return self.rel(path)
        size = sum(p.stat().st_size for _, p in files)
        if size <= MODEL_BUNDLE_LIMIT:
            for rel, p in files:
                self.attachments[f"{name}/{rel}"] = p.read_bytes()
            return name
        self.warn("not-bundled", keys, f"{path.name}/ ({size / 2**20:.0f} MiB) is larger than "
                  f"{MODEL_BUNDLE_LIMIT // 2**20} MiB and is not copied into the bundle: the bundle refers to it "
                  "by a relative path and is not relocatable")
        return self.rel(path)
