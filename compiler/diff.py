"""`loftc diff`: what changed between two compiled plans, for a reviewer.

Plans are flattened to dotted key paths (lists of named items, like datasets, are keyed by name so a
reordering is not a change) and compared leaf by leaf. Changes are grouped by the plan section they
live in; the estimate's headline numbers (peak VRAM, hours, cost) get a summary with deltas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

GROUPS = ("config", "source", "model", "data", "template", "derived", "launch", "estimate", "versions", "sweep",
          "warnings")
# `source.config` repeats the config as written; the resolved `config` section already shows its changes.
# `estimate.cost.options` is the catalog's price list; the cost headline and `cheapest` carry the change.
_SKIP = {"source.config", "estimate.cost.options"}


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Change:
    group: str
    key: str
    old: Any
    new: Any

    @property
    def kind(self) -> str:
        return "added" if self.old is MISSING else "removed" if self.new is MISSING else "changed"

    def old_text(self) -> str:
        return _fmt(self.old)

    def new_text(self) -> str:
        return _fmt(self.new)


@dataclass(frozen=True)
class Headline:
    """One estimate figure before and after, e.g. peak VRAM in GiB."""

    label: str
    unit: str
    old: float | None
    new: float | None

    def text(self) -> str:
        def mag(v: float) -> str:
            floor = 0.01 if self.unit == "$" else 1.0
            return f"{v:,.2f}" if abs(v) >= floor or v == 0 else f"{v:.2g}"

        def num(v: float | None) -> str:
            if v is None:
                return "—"
            return f"${mag(v)}" if self.unit == "$" else f"{mag(v)} {self.unit}"

        out = f"{num(self.old)} → {num(self.new)}"
        if self.old is not None and self.new is not None:
            d = self.new - self.old
            sign = "+" if d >= 0 else "-"
            delta = f"{sign}${mag(abs(d))}" if self.unit == "$" else f"{sign}{mag(abs(d))} {self.unit}"
            pct = f", {sign}{abs(d) / self.old * 100:.1f}%" if self.old else ""
            out += f" ({delta}{pct})"
        return out


def diff_plans(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    """Every leaf that differs between plan `a` and plan `b`, grouped by section, in a stable order."""
    fa, fb = dict(_flatten(a)), dict(_flatten(b))
    changes = []
    for key in sorted(set(fa) | set(fb), key=lambda k: (_group_rank(k), k)):
        old, new = fa.get(key, MISSING), fb.get(key, MISSING)
        if old != new or type(old) is not type(new):
            changes.append(Change(_group(key), key, old, new))
    return changes


def headlines(a: dict[str, Any], b: dict[str, Any]) -> list[Headline]:
    """Peak VRAM, hours and cost of each plan's estimate, when both or either has them."""
    out = []
    for label, unit, paths in (
        ("peak VRAM per GPU", "GiB", (("vram", "total_gib"), ("vram", "peak_gib"))),
        ("training time", "h", (("time", "hours"), ("time", "total_hours"), ("time", "wall_hours"))),
        ("cost", "$", (("cost", "usd"), ("cost", "total_usd"))),
    ):
        old, new = _pick(a.get("estimate"), paths), _pick(b.get("estimate"), paths)
        if old is not None or new is not None:
            out.append(Headline(label, unit, old, new))
    return out


def format_text(changes: list[Change], heads: list[Headline], a_name: str = "a", b_name: str = "b") -> str:
    if not changes:
        return f"no differences between {a_name} and {b_name}\n"
    lines = [f"--- {a_name}", f"+++ {b_name}"]
    changed_heads = [h for h in heads if h.old != h.new]
    if changed_heads:
        lines.append("estimate summary")
        lines.extend(f"  {h.label}: {h.text()}" for h in changed_heads)
    for group, items in _by_group(changes):
        lines.append(f"{group} ({len(items)})")
        for c in items:
            key = _local_key(c)
            if c.kind == "added":
                lines.append(f"  + {key}: {c.new_text()}")
            elif c.kind == "removed":
                lines.append(f"  - {key}: {c.old_text()}")
            else:
                lines.append(f"  ~ {key}: {c.old_text()} → {c.new_text()}")
    return "\n".join(lines) + "\n"


def format_md(changes: list[Change], heads: list[Headline], a_name: str = "a", b_name: str = "b") -> str:
    title = f"### loft plan diff: `{a_name}` → `{b_name}`"
    if not changes:
        return f"{title}\n\nNo differences.\n"
    out = [title, "", f"{len(changes)} change(s) in {len(_by_group(changes))} section(s)."]
    changed_heads = [h for h in heads if h.old != h.new]
    if changed_heads:
        out += ["", "| estimate | before → after |", "|---|---|"]
        out += [f"| {h.label} | {h.text()} |" for h in changed_heads]
    for group, items in _by_group(changes):
        out += ["", f"<details open><summary><b>{group}</b> ({len(items)})</summary>", "",
                "| key | before | after |", "|---|---|---|"]
        out += [f"| `{_local_key(c)}` | {_md(c.old)} | {_md(c.new)} |" for c in items]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- helpers


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if prefix in _SKIP:
        return
    if isinstance(node, dict) and node:
        for k in sorted(node):
            yield from _flatten(node[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        names = [x.get("name") for x in node]
        by_name = all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        trials = [x.get("trial") for x in node]
        by_trial = all(isinstance(t, int) for t in trials) and len(set(trials)) == len(trials)
        if not (by_name or by_trial):
            yield prefix, node  # no identity to pair items by: compare the list as one value
            return
        for i, x in enumerate(node):
            yield from _flatten(x, f"{prefix}[{names[i] if by_name else trials[i]}]")
    else:
        yield prefix, node


def _group(key: str) -> str:
    top = key.split(".", 1)[0].split("[", 1)[0]
    return top if top in GROUPS else "other"


def _group_rank(key: str) -> int:
    g = _group(key)
    return GROUPS.index(g) if g in GROUPS else len(GROUPS)


def _by_group(changes: list[Change]) -> list[tuple[str, list[Change]]]:
    out: dict[str, list[Change]] = {}
    for c in changes:
        out.setdefault(c.group, []).append(c)
    return list(out.items())


def _local_key(c: Change) -> str:
    """The key without its group prefix when the group is a plan section (config.training.x → training.x)."""
    if c.group != "other" and c.key.startswith(c.group + "."):
        return c.key[len(c.group) + 1:]
    return c.key


def _pick(estimate: Any, paths: tuple[tuple[str, str], ...]) -> float | None:
    if not isinstance(estimate, dict):
        return None
    for section, key in paths:
        value = (estimate.get(section) or {}).get(key) if isinstance(estimate.get(section), dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _fmt(value: Any, limit: int = 120) -> str:
    if value is MISSING:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(value: Any) -> str:
    if value is MISSING:
        return "_(absent)_"
    text = _fmt(value).replace("|", "\\|").replace("`", "'")
    return f"`{text}`"
