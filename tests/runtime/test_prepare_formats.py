"""Dataset formats → normal form, with field mappings and bad-sample reasons."""

from __future__ import annotations

import pytest
from loft.runtime.prepare.errors import BadSample
from loft.runtime.prepare.formats import DatasetSpec, normalize


def spec(**kw):
    return DatasetSpec.from_config({"name": "d", **kw})


def test_openai_messages_keep_extra_fields():
    row = {"messages": [{"role": "user", "content": "hi"},
                        {"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}]}
    ex = normalize(row, spec())
    assert ex.messages == [{"role": "user", "content": "hi"},
                           {"role": "assistant", "content": "", "tool_calls": [{"name": "f"}]}]
    assert ex.complete


def test_sharegpt_defaults_and_role_mapping():
    row = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"},
                             {"from": "gpt", "value": "a"}]}
    ex = normalize(row, spec(format="sharegpt"))
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant"]
    custom = {"chat": [{"speaker": "kid", "text": "q"}, {"speaker": "teacher", "text": "a"}]}
    ex = normalize(custom, spec(format="sharegpt", field_messages="chat",
                                message_fields={"role": "speaker", "content": "text"},
                                roles={"kid": "user", "teacher": "assistant"}))
    assert ex.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_alpaca_with_and_without_input_and_field_names():
    ex = normalize({"instruction": "Add", "input": "2+2", "output": "4"}, spec(format="alpaca"))
    assert ex.messages == [{"role": "user", "content": "Add\n\n2+2"}, {"role": "assistant", "content": "4"}]
    ex = normalize({"q": "Say hi", "a": "hi", "sys": "polite"},
                   spec(format="alpaca", fields={"instruction": "q", "output": "a", "system": "sys"}))
    assert ex.messages[0] == {"role": "system", "content": "polite"}
    assert ex.messages[1:] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]


def test_completion_and_input_output():
    assert normalize({"body": "plain text"}, spec(format="completion", fields={"text": "body"})).segments == \
        [("plain text", True)]
    assert normalize({"input": "Q: ", "output": "A"}, spec(format="input_output")).segments == \
        [("Q: ", False), ("A", True)]
    segs = {"segments": [{"text": "a", "label": False}, {"text": "b", "label": True}]}
    assert normalize(segs, spec(format="input_output")).segments == [("a", False), ("b", True)]


def test_dataset_may_provide_complete():
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "cut mid-"}],
           "_complete": False}
    assert normalize(row, spec()).complete is False


@pytest.mark.parametrize("row,reason", [
    ({"messages": []}, "empty_conversation"),
    ({"text": "no messages"}, "missing_field"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "unknown_role"),
    ({"messages": [{"role": "user"}]}, "missing_field"),
    ({"messages": [{"role": "user", "content": 3}]}, "bad_type"),
    ({"messages": "hello"}, "bad_type"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no_trainable_turn"),
])
def test_bad_samples_have_reasons(row, reason):
    with pytest.raises(BadSample) as err:
        normalize(row, spec())
    assert err.value.reason == reason


def test_alpaca_missing_output_is_missing_field():
    with pytest.raises(BadSample) as err:
        normalize({"instruction": "x"}, spec(format="alpaca"))
    assert err.value.reason == "missing_field"


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="unknown format"):
        spec(format="yaml-chat")


def test_message_fields_map_extra_template_properties():
    row = {"messages": [{"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a", "thinking": "hmm"}]}
    ex = normalize(row, spec(message_fields={"role": "role", "content": "content", "reasoning_content": "thinking"}))
    assert ex.messages[1] == {"role": "assistant", "content": "a", "reasoning_content": "hmm"}


def test_null_field_names_mean_the_defaults():
    # resolve writes every schema key; unset field names arrive as null
    s = spec(format="alpaca", fields={"instruction": None, "input": None, "output": None, "system": None,
                                      "text": None}, message_fields={"role": "role", "content": None})
    ex = normalize({"instruction": "Add", "output": "4"}, s)
    assert ex.messages == [{"role": "user", "content": "Add"}, {"role": "assistant", "content": "4"}]
