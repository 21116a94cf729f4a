"""Write a directory all at once: build it beside its destination, then rename it into place.

A failure half way (a full disk, a bad input found late, Ctrl-C) leaves the previous output as it was and
no partial one: the staging directory is removed, and a full disk becomes one clear line.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .train.model import StageError


@contextmanager
def staged_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``dest``, on any error it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StageError(f"no space left on the device while writing {dest} (nothing was written; "
                             f"free some space and run again)") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
