"""The model card (``README.md``) every export directory and hub push carries.

Metadata is Hugging Face model-card YAML built by ``huggingface_hub.ModelCardData`` (base_model,
library_name, datasets that are hub ids, license when the base's own card or config names one, tags); the
body holds what a reviewer needs to trust the weights: the plan's hyperparameters, every dataset with its
sha256, the loss curve (``loss.png`` beside the card), eval results (base vs fine-tuned, lm-eval), the loft
version and the sha256 of the plan.lock that produced it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .markdown import fence, table

if TYPE_CHECKING:
    from .plan import Bundle

LOSS_PNG = "loss.png"


def plan_sha256(bundle: Bundle) -> str:
    return hashlib.sha256((bundle.root / "plan.lock").read_bytes()).hexdigest()


def runtime_version() -> str:
    try:
        from importlib.metadata import version

        return version("loft")
    except Exception:  # the bundle's own copy of the runtime, not installed
        return "unknown"


def base_license(bundle: Bundle) -> str | None:
    """The license the base model's own card declares (local models only; nothing is downloaded)."""
    from .train.model import model_source

    src = Path(model_source(bundle)[0])
    card = src / "README.md"
    if not card.is_file():
        return None
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(str(card)).data.to_dict().get("license")
    except Exception:  # a README without (valid) metadata: no license known
        return None


def hyperparameters(bundle: Bundle) -> list[list[Any]]:
    cfg, derived = bundle.config, bundle.derived
    a, t, s = cfg.get("adapter") or {}, cfg.get("training") or {}, cfg.get("sequence") or {}
    rows: list[list[Any]] = [["adapter", a.get("type")]]
    if a.get("type") in ("lora", "qlora"):
        rows += [["lora r / alpha / dropout", f"{a.get('r')} / {a.get('alpha')} / {a.get('dropout')}"],
                 ["target modules", a.get("target_modules")], ["rslora / dora", f"{a.get('rslora')} / {a.get('dora')}"]]
    rows += [["learning rate", t.get("learning_rate")], ["scheduler", t.get("lr_scheduler")],
             ["warmup steps", derived.get("warmup_steps")], ["epochs", t.get("epochs")],
             ["max steps", t.get("max_steps")], ["global batch size", derived.get("global_batch_size")],
             ["micro batch × accumulation", f"{derived.get('micro_batch_size')} × "
                                            f"{derived.get('gradient_accumulation_steps')}"],
             ["optimizer", t.get("optimizer")], ["weight decay", t.get("weight_decay")],
             ["max grad norm", t.get("max_grad_norm")], ["precision", t.get("precision")],
             ["max length", s.get("max_length")], ["packing", s.get("packing")], ["seed", t.get("seed")]]
    return [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in rows]


def dataset_rows(bundle: Bundle) -> list[list[Any]]:
    return [[d.get("name"), d.get("source"), d.get("path"), d.get("revision"), d.get("rows"), d.get("sha256")]
            for d in (bundle.plan.get("data") or {}).get("datasets") or []]


def loss_curve(bundle: Bundle, dest: Path) -> bool:
    """``loss.png`` from metrics.jsonl (training loss, and eval loss where logged); False if no metrics."""
    from .train.metrics import read_jsonl

    records = read_jsonl(bundle.out / "metrics.jsonl")
    train = [(r["step"], r["loss"]) for r in records if "loss" in r and "step" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r and "step" in r]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], label="train loss", color="tab:blue")
    if evals:
        ax.plot([s for s, _ in evals], [v for _, v in evals], label="eval loss", color="tab:orange", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dest, metadata={"Software": None})
    plt.close(fig)
    return True


def eval_lines(bundle: Bundle) -> list[str]:
    path = bundle.out / "eval" / "report.json"
    if not path.is_file():
        return ["No eval report (run `loft eval RUN` before exporting to include one).", ""]
    from .eval_report import lm_eval_lines, loss_lines

    report = json.loads(path.read_text(encoding="utf-8"))
    return [*loss_lines(report), *[ln.replace("## ", "### ", 1) for ln in lm_eval_lines(report.get("lm_eval"))]]


def card(bundle: Bundle, fmt: str, dest: Path, extra_tags: tuple[str, ...] = ()) -> str:
    """The README.md text for an export of ``bundle`` in ``fmt``; writes loss.png into ``dest``."""
    from huggingface_hub import ModelCardData

    m = bundle.plan.get("model") or {}
    base = m.get("id") or bundle.config["model"].get("base")
    adapter = (bundle.config.get("adapter") or {}).get("type", "none")
    merged = fmt != "adapter"
    hub_datasets = [d["path"] for d in (bundle.plan.get("data") or {}).get("datasets") or []
                    if d.get("source") == "hub" and d.get("path")]
    tags = ["loft", "fine-tuned", "lora" if adapter in ("lora", "qlora") else "full-fine-tune", *extra_tags]
    data = ModelCardData(base_model=base if m.get("id") else None, library_name="transformers" if merged else "peft",
                         datasets=hub_datasets or None, license=base_license(bundle), tags=tags,
                         pipeline_tag="text-generation")
    name = bundle.plan.get("name") or "model"
    sha = plan_sha256(bundle)
    lines = ["---", data.to_yaml(), "---", "", f"# {name}", "",
             f"Fine-tuned from `{base}` ({adapter}{', merged into the base weights' if merged and adapter != 'none' else ''})"
             f" with [loft](https://pypi.org/project/loft/); this directory holds the `{fmt}` export.", "",
             "## Training", "", *table(["hyperparameter", "value"], hyperparameters(bundle)), "",
             "## Data", "", *table(["dataset", "source", "path", "revision", "rows", "sha256"], dataset_rows(bundle)),
             ""]
    if loss_curve(bundle, dest / LOSS_PNG):
        lines += [f"![loss curve]({LOSS_PNG})", ""]
    lines += ["## Evaluation", "", *eval_lines(bundle),
              "## Provenance", "", *table(["", ""], [["loft version (plan)", bundle.plan.get("loft_version")],
                                                     ["loft version (runtime)", runtime_version()],
                                                     ["plan.lock sha256", sha],
                                                     ["template", (bundle.plan.get("template") or {}).get("name")]]),
              "", "Reproduce: build the same config with `loftc build` (the plan's sha256 must match), then",
              "", *fence("bash run/launch.sh", "sh"), ""]
    return "\n".join(lines)


def write_card(bundle: Bundle, fmt: str, dest: Path, extra_tags: tuple[str, ...] = ()) -> None:
    (dest / "README.md").write_text(card(bundle, fmt, dest, extra_tags), encoding="utf-8")
