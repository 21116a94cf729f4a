"""Stage 5, resolve: a valid config becomes the plan — every decision written down, nothing left implicit.

One sub-stage per concern, each a module of plain functions over the shared `Context`; the order they
run in is written out in `compiler/pipeline.py` (`resolve`):

    defaults  schema defaults, run name, output_dir          (defaults.py)
    runnable  refuse what the runtime cannot run on the target (runnable.py)
    model     model facts, config overrides, tokenizer dir    (model.py)
    data      data files: hashes, row counts, bundling        (data.py)
    template  the chat template and its mask mode             (template.py)
    batch     world size, batch maths, steps, warmup          (batch.py)
    source    the source config: file name, sha256, content   (source.py)
    launch    launcher, nodes, GPUs per node, config files    (launch.py)
    versions  the package versions the bundle installs        (versions.py)

The sweep's trials are resolved after the run's estimate, each through these same sub-stages and the
estimator (`pipeline._sweep`, compiler/sweep.py).

Paths in the plan are relative to the bundle directory (or to the config's directory when there is no
bundle). Small local data and model files are carried into the bundle as attachments so it is relocatable.
"""

from __future__ import annotations

from .context import Context
from .versions import LOFT_VERSION, PLAN_FORMAT

__all__ = ["LOFT_VERSION", "PLAN_FORMAT", "Context"]
