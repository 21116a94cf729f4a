"""Chat templates: the tagged library, choosing one for a run, and checking a template file.

Training needs to know which tokens are the assistant's. transformers computes that from
`{% generation %}…{% endgeneration %}` blocks (`return_assistant_tokens_mask=True`), but most vendors'
templates have none, so loft ships tagged copies (`chat_templates/<family>.jinja`) that render exactly what
the vendor's template renders. `select_template` turns the config's `template:` into a `TemplateChoice`;
`check_template` reports whether a file is tagged, well formed, and at parity with a reference.

Pure: jinja2 only, no training library (see template_env.py for the rendering rules).
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError, Diagnostic, did_you_mean
from .resources import data_dir
from .template_env import (
    GENERATION_TAG_RE,
    TemplateCompileError,
    TemplateLimitError,
    TemplateSecurityError,
    compile_template,
    has_generation_tags,
    render,
    render_spans,
    strip_generation_tags,
)
from .template_probes import (
    DEFAULT_SPECIALS,
    attempt,
    detect_end_of_turn,
    parity_failures,
    sentinel_conversations,
    span_problems,
)
from .template_tag import TagResult, tag_template

Source = Literal["library", "file", "model"]
Mask = Literal["generation", "prefix"]

FALLBACK_HINT = ("add {% generation %}…{% endgeneration %} around each assistant message's content and its "
                 "end-of-turn token (`loftc templates tag FILE` does it where it can prove parity), pick a "
                 "library template (`loftc templates list`), or set `template_mask_fallback: true` to mask by "
                 "rendering message prefixes instead")


@dataclass(frozen=True)
class TemplateChoice:
    name: str
    source: Source
    text: str
    end_of_turn: str | None
    tagged: bool
    mask: Mask
    reason: str = ""  # why this template: shown by `loftc check` and in plan.md
    warnings: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- library

def library_dir() -> Path:
    """The folder of the chat template library (chat_templates/, installed as loft.chat_templates)."""
    return data_dir("chat_templates")


@functools.lru_cache(maxsize=1)
def library_index() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((library_dir() / "index.json").read_text(encoding="utf-8"))
    return data


def families() -> dict[str, dict[str, Any]]:
    fams: dict[str, dict[str, Any]] = library_index()["families"]
    return fams


def library_text(name: str) -> str:
    return (library_dir() / families()[name]["file"]).read_text(encoding="utf-8")


def _aliases() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, fam in families().items():
        out[name.lower()] = name
        for a in fam.get("aliases", []):
            out.setdefault(str(a).lower(), name)
    return out


def resolve_name(name: str) -> str | None:
    """Library family for a family name or alias (Axolotl's chat_template names included), else None."""
    return _aliases().get(name.strip().lower())


def family_specials(name: str) -> dict[str, str]:
    """bos/eos values to render a family's template with (empty string where the tokenizer sets none)."""
    fam = families()[name]
    return {"bos_token": fam.get("bos_token") or "", "eos_token": fam.get("eos_token") or ""}


def fingerprint(text: str) -> str:
    """Whitespace-insensitive hash of a template text, to recognise vendor templates exactly."""
    return hashlib.sha256(re.sub(r"\s+", " ", text).strip().encode("utf-8")).hexdigest()


def recognise_family(text: str) -> str | None:
    """The library family a (vendor) template text belongs to: by fingerprint, else by distinctive markers.
    A marker match is a guess; `select_template` confirms it by rendering before trusting it."""
    fp = fingerprint(text)
    fams = families()
    for name, fam in fams.items():
        if fp in fam.get("fingerprints", []) or fp == fingerprint(strip_generation_tags(library_text(name))):
            return name
    for name in library_index()["recognition_order"]:
        markers = fams[name].get("markers", {})
        if all(m in text for m in markers.get("all", [])) and not any(m in text for m in markers.get("none", [])):
            return name
    return None


def family_for_hub_id(hub_id: str) -> str | None:
    """Library family whose model patterns match a hub id (most specific pattern wins)."""
    best: tuple[int, str] | None = None
    for name, fam in families().items():
        for pat in fam.get("models", []):
            if fnmatch.fnmatch(hub_id.lower(), str(pat).lower()):
                score = len(str(pat).split("*")[0])
                if best is None or score > best[0]:
                    best = (score, name)
    return best[1] if best else None


# ------------------------------------------------------------------------------------------ model files

def read_model_template(model_dir: Path) -> str | None:
    """The chat template a local model ships: chat_template.jinja (transformers ≥ 4.43 saves it there), else
    tokenizer_config.json's `chat_template` (a string, or a list of named templates: 'default' wins)."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = model_dir / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    try:
        tpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(tpl, str):
        return tpl
    if isinstance(tpl, list):
        named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
        chosen = named.get("default") or next(iter(named.values()), None)
        return chosen if isinstance(chosen, str) else None
    return None


class TemplateUnavailable(Exception):
    """The hub model's own template files could not be read (offline and not in the cache)."""


def fetch_model_template(hub_id: str, revision: str | None) -> str | None:
    """A hub model's own chat template at `revision`: chat_template.jinja, else tokenizer_config.json's
    `chat_template`, each fetched alone with huggingface_hub (the Hugging Face cache keeps it, so a
    second build is offline). None when the model ships neither; TemplateUnavailable when the files
    cannot be read (offline with an empty cache, network error, unknown repo or revision)."""
    import tempfile

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    got: dict[str, Path] = {}
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        try:
            got[name] = Path(hf_hub_download(hub_id, name, revision=revision, etag_timeout=5))
        except LocalEntryNotFoundError as e:  # offline and not cached (a subclass of EntryNotFoundError)
            raise TemplateUnavailable(f"offline and not in the Hugging Face cache: {hub_id}/{name}") from e
        except EntryNotFoundError:  # the repo has no such file
            continue
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise TemplateUnavailable(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        if name == "chat_template.jinja":
            break
    if not got:
        return None
    with tempfile.TemporaryDirectory() as tmp:  # read_model_template's own rules, on the fetched files
        for name, path in got.items():
            (Path(tmp) / name).write_bytes(path.read_bytes())
        return read_model_template(Path(tmp))


def read_model_specials(model_dir: Path | None) -> dict[str, str]:
    """bos/eos strings from a local tokenizer_config.json (for rendering probes as the tokenizer would)."""
    out: dict[str, str] = {}
    if model_dir is None:
        return out
    cfg = model_dir / "tokenizer_config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    for key in ("bos_token", "eos_token"):
        v = data.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            out[key] = v
    return out


# ------------------------------------------------------------------------------------------- selection

def _error(message: str, hint: str = "", code: str = "template", expected: str = "") -> ConfigError:
    return ConfigError([Diagnostic(message, key="template", hint=hint, code=code, expected=expected)])


def _check_renders(text: str, origin: str) -> None:
    """Compile and render one probe, so unsafe or broken templates fail at build time, not mid-training."""
    try:
        compile_template(text)
        outcomes = [attempt(text, conv, agp) for conv in sentinel_conversations()[:3] for agp in (False, True)]
    except (TemplateCompileError, TemplateSecurityError, TemplateLimitError) as e:
        raise ConfigError([Diagnostic(f"{origin}: {d.message}", key="template", line=d.line, hint=d.hint,
                                      code=d.code) for d in e.diagnostics]) from None
    if all(o.error is not None for o in outcomes):  # e.g. raise_exception everywhere: prepare would fail
        raise _error(f"{origin}: the template fails on every probe conversation (user/assistant, with a "
                     f"system message, several turns): {outcomes[0].error}", code="template-raises",
                     expected="a template that renders a plain user/assistant conversation")


def _library_choice(name: str, reason: str, warnings: tuple[str, ...] = ()) -> TemplateChoice:
    fam = families()[name]
    return TemplateChoice(name=name, source="library", text=library_text(name), end_of_turn=fam["end_of_turn"],
                          tagged=True, mask="generation", reason=reason, warnings=warnings)


def _untagged(name: str, source: Source, text: str, eot: str | None, reason: str, allow_fallback: bool,
              what: str, warnings: tuple[str, ...] = ()) -> TemplateChoice:
    if not allow_fallback:
        raise _error(f"{what} has no {{% generation %}} tags, so loft cannot tell which tokens are the "
                     "assistant's", hint=FALLBACK_HINT, code="template-untagged")
    return TemplateChoice(name=name, source=source, text=text, end_of_turn=eot, tagged=False, mask="prefix",
                          reason=reason + "; untagged, masked by rendering message prefixes "
                          "(template_mask_fallback: true)", warnings=warnings)


def _tagged_problems(text: str, eot: str | None, specials: dict[str, str]) -> list[str]:
    return structure_problems(text) + span_problems(text, eot, specials)


def select_template(spec: str, *, model: dict[str, Any], model_dir: Path | None, config_dir: Path,
                    allow_fallback: bool, own_only: bool = False) -> TemplateChoice:
    """Turn the config's `template:` (auto | library name | path) into the template the run will use."""
    spec = str(spec or "auto").strip()
    if spec == "auto":
        return _select_auto(model, model_dir, allow_fallback, own_only)
    name = resolve_name(spec)
    if name is not None:
        return _library_choice(name, f"library template {name!r} (template: {spec})")
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = config_dir / path
    if _looks_like_path(spec) or path.is_file():
        return _select_file(spec, path, model_dir, allow_fallback)
    hint = did_you_mean(spec, sorted(_aliases()))
    raise _error(f"unknown chat template {spec!r}", code="unknown-template",
                 expected="auto, a library name (loftc templates list) or a path to a .jinja file",
                 hint=hint or "library names: " + ", ".join(sorted(families())))


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".jinja", ".j2", ".jinja2", ".txt", ".tmpl"))


def _select_file(spec: str, path: Path, model_dir: Path | None, allow_fallback: bool) -> TemplateChoice:
    if not path.is_file():
        raise _error(f"template file {spec!r} does not exist (looked at {path})", code="template-missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _error(f"cannot read template file {spec!r}: {e}", code="template-missing") from None
    _check_renders(text, spec)
    specials = {**DEFAULT_SPECIALS, **read_model_specials(model_dir)}
    family = recognise_family(strip_generation_tags(text))
    eot = families()[family]["end_of_turn"] if family else detect_end_of_turn(text, specials)
    name = path.name
    if not has_generation_tags(text):
        return _untagged(name, "file", text, eot, f"user file {spec}", allow_fallback, f"template file {spec!r}")
    problems = _tagged_problems(text, eot, specials)
    if problems:
        raise _error(f"template file {spec!r} has malformed generation blocks: " + "; ".join(problems),
                     code="template-spans", hint="run `loftc templates check " + spec + "` for details")
    return TemplateChoice(name=name, source="file", text=text, end_of_turn=eot, tagged=True, mask="generation",
                          reason=f"user file {spec}")


def _select_auto(model: dict[str, Any], model_dir: Path | None, allow_fallback: bool,
                 own_only: bool = False) -> TemplateChoice:
    """The model's own template (local files, or the hub's at the pinned revision), else the library family
    the catalog / hub id / model_type names, else chatml: every guess carries a warning. A hub model the
    catalog or the library's model patterns know takes that family's template (the vendor's text, byte for
    byte) without a download, so its bundle is the same on every machine. `own_only` (an
    Axolotl config with chats: Axolotl renders with the tokenizer's template) takes the model's own or a
    library family known for that model (whose text is the vendor's, byte for byte), never a guess from
    model_type and never generic chatml: with neither, it is an error that says how to get the files."""
    own = read_model_template(model_dir) if model_dir is not None else None
    if own:
        return _select_from_model_text(own, model_dir, allow_fallback)
    fam = model.get("chat_template_family")
    if isinstance(fam, str) and resolve_name(fam) and (model_dir is None or not own_only):  # a known model
        name = resolve_name(fam)
        assert name is not None
        return _library_choice(name, f"model family {fam!r} (catalog)")
    hub_id = model.get("id") if model_dir is None else None
    if isinstance(hub_id, str) and hub_id and (name := family_for_hub_id(hub_id)):
        return _library_choice(name, f"hub id {hub_id} matches the {name} family")
    unavailable = ""
    if isinstance(hub_id, str) and hub_id:  # an unknown hub model: its own files, at the pinned revision
        try:
            own = fetch_model_template(hub_id, model.get("revision"))
        except TemplateUnavailable as e:
            unavailable = str(e)
        except ImportError:
            unavailable = "huggingface_hub is not installed"
    if own:
        return _select_from_model_text(own, model_dir, allow_fallback)
    if own_only:
        where = f"{hub_id}'s tokenizer_config.json / chat_template.jinja" if hub_id else "the model directory"
        if unavailable:
            raise _error(f"cannot read the model's own chat template ({where}): {unavailable}",
                         hint=f"build once with network access (the files are cached), or fetch them: "
                              f"`hf download {hub_id} tokenizer_config.json chat_template.jinja`; or name a "
                              "template with chat_template:", code="template-unavailable")
        raise _error(f"the model ships no chat template ({where}); Axolotl would fail here too",
                     hint="set chat_template: to a named template (chatml, llama3, ...) or chat_template_jinja",
                     code="template-missing")
    mtype = str(model.get("model_type") or "")
    for name, entry in families().items():
        if mtype and mtype in entry.get("model_types", []):
            return _library_choice(name, f"model_type {mtype!r}", (
                f"the model ships no chat template; guessed {name!r} from model_type {mtype!r}: set "
                "`template:` to be explicit",))
    why = f"the model's own chat template could not be read ({unavailable})" if unavailable else \
        "the model ships no chat template"
    return _library_choice("chatml", "no chat template found", (
        f"{why} and its family is unknown: using generic chatml (its "
        "<|im_start|>/<|im_end|> should be special tokens of the tokenizer); set `template:` to be explicit",))


def _select_from_model_text(own: str, model_dir: Path | None, allow_fallback: bool) -> TemplateChoice:
    _check_renders(own, "the model's chat template")
    specials = {**DEFAULT_SPECIALS, **read_model_specials(model_dir)}
    plain = strip_generation_tags(own) if has_generation_tags(own) else own
    family = recognise_family(plain)
    if family is not None:
        fails = parity_failures(library_text(family), plain, specials=specials, limit=1)
        if not fails:
            return _library_choice(family, f"the model's chat template renders like loft's {family!r}")
        mismatch: tuple[str, ...] = (f"the model's chat template looks like {family!r} but renders differently "
                    f"({fails[0][:200]}); using the model's own template",)
    else:
        mismatch = ()
    eot = families()[family]["end_of_turn"] if family else detect_end_of_turn(plain, specials)
    if has_generation_tags(own) and not _tagged_problems(own, eot, specials):
        return TemplateChoice(name="model", source="model", text=own, end_of_turn=eot, tagged=True,
                              mask="generation", reason="the model's own tagged chat template", warnings=mismatch)
    tagged = tag_template(plain, end_of_turn=eot, specials=specials)
    if tagged.ok and tagged.text is not None:
        return TemplateChoice(name="model", source="model", text=tagged.text, end_of_turn=tagged.end_of_turn,
                              tagged=True, mask="generation", reason="the model's own chat template, auto-tagged "
                              "(parity proven on probe conversations)", warnings=mismatch)
    return _untagged("model", "model", plain, eot, "the model's own chat template", allow_fallback,
                     f"the model's chat template (not a library family; auto-tagging failed: {tagged.reason})",
                     mismatch)


# -------------------------------------------------------------------------------------------- checking

def structure_problems(text: str) -> list[str]:
    """Generation tags must pair up and must not nest (a nested block records the wrong offsets)."""
    problems: list[str] = []
    depth = 0
    for m in GENERATION_TAG_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1):  # endgeneration
            if depth == 0:
                problems.append(f"line {line}: {{% endgeneration %}} without an open {{% generation %}}")
            else:
                depth -= 1
        else:
            if depth > 0:
                problems.append(f"line {line}: nested {{% generation %}} (blocks must not nest)")
            depth += 1
    if depth > 0:
        problems.append("a {% generation %} block is never closed")
    return problems


@dataclass
class CheckReport:
    tagged: bool
    well_formed: bool
    problems: list[str] = field(default_factory=list)
    end_of_turn: str | None = None
    family: str | None = None
    parity: bool | None = None  # None: no reference given
    parity_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tagged and self.well_formed and self.parity is not False

    def to_text(self) -> str:
        lines = [
            f"tagged:      {'yes' if self.tagged else 'no ({% generation %} missing)'}",
            f"well formed: {'yes' if self.well_formed else 'no'}",
            f"end of turn: {self.end_of_turn or 'unknown'}",
            f"looks like:  {self.family or 'no library family'}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        if self.parity is not None:
            lines.append(f"parity:      {'identical on every probe' if self.parity else 'DIFFERS'}")
            lines += [f"  {f}" for f in self.parity_failures]
        return "\n".join(lines)


def check_template(text: str, reference: str | None = None, *, end_of_turn: str | None = None,
                   specials: dict[str, str] | None = None) -> CheckReport:
    """Does `text` have generation tags, are its spans well formed (closed, not nested, each covering the
    assistant's text and ending with the end-of-turn token), and does it render like `reference`?"""
    compile_template(text)  # raises a ConfigError naming the line on a syntax error
    plain = strip_generation_tags(text)
    family = recognise_family(plain)
    fam_specials = family_specials(family) if family else {}
    sp = {**DEFAULT_SPECIALS, **{k: v for k, v in fam_specials.items() if v}, **(specials or {})}
    eot = end_of_turn or (families()[family]["end_of_turn"] if family else None) or detect_end_of_turn(plain, sp)
    tagged = has_generation_tags(text)
    problems = structure_problems(text)
    if tagged and not problems:
        problems += span_problems(text, eot, sp)
    report = CheckReport(tagged=tagged, well_formed=tagged and not problems, problems=problems,
                         end_of_turn=eot, family=family)
    if reference is not None:
        ref = strip_generation_tags(reference) if has_generation_tags(reference) else reference
        report.parity_failures = parity_failures(plain, ref, specials=sp) + (
            parity_failures(text, ref, specials=sp) if tagged else [])
        report.parity = not report.parity_failures
    return report


__all__ = ["CheckReport", "TagResult", "TemplateChoice", "check_template", "families", "family_for_hub_id",
           "library_text", "read_model_template", "recognise_family", "render", "render_spans",
           "resolve_name", "select_template", "strip_generation_tags", "tag_template"]
