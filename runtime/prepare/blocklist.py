"""`data.blocklist`: sample ids prepare leaves out (`dataset:index`, what `loft spikes --blocklist` prints).

The compiler carries the file into the bundle and records its sha256 (plan["data"]["blocklist"]); prepare
drops the listed source rows before the subset / eval split / blend draw (so every chunk of a split sample
goes), counts them per dataset in prepare_report, and warns about ids that matched no sample."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from loft.runtime.plan import Bundle
from loft.runtime.prepare.errors import PrepareError

ID = re.compile(r"^(?P<dataset>[^\s:]+):(?P<index>\d+)(?::chunk\d+)?$")


@dataclass
class Blocklist:
    file: str | None = None
    sha256: str | None = None
    ids: dict[str, set[int]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        return sum(len(v) for v in self.ids.values())

    def drop(self, dataset: str, indices: np.ndarray) -> np.ndarray:
        """`indices` without the blocked ones (counted)."""
        blocked = self.ids.get(dataset)
        if not blocked:
            self.dropped.setdefault(dataset, 0)
            return indices
        keep = ~np.isin(indices, np.fromiter(blocked, dtype=np.int64, count=len(blocked)))
        self.dropped[dataset] = int((~keep).sum())
        return indices[keep]

    def report(self, datasets: list[str]) -> dict[str, Any] | None:
        if self.file is None:
            return None
        matched = sum(self.dropped.values())
        return {"file": self.file, "sha256": self.sha256, "entries": self.entries, "dropped": dict(self.dropped),
                "unmatched": self.entries - matched,
                "unknown_datasets": sorted(set(self.ids) - set(datasets))}


def parse(text: str, where: str) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        m = ID.match(item)
        if m is None:
            raise PrepareError(f"{where}:{n}: {item!r} is not a sample id (expected dataset:index)")
        ids.setdefault(m["dataset"], set()).add(int(m["index"]))
    return ids


def load(bundle: Bundle, warnings: list[str]) -> Blocklist:
    """The plan's blocklist (empty when the plan has none). A file that changed since `loftc build` is
    used as it is now, with a warning, as prepare does for data files."""
    info = (bundle.plan.get("data") or {}).get("blocklist")
    if not info:
        return Blocklist()
    path = bundle.path(info["path"])
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PrepareError(f"data.blocklist: cannot read {path}: {e.strerror or e}") from None
    sha = hashlib.sha256(raw).hexdigest()
    if info.get("sha256") and sha != info["sha256"]:
        warnings.append(f"data.blocklist: {path.name} changed since `loftc build` (sha256 differs from plan.lock); "
                        "used as it is now")
    return Blocklist(file=info["path"], sha256=sha, ids=parse(raw.decode("utf-8", errors="replace"), str(path)))
