"""Stage 2: decide which dialect a config is written in, and say why.

loft configs carry a top-level `loft:` marker. Axolotl configs have no marker, so they are recognised by
their own top-level keys (`base_model`, `datasets`, `micro_batch_size`, ...: the key table of
`axolotl/keys.json`, less the section names loft also uses at the top level). A file that is neither is
an error that tells the user how to mark it, because guessing wrong would give confusing errors later.
"""

from __future__ import annotations

from ..errors import ConfigError, Diagnostic
from ..parse import Document

DIALECTS = ("loft", "axolotl")

_LOFT_ONLY = ("model", "data", "training", "sequence", "target", "export", "eval", "tracking")
# Top-level names both dialects use the same way: they tell nothing about the dialect.
_SHARED = ("output_dir", "deepspeed", "name", "template", "sweep")


def detect(doc: Document, override: str | None = None) -> tuple[str, str]:
    """Return (dialect, reason). `override` ("loft"/"axolotl", from `--dialect`) wins."""
    if override is not None:
        if override not in DIALECTS:
            raise ConfigError([Diagnostic(f"unknown dialect {override!r}", file=doc.path, code="dialect",
                                          expected=" | ".join(DIALECTS))])
        return override, f"--dialect {override} was given on the command line"
    keys = [str(k) for k in doc.tree]
    if "loft" in keys:
        line, _ = doc.pos(["loft"])
        return "loft", f"the top-level `loft:` marker is present (line {line})"
    from .axolotl.keys import kind_of

    found = [k for k in keys if k not in _LOFT_ONLY and k not in _SHARED and kind_of(k) is not None]
    loft_like = [k for k in keys if k in _LOFT_ONLY]
    if found and len(found) >= len(loft_like):
        shown = ", ".join(f"`{k}`" for k in found[:4]) + (", ..." if len(found) > 4 else "")
        return "axolotl", f"no `loft:` marker, and {len(found)} top-level Axolotl key(s) are present ({shown})"
    if loft_like:
        hint = ("add `loft: 1` as the first line (this looks like a loft config with top-level "
                + ", ".join(f"`{k}`" for k in loft_like[:3]) + "), or pass --dialect loft")
    else:
        hint = ("add `loft: 1` as the first line for a loft config, or pass --dialect axolotl for an "
                "Axolotl config (none of its usual keys such as `base_model` or `datasets` were found)")
    raise ConfigError([Diagnostic("cannot tell which dialect this config is written in", file=doc.path,
                                  line=1, col=1, code="dialect", expected="a loft or an Axolotl config",
                                  hint=hint)])
