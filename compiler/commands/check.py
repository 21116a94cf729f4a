"""`loftc check cfg.yaml`: a preflight that runs in seconds, without a GPU and without model weights.

It lists every problem it finds, then exits 1 (0 when all is fine):
1. the compiler's own verdict: validation errors and warnings (`pipeline.plan`, the same as `loftc build`);
2. paths: the local model directory and its tokenizer, every local dataset, the template file;
3. the chat template chosen (library/model/file, tagged or prefix-masked, end-of-turn token);
4. a tokenization preview of the first sample of every dataset with its loss mask, made by the runtime's
   own prepare code (`loft.runtime.prepare`: the same normalisation, template rendering, tokenizer and
   mask as `loft prepare`), so what you see is what will be trained on. The tokenizer is loaded here,
   lazily: `loftc build` itself never imports a training library. A tokenizer given by hub id is used from
   the local Hugging Face cache with no request at all; when it is not cached, one request with a short
   timeout asks the hub, and an unreachable hub (or HF_HUB_OFFLINE=1) skips that preview with a one-line
   note instead of the retries transformers would make (`--require-preview` makes a skip a problem);
5. the VRAM/time/cost estimate.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loft.runtime.jsonout import dumps

from ..errors import ConfigError, Diagnostic, Severity

HUB_TIMEOUT_S = 4.0  # the one request that asks the hub for a tokenizer not in the local cache


@dataclass
class Findings:
    """What check found: diagnostics (the same objects `loftc build` reports, so `--json` gives the one error
    shape) and the report's sections."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)  # (title, body)

    def add(self, message: str, code: str, key: str = "", severity: Severity = "error") -> None:
        self.diagnostics.append(Diagnostic(message, key=key, code=code, severity=severity))

    @property
    def errors(self) -> list[str]:
        return [d.render() for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[str]:
        return [d.render() for d in self.diagnostics if d.severity != "error"]

    def section(self, title: str, body: str) -> None:
        self.sections.append((title, body))


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="preflight a config: validation, paths, template, a tokenized sample per dataset, VRAM",
        description="Check a config before running it: everything `loftc build` checks, plus that the paths "
                    "exist, a tokenization preview of one sample per dataset with its loss mask (trained tokens "
                    "between [[ and ]]), and the VRAM estimate. No GPU, no model weights. "
                    "Exit 0 when all is fine, 1 with every problem listed.")
    p.add_argument("config", type=Path, help="the loft or Axolotl YAML config")
    p.add_argument("--dialect", choices=("loft", "axolotl"), default=None, help="override dialect detection")
    p.add_argument("--no-preview", action="store_true", help="skip the tokenization preview (no tokenizer load)")
    p.add_argument("--require-preview", action="store_true",
                   help="a preview that cannot run (hub tokenizer not cached and the hub unreachable or "
                        "HF_HUB_OFFLINE=1) is a problem (exit 1), not a note")
    p.add_argument("--samples", type=int, default=1, help="samples to preview per dataset (default 1)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    found = check(args.config, dialect=args.dialect, preview=not args.no_preview, samples=max(1, args.samples),
                  require_preview=args.require_preview)
    if args.format == "json":
        errors = [d.as_json() for d in found.diagnostics if d.severity == "error"]
        warnings = [d.as_json() for d in found.diagnostics if d.severity != "error"]
        print(dumps({"ok": not errors, "errors": errors, "warnings": warnings,
                     "sections": {t: b for t, b in found.sections}}))
    else:
        for title, body in found.sections:
            print(f"== {title}")
            print(body.rstrip("\n"))
            print()
        for w in found.warnings:
            print(w, file=sys.stderr)
        for e in found.errors:
            print(e, file=sys.stderr)
        n = len(found.errors)
        print(f"{args.config}: " + ("ok" if not n else f"{n} problem(s)") +
              (f", {len(found.warnings)} warning(s)" if found.warnings else ""))
    return 1 if found.errors else 0


def check(path: Path, dialect: str | None = None, preview: bool = True, samples: int = 1,
          require_preview: bool = False) -> Findings:
    """Everything `loftc check` reports, as data (the CLI prints it; tests assert on it)."""
    from ..pipeline import plan as make_plan

    found = Findings()
    try:
        resolved = make_plan(path, dialect=dialect)
    except ConfigError as e:
        found.diagnostics += e.diagnostics
        if not any(d.key == "template" for d in e.diagnostics):
            found.diagnostics += _template_problems(path, dialect)
        return found  # nothing below can run without a valid plan
    found.diagnostics += resolved.warnings
    the_plan = resolved.plan
    root = Path(path).resolve().parent
    _check_paths(the_plan, root, resolved.attachments, found)
    template_text = resolved.attachments.get("chat_template.jinja", b"").decode("utf-8")
    with tempfile.TemporaryDirectory(prefix="loftc-check-") as tmp:
        pseudo = _pseudo_bundle(the_plan, root, resolved.attachments, Path(tmp))
        why = _template_why(pseudo, Path(tmp), found)
        found.section("template", _template_summary(the_plan.get("template") or {}) + why)
        if preview and not any(e.startswith("path:") for e in found.errors):
            _preview(pseudo, Path(tmp), template_text, samples, found, require_preview)
    found.section("estimate", _estimate_text(the_plan.get("estimate")))
    return found


def _template_problems(path: Path, dialect: str | None) -> list[Diagnostic]:
    """The compiler stops before choosing the template when the model or data have errors; a named template
    or template file can still be checked on its own, so that one run lists every problem."""
    from ..pipeline import load
    from ..templates import select_template

    try:
        doc, config, name, _ = load(path, dialect)
    except ConfigError:
        return []  # schema errors: already listed
    spec = str(config.get("template") or "auto")
    if spec == "auto":
        return []  # needs the model, which has errors
    try:
        select_template(spec, model={}, model_dir=None, config_dir=Path(path).resolve().parent,
                        allow_fallback=bool(config.get("template_mask_fallback")))
    except ConfigError as e:
        line, col = doc.pos(("template",)) if name == "loft" else (0, 0)
        return [dataclasses.replace(d, file=str(path), line=line, col=col) for d in e.diagnostics]
    return []


def _attached(rel: str, attachments: dict[str, bytes]) -> bool:
    return rel in attachments or any(k.startswith(rel.rstrip("/") + "/") for k in attachments)


def _check_paths(the_plan: dict[str, Any], root: Path, attachments: dict[str, bytes], found: Findings) -> None:
    """Local paths must exist: either carried into the bundle (attachments) or on disk next to the config."""
    model = the_plan.get("model") or {}
    if model.get("path") and not _attached(model["path"], attachments):
        mdir = (root / model["path"]).resolve()
        if not mdir.is_dir():
            found.add(f"{mdir} does not exist", "path", key="model.base")
    for i, ds in enumerate((the_plan.get("data") or {}).get("datasets", [])):
        if ds.get("source") == "local" and not _attached(ds["path"], attachments):
            p = (root / ds["path"]).resolve()
            if not p.exists():
                found.add(f"{p} does not exist", "path", key=f"data.datasets[{i}].path")


_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")


def _pseudo_bundle(the_plan: dict[str, Any], root: Path, attachments: dict[str, bytes], tmp: Path
                   ) -> dict[str, Any]:
    """What the bundle would hold, minus model weights, in `tmp`; paths not carried point back to disk."""
    for rel, data in attachments.items():
        if rel.endswith(_WEIGHTS):
            continue
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    plan = copy.deepcopy(the_plan)

    def fix(p: Any) -> Any:
        if not isinstance(p, str) or Path(p).is_absolute() or _attached(p, attachments):
            return p
        on_disk = root / p
        return str(on_disk) if on_disk.exists() else p

    model = plan.get("model") or {}
    model["path"] = fix(model.get("path"))
    mcfg = (plan.get("config") or {}).get("model") or {}
    for key in ("tokenizer", "base"):
        mcfg[key] = fix(mcfg.get(key))
    for ds in (plan.get("data") or {}).get("datasets", []):
        if ds.get("source") == "local":
            ds["path"] = fix(ds.get("path"))
    for ds in (plan.get("config") or {}).get("data", {}).get("datasets", []):
        ds["path"] = fix(ds.get("path"))
    return plan


def _template_why(the_plan: dict[str, Any], root: Path, found: Findings) -> str:
    """Why this template was chosen (and the selection's warnings: a guessed family, a model template that
    differs from its library look-alike), by asking select_template again on the pseudo-bundle."""
    from ..templates import select_template

    cfg = the_plan.get("config") or {}
    model = the_plan.get("model") or {}
    mpath = model.get("path")
    model_dir = (root / mpath) if mpath else None
    try:
        choice = select_template(str(cfg.get("template") or "auto"), model=model,
                                 model_dir=model_dir if model_dir is not None and model_dir.is_dir() else None,
                                 config_dir=root, allow_fallback=bool(cfg.get("template_mask_fallback")))
    except ConfigError:
        return ""  # the compiler accepted it with the full model directory; nothing more to say here
    for w in choice.warnings:
        found.add(w, "template", key="template", severity="warning")
    return f"\nwhy: {choice.reason}" if choice.reason else ""


def _template_summary(t: dict[str, Any]) -> str:
    if not t:
        return "no template (the config has errors)"
    mask = ("generation tags: loss on each assistant message and its end-of-turn token"
            if t.get("mask") == "generation" else "prefix rendering (template_mask_fallback: true)")
    return (f"{t.get('name')} ({t.get('source')}), end of turn {t.get('end_of_turn')!r}\n"
            f"mask: {mask}")


def _estimate_text(estimate: Any) -> str:
    if not estimate:
        return "no estimate in the plan"
    from ..estimate.report import to_text

    return str(to_text(estimate))


@contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode (what HF_HUB_OFFLINE=1 sets) for one block: cached files are used as they
    are, with no request and so no retry. transformers asks `huggingface_hub.constants.is_offline_mode()` at
    call time; `datasets` keeps its own copy of the flag."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    ds_config = sys.modules.get("datasets.config")
    ds_saved = getattr(ds_config, "HF_HUB_OFFLINE", None)
    constants.HF_HUB_OFFLINE = True
    if ds_config is not None:
        ds_config.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        if ds_config is not None:
            ds_config.HF_HUB_OFFLINE = ds_saved  # type: ignore[attr-defined]


def _tokenizer_ref(the_plan: dict[str, Any], root: Path) -> tuple[str | None, str | None]:
    """(hub id, revision) of the tokenizer the runtime's `load_tokenizer` would take, or (None, None) when it is
    a local directory (or there is none: load_tokenizer says so)."""
    model, cfg = the_plan.get("model") or {}, (the_plan.get("config") or {}).get("model") or {}
    ref = cfg.get("tokenizer") or model.get("path") or model.get("id") or cfg.get("base")
    if not ref or (root / ref).exists():
        return None, None
    return str(ref), model.get("revision")


def _hub_cached(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for name in ("tokenizer_config.json", "tokenizer.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, name, revision=revision), str):
                return True
        except ValueError:  # not a valid repo id: loading will say what is wrong
            return False
    return False


def _hub_problem(repo_id: str, revision: str | None) -> tuple[str, bool] | None:
    """Ask the hub once, with a short timeout and no retry, whether it serves this tokenizer. None: go ahead and
    load (the hub answered); else (why not, whether that is the config's fault rather than the network's)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if constants.is_offline_mode():
        return (f"it is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 (fetch it once with "
                f"`hf download {repo_id} --include '*.json'`, or unset HF_HUB_OFFLINE)"), False
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "tokenizer_config.json", revision=revision),
                             timeout=HUB_TIMEOUT_S, retry_on_errors=False)
    except GatedRepoError:
        return f"{repo_id} is gated: accept its license on the hub and set HF_TOKEN", False
    except RevisionNotFoundError:
        return f"revision {revision!r} of {repo_id} does not exist on the hub", True
    except RepositoryNotFoundError:
        return f"{repo_id} is not on the hub (or it is private: set HF_TOKEN)", True
    except (EntryNotFoundError, HFValidationError):
        return None  # the hub answered; loading says what is wrong, if anything
    except Exception as e:  # connection refused, DNS, timeout, proxy: the network, not the config
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        return (f"it is not in the local Hugging Face cache and {constants.ENDPOINT} is unreachable "
                f"({type(e).__name__}{': ' + msg if msg else ''}; one try, {HUB_TIMEOUT_S:g} s timeout)"), False
    return None


def _hub_unreachable() -> str | None:
    """None when the hub answers one request within HUB_TIMEOUT_S (any HTTP status), else why not."""
    from huggingface_hub import constants, get_session

    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE=1"
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_TIMEOUT_S)
    except Exception as e:  # connection refused, DNS, timeout, proxy
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        return (f"{constants.ENDPOINT} is unreachable ({type(e).__name__}{': ' + msg if msg else ''}; "
                f"one try, {HUB_TIMEOUT_S:g} s timeout)")
    return None


def _load_tokenizer(bundle: Any, the_plan: dict[str, Any], root: Path, found: Findings,
                    require_preview: bool) -> Any:
    """The runtime's own `load_tokenizer`, bounded: a hub tokenizer comes from the local cache without any
    request, or after one short request that found the hub; else None, with a note (or a problem when the
    config is at fault or `require_preview`)."""
    from loft.runtime.prepare.errors import PrepareError
    from loft.runtime.prepare.stage import load_tokenizer

    repo_id, revision = _tokenizer_ref(the_plan, root)
    if repo_id is None:
        return load_tokenizer(bundle)
    if _hub_cached(repo_id, revision):
        try:
            with _hub_offline():
                return load_tokenizer(bundle)
        except PrepareError:
            pass  # part of it is cached only: ask the hub below
    problem = _hub_problem(repo_id, revision)
    if problem is None:
        return load_tokenizer(bundle)
    why, config_fault = problem
    line = f"tokenization preview skipped: tokenizer {repo_id}: {why}"
    if config_fault or require_preview:
        found.add(why if config_fault else line, "tokenizer" if config_fault else "preview",
                  key="model.tokenizer" if config_fault else "preview")
    else:
        found.add(line, "preview-skipped", severity="note")
    found.section("tokenization preview", f"(skipped: {why})")
    return None


def _preview(the_plan: dict[str, Any], root: Path, template_text: str, samples: int, found: Findings,
             require_preview: bool = False) -> None:
    """The first samples of every dataset through the runtime's token inspector (`loft.runtime.inspect`,
    the same normalisation, template, tokenizer and mask code as `loft prepare`)."""
    try:
        from loft.runtime.inspect import explain, render_terminal
        from loft.runtime.plan import Bundle
        from loft.runtime.prepare.errors import PrepareError
        from loft.runtime.prepare.load import load_options, load_raw, row_dicts
        from loft.runtime.prepare.stage import sources
    except ImportError as e:  # a compiler-only install: say so, it is not a config problem
        found.add(f"tokenization preview skipped ({e}); install loft[runtime] for it", "preview-skipped",
                  severity="note")
        return
    bundle = Bundle(root=root, plan=the_plan)
    try:
        tok = _load_tokenizer(bundle, the_plan, root, found, require_preview)
        if tok is None:
            return
        srcs = sources(bundle)
    except (PrepareError, OSError, ValueError) as e:
        found.add(str(e), "tokenizer/data")
        return
    tpl = the_plan.get("template") or {}
    eot = tpl.get("end_of_turn")
    if eot and len(tok.encode(eot, add_special_tokens=False)) != 1:
        found.add(f"the end-of-turn token {eot!r} is not a single token of this tokenizer "
                  f"(it encodes to {len(tok.encode(eot, add_special_tokens=False))} tokens): the loss "
                  "mask cannot end on it; add it as a special token or pick another template", "template",
                  key="template.end_of_turn")
    seq = (the_plan.get("config") or {}).get("sequence", {})
    body: list[str] = []
    for src in srcs:
        name = src.spec.name
        args = (src.plan["path"], src.local, src.entry.get("split") or "train", src.plan.get("revision"))
        offline_why = None if src.local else _hub_unreachable()
        options = load_options(src.entry)
        try:
            if offline_why is None:
                raw = load_raw(*args, **options)
            else:  # the hub cannot answer: the datasets cache or nothing, with no request and no retry
                importlib.import_module("datasets.config")  # so that _hub_offline sets its copy of the flag too
                with _hub_offline():
                    raw = load_raw(*args, **options)
        except (PrepareError, OSError, ValueError) as e:
            if offline_why is None:
                found.add(str(e), "data", key=f"data.datasets.{name}")
            else:
                line = (f"tokenization preview skipped: dataset {src.plan['path']}: it is not in the local cache "
                        f"and {offline_why}")
                found.add(line, "preview" if require_preview else "preview-skipped",
                          key="preview" if require_preview else "", severity="error" if require_preview else "note")
            continue
        rows = row_dicts(raw[: min(len(raw), samples)]) if len(raw) else []
        if not rows:
            found.add("the dataset is empty", "data", key=f"data.datasets.{name}")
            continue
        try:
            views = explain(rows, tok, template_text, {**src.entry, "name": name}, str(tpl.get("mask") or "generation"),
                            eot, bool(seq.get("train_on_incomplete_assistant", False)),
                            ids=[f"{name}: row {i}" for i in range(len(rows))])
        except Exception as e:  # the template raised on a sample (e.g. roles that do not alternate)
            found.add(f"{type(e).__name__}: {e}", "data", key=f"data.datasets.{name}")
            continue
        for v in views:
            if v.error:
                found.add(f"{v.sample_id}: {v.error}", "data", key=f"data.datasets.{name}")
            elif v.trained_count == 0:
                found.add(f"{v.sample_id}: no token is trained (empty loss mask)", "data",
                          key=f"data.datasets.{name}")
        body.append(render_terminal(views, color=False, show_raw=False))
    found.section("tokenization preview", "\n\n".join(body) if body else "(nothing to show)")


__all__ = ["Findings", "check"]
