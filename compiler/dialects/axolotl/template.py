"""The chat template: Axolotl's `chat_template` names mapped onto loft's library, or the model's own."""

from __future__ import annotations

from typing import Any

from .context import Translation

# Axolotl chat_template name -> loft library names to try, in order (the first the library has wins).
TEMPLATE_NAMES: dict[str, tuple[str, ...]] = {
    "chatml": ("chatml",),
    "llama3": ("llama3", "llama3.1"),
    "llama3_2": ("llama3.2",),
    "llama4": ("llama4",),
    "mistral_v1": ("mistral-v1",),
    "mistral_v2v3": ("mistral-v3",),
    "mistral_v3_tekken": ("mistral-nemo",),
    "mistral_v7_tekken": ("mistral-v7", "mistral-small"),
    "gemma": ("gemma2", "gemma"),
    "gemma3": ("gemma3",),
    "gemma3n": ("gemma3n", "gemma3"),
    "cohere": ("command-r",),
    "phi_3": ("phi3", "phi3.5"),
    "phi_35": ("phi3.5",),
    "phi_4": ("phi4",),
    "deepseek_v3": ("deepseek-v3", "deepseek-r1"),
    "qwen_25": ("qwen2.5",),
    "qwen3": ("qwen3",),
    "qwen3_5": ("qwen3.5",),
    "smollm2": ("smollm2",),
    "smollm3": ("smollm3",),
    "zephyr": ("zephyr",),
    "alpaca": ("alpaca",),
    "falcon_h1": ("falcon-h1",),
    "exaone": ("exaone",),
    "metharme": ("metharme",),
    "jamba": ("jamba",),
}
# Names in the contract (docs/architecture.md), used when the library index is not installed yet.
_CONTRACT_TEMPLATES = ("qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-v3", "mistral-nemo", "gemma2",
                       "gemma3", "phi3.5", "smollm2", "smollm3", "zephyr", "command-r", "deepseek-r1", "chatml")
_VISION_TEMPLATES = ("llama3_2_vision", "pixtral", "llava", "qwen2_vl", "gemma3n_vision")
# Axolotl templates that are copies of one model family's own tokenizer template: with no loft library
# equivalent, the model's own template (template: auto) is the same text.
_FAMILY_OWN_TEMPLATES = ("qwen3_5", "llama4", "gemma4", "falcon_h1", "phi_4", "exaone", "deepseek_v3",
                         "gemma3n", "jamba", "command_a", "granite", "olmo3", "lfm2", "gemma4_unified",
                         "deepseek_v2")


def library_templates() -> dict[str, str]:
    """{name or alias: library name} for loft's chat template library (chat_templates/index.json); the
    contract's names when the index is not installed."""
    try:
        from ...templates import families as library_families

        families: Any = library_families()
    except (OSError, ValueError, KeyError, ImportError):
        families = {}
    out: dict[str, str] = {}
    if isinstance(families, dict) and families:
        for name, fam in families.items():
            out[str(name)] = str(name)
            for alias in (fam.get("aliases") or []) if isinstance(fam, dict) else []:
                out.setdefault(str(alias), str(name))
        return out
    return {n: n for n in _CONTRACT_TEMPLATES}


def template(t: Translation, per_dataset: dict[str, tuple[str, int]], formats: set[str]) -> None:
    glob = t.d.get("chat_template")
    jinja = t.d.get("chat_template_jinja")
    names = set(per_dataset)
    if isinstance(glob, str) and glob:
        names.add(glob)
    if len(names) > 1:
        top, i = next(iter(per_dataset.values()))
        t.err([top, i, "chat_template"], f"datasets use different chat templates ({', '.join(sorted(names))});"
              " loft renders every dataset with one template", code="contradiction")
        return
    src = "chat_template"
    name = next(iter(names)) if names else None
    if isinstance(jinja, str) and jinja and (name in (None, "jinja")):
        if "\n" in jinja or "{%" in jinja or "{{" in jinja:
            t.err(["chat_template_jinja"], "an inline Jinja template is not supported in a translated "
                  "config", hint="save it as a .jinja file and set chat_template_jinja to its path, or "
                  "run `loftc convert` and point `template:` at the file")
            return
        t.put("template", jinja, "chat_template_jinja")
        return
    if name == "jinja":
        t.err(["chat_template"], "chat_template: jinja needs chat_template_jinja", code="missing-key")
        return
    if name is None or name == "tokenizer_default":
        t.put("template", "auto", src if name else "base_model")  # the model's own template
        return
    if name.startswith("tokenizer_default_fallback_"):
        t.warn([src], f"{name}: loft uses the model's own template (template: auto); when the model has "
               "none, set `template:` explicitly", code="axolotl-differs")
        t.put("template", "auto", src)
        return
    loc: list[object] = [src] if glob else [*per_dataset[name], "chat_template"]
    if name in _VISION_TEMPLATES:
        t.err(loc, f"{name} is a vision chat template: multimodal training is not supported")
        return
    lib = library_templates()
    for cand in (*TEMPLATE_NAMES.get(name, ()), name):
        if cand in lib:
            t.put("template", lib[cand], src)
            return
    if name in _FAMILY_OWN_TEMPLATES:
        t.warn(loc, f"Axolotl's {name!r} template is the model family's own chat template; loft's library "
               "has no copy, so loft uses the tokenizer's template (template: auto)", code="axolotl-differs")
        t.put("template", "auto", src)
        return
    t.err(loc, f"loft's template library has no equivalent of Axolotl's {name!r} chat template",
          expected=", ".join(sorted(set(lib.values()))),
          hint="use chat_template: tokenizer_default to train with the model's own template")
