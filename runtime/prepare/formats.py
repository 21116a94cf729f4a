"""Dataset formats → one normal form: a chat (messages) or plain segments (text, trained?).

Field names follow what Axolotl users know: `field_messages`, `message_fields` (property mapping),
`roles` (source role → standard role), and `fields` for alpaca / completion / input_output columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loft.runtime.prepare.errors import BadSample

STANDARD_ROLES = ("system", "user", "assistant", "tool")
# Role names seen in the wild, mapped to the standard ones; a dataset's `roles` mapping wins.
COMMON_ROLES = {
    "system": "system", "user": "user", "assistant": "assistant", "tool": "tool",
    "human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant",
    "function": "tool", "ipython": "tool", "observation": "tool",
}
FORMATS = ("messages", "sharegpt", "alpaca", "completion", "input_output")
SPECIAL_TOKENS = ("template", "tokenizer", "none")

# The Alpaca prompt in each of Axolotl's prompt styles (axolotl.prompters.AlpacaPrompter, with its default
# system prompts): (system line, turn with input, turn without input). The response follows the turn.
_ALPACA_SYSTEM = ("Below is an instruction that describes a task, paired with an input that provides further "
                  "context. Write a response that appropriately completes the request.")
_ALPACA_SYSTEM_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                           "completes the request.")
ALPACA_STYLES: dict[str, tuple[str, str, str]] = {
    "instruct": ("{system}\n\n", "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
                 "### Instruction:\n{instruction}\n\n### Response:\n"),
    "chat": ("SYSTEM: {system}\n", "USER: {instruction}\n{input}\nASSISTANT:", "USER: {instruction}\nASSISTANT:"),
    "chatml": ("<|im_start|>system\n{system}<|im_end|>\n",
               "<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n"),
    "phi": ("<|system|>\n{system}<|end|>\n", "<|user|>\n{instruction}<|end|>{input}<|assistant|>",
            "<|user|>\n{instruction}<|end|>\n<|assistant|>\n"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """The per-dataset settings that shape tokenization (a dataset entry of `data.datasets`)."""

    name: str
    format: str = "messages"
    field_messages: str = "messages"
    message_fields: dict[str, str] = field(default_factory=lambda: {"role": "role", "content": "content"})
    roles: dict[str, str] = field(default_factory=dict)
    roles_to_train: tuple[str, ...] = ("assistant",)
    train_on_eos: str = "turn"
    fields: dict[str, str] = field(default_factory=dict)
    prompt_style: str | None = None  # alpaca: render Axolotl's Alpaca prompt in this style (not the template)
    special_tokens: str = "template"  # segments: template (bos + eos) | tokenizer (its own, per segment) | none
    message_field_training: str | None = None  # per-message trained flag (overrides roles_to_train)
    drop_system_message: bool = False

    @classmethod
    def from_config(cls, entry: dict[str, Any]) -> DatasetSpec:
        fmt = entry.get("format") or "messages"
        if fmt not in FORMATS:
            raise ValueError(f"dataset {entry.get('name')!r}: unknown format {fmt!r} (expected one of {FORMATS})")
        return cls(
            name=str(entry["name"]),
            format=fmt,
            field_messages=entry.get("field_messages") or "messages",
            message_fields={"role": "role", "content": "content",
                            **{k: v for k, v in (entry.get("message_fields") or {}).items() if v}},
            roles={str(k): str(v) for k, v in (entry.get("roles") or {}).items()},
            roles_to_train=tuple(entry.get("roles_to_train") or ("assistant",)),
            train_on_eos=entry.get("train_on_eos") or "turn",
            fields={k: v for k, v in (entry.get("fields") or {}).items() if v},  # null = the default name
            prompt_style=entry.get("prompt_style"),
            special_tokens=entry.get("special_tokens") or "template",
            message_field_training=entry.get("message_field_training"),
            drop_system_message=bool(entry.get("drop_system_message")),
        )

    def tokenization_config(self) -> dict[str, Any]:
        """What goes into the cache key: everything here changes the tokens or the mask."""
        return {
            "format": self.format, "field_messages": self.field_messages,
            "message_fields": dict(sorted(self.message_fields.items())), "roles": dict(sorted(self.roles.items())),
            "roles_to_train": list(self.roles_to_train), "train_on_eos": self.train_on_eos,
            "fields": dict(sorted(self.fields.items())),
            **({"prompt_style": self.prompt_style} if self.prompt_style else {}),
            **({"special_tokens": self.special_tokens} if self.special_tokens != "template" else {}),
            **({"message_field_training": self.message_field_training} if self.message_field_training else {}),
            **({"drop_system_message": True} if self.drop_system_message else {}),
        }


@dataclass
class Example:
    """A normalised sample: `messages` for chats, or `segments` [(text, trained)] for template-free formats."""

    messages: list[dict[str, Any]] | None = None
    segments: list[tuple[str, bool]] | None = None
    complete: bool = True


def normalize(row: dict[str, Any], spec: DatasetSpec) -> Example:
    """One raw row → Example, or BadSample(reason) with reason in missing_field / empty_conversation /
    unknown_role / bad_type."""
    complete = row.get("_complete", True)
    if not isinstance(complete, bool):
        raise BadSample("bad_type", f"_complete must be true/false, got {complete!r}")
    if spec.format in ("messages", "sharegpt"):
        return Example(messages=_chat(row, spec), complete=complete)
    if spec.format == "alpaca" and spec.prompt_style:
        return Example(segments=_alpaca_prompt(row, spec), complete=complete)
    if spec.format == "alpaca":
        return Example(messages=_alpaca(row, spec), complete=complete)
    if spec.format == "completion":
        text = _text(row, spec.fields.get("text", "text"))
        return Example(segments=[(text, True)], complete=complete)
    return Example(segments=_input_output(row, spec), complete=complete)


def _text(row: dict[str, Any], key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise BadSample("missing_field", f"no {key!r} field")
        return ""
    if not isinstance(value, str):
        raise BadSample("bad_type", f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _chat(row: dict[str, Any], spec: DatasetSpec) -> list[dict[str, Any]]:
    key = spec.field_messages
    if key not in row and spec.format == "sharegpt" and key == "messages":
        key = "conversations"  # the ShareGPT default when the config kept the messages default
    turns = row.get(key)
    if turns is None:
        raise BadSample("missing_field", f"no {key!r} field")
    if not isinstance(turns, list):
        raise BadSample("bad_type", f"{key!r} must be a list of messages, got {type(turns).__name__}")
    if not turns:
        raise BadSample("empty_conversation", f"{key!r} is empty")
    role_key = spec.message_fields.get("role", "role")
    content_key = spec.message_fields.get("content", "content")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadSample("bad_type", f"message {i} is not an object")
        rk, ck = role_key, content_key
        if rk not in turn and rk == "role" and "from" in turn:  # ShareGPT shape under default mappings
            rk, ck = "from", ("value" if ck == "content" else ck)
        if rk not in turn:
            raise BadSample("missing_field", f"message {i} has no {rk!r}")
        if ck not in turn or turn[ck] is None:
            raise BadSample("missing_field", f"message {i} has no {ck!r}")
        source_role = str(turn[rk])
        role = spec.roles.get(source_role) or COMMON_ROLES.get(source_role.lower())
        if role not in STANDARD_ROLES:
            raise BadSample("unknown_role", f"message {i} role {source_role!r} (map it under `roles:`)")
        content = turn[ck]
        if not isinstance(content, str):
            raise BadSample("bad_type", f"message {i} content must be a string, got {type(content).__name__}")
        message: dict[str, Any] = {"role": role, "content": content}
        for extra in ("tool_calls", "name", "tool_call_id", "reasoning_content"):
            if turn.get(extra) is not None:
                message[extra] = turn[extra]
        for prop, source in spec.message_fields.items():  # any other template property, e.g. reasoning_content: thinking
            if prop not in ("role", "content") and turn.get(source) is not None:
                message[prop] = turn[source]
        flag = turn.get(spec.message_field_training) if spec.message_field_training else None
        if flag is not None:
            message["training"] = bool(flag)
        if spec.drop_system_message and role == "system":
            continue
        messages.append(message)
    if not messages:
        raise BadSample("empty_conversation", f"{key!r} has only system messages")
    if not any(m.get("training", m["role"] in spec.roles_to_train) for m in messages):
        raise BadSample("no_trainable_turn", f"no message with a role in roles_to_train {list(spec.roles_to_train)}")
    return messages


def _alpaca(row: dict[str, Any], spec: DatasetSpec) -> list[dict[str, Any]]:
    f = spec.fields
    instruction = _text(row, f.get("instruction", "instruction"))
    extra_input = _text(row, f.get("input", "input"), required=False)
    output = _text(row, f.get("output", "output"))
    system = _text(row, f.get("system", "system"), required=False)
    if not instruction.strip() and not extra_input.strip():
        raise BadSample("empty_conversation", "instruction and input are empty")
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system.strip() else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def _input_output(row: dict[str, Any], spec: DatasetSpec) -> list[tuple[str, bool]]:
    """`segments: [{text, label}]` (label true = trained), or an input column (not trained) + output (trained)."""
    seg_key = spec.fields.get("segments", "segments")
    if seg_key in row and row[seg_key] is not None:
        segments = row[seg_key]
        if not isinstance(segments, list) or not segments:
            raise BadSample("empty_conversation", f"{seg_key!r} must be a non-empty list")
        out = []
        for i, seg in enumerate(segments):
            if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
                raise BadSample("missing_field", f"segment {i} has no string 'text'")
            # inputs trained too when every role is (Axolotl's train_on_inputs)
            out.append((seg["text"], bool(seg.get("label", True)) or "user" in spec.roles_to_train))
        return out
    return [(_text(row, spec.fields.get("input", "input")), False), (_text(row, spec.fields.get("output", "output")), True)]


def _alpaca_prompt(row: dict[str, Any], spec: DatasetSpec) -> list[tuple[str, bool]]:
    """Axolotl's Alpaca prompt (its exact text for `prompt_style`) as (prompt, trained?) + (response, True);
    the prompt is trained when inputs are (Axolotl's train_on_inputs: every role in roles_to_train)."""
    f = spec.fields
    instruction = _text(row, f.get("instruction", "instruction"))
    extra_input = _text(row, f.get("input", "input"), required=False)
    output = _text(row, f.get("output", "output"))
    system, turn, turn_no_input = ALPACA_STYLES[str(spec.prompt_style)]
    if extra_input:
        prompt = system.format(system=_ALPACA_SYSTEM) + turn.format(instruction=instruction, input=extra_input)
    else:
        prompt = system.format(system=_ALPACA_SYSTEM_NO_INPUT) + turn_no_input.format(instruction=instruction)
    return [(prompt, "user" in spec.roles_to_train), (output, True)]
