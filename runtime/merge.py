"""The merge stage: fold the LoRA adapter into the base weights (PEFT ``merge_and_unload``) and save a
standalone model in ``<out>/merged`` with the tokenizer and the bundle's chat template. A full fine-tune is
saved as is, so ``merged/`` is always the model to serve.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .train.model import is_adapter_dir, load_tokenizer

if TYPE_CHECKING:
    from .plan import Bundle


def run(bundle: Bundle) -> int:
    if not (bundle.config.get("export") or {}).get("merge", True):
        print("[loft] merge is off in this plan (export.merge: false)", file=sys.stderr)
        return 0
    from .train.load_trained import nothing_to_do

    if nothing_to_do(bundle, "merge"):
        return 0
    from .train.load_trained import final_dir, load_trained

    adapter = is_adapter_dir(final_dir(bundle))
    model = load_trained(bundle, merge=True)
    dest = bundle.out / "merged"
    tmp = bundle.out / ".merged.tmp"
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    load_tokenizer(bundle).save_pretrained(str(tmp))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    what = "LoRA adapter merged into the base weights" if adapter else "full fine-tune (no adapter to merge)"
    print(f"[loft] {what}: {dest}", file=sys.stderr)
    return 0
