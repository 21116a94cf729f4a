"""The token inspector: the same masks as prepare, terminal/HTML rendering, debug-tokens CLI, preview."""

from __future__ import annotations

from loft.runtime.inspect import explain, main_debug_tokens, preview, render_html, render_terminal

from tests.runtime.bundle_factory import LLAMA3_TAGGED, chat_rows, make_bundle, tiny_tokenizer, write_jsonl

CHAT = {"messages": [{"role": "user", "content": "Are you a robot?"}, {"role": "assistant", "content": "Yes I am."}]}


def test_explain_marks_exactly_the_assistant_reply_and_its_end_of_turn():
    [view] = explain([CHAT], str(tiny_tokenizer()), LLAMA3_TAGGED, end_of_turn="<|eot_id|>")
    trained = "".join(t.text for t in view.tokens if t.trained)
    assert trained == "Yes I am.<|eot_id|>"
    assert view.templated.startswith("<|begin_of_text|><|start_header_id|>user")
    assert view.preprocessed == {"messages": CHAT["messages"]}
    assert "".join(t.text for t in view.tokens) == view.templated


def test_terminal_and_html_rendering():
    views = explain([CHAT, {"messages": []}], str(tiny_tokenizer()), LLAMA3_TAGGED)
    plain = render_terminal(views, color=False)
    assert "[[Yes I am.<|eot_id|>]]" in plain and "empty_conversation" in plain
    coloured = render_terminal(views, color=True)
    assert "\x1b[1;30;42m" in coloured
    page = render_html(views)
    assert "<span class='tok t'" in page and "empty_conversation" in page and "&lt;|eot_id|&gt;" in page


def test_preview_for_loftc_check_takes_rows_with_their_dataset_settings():
    sg = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    text = preview(str(tiny_tokenizer()), LLAMA3_TAGGED,
                   [(CHAT, {"name": "chat"}), (sg, {"name": "sg", "format": "sharegpt"})], end_of_turn="<|eot_id|>")
    assert "── chat:0" in text and "── sg:0" in text
    assert "[[Hello<|eot_id|>]]" in text and "\x1b[" not in text


def test_debug_tokens_cli(tmp_path, capsys):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(5))
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    page = tmp_path / "tokens.html"
    assert main_debug_tokens([str(root), "--n", "2", "--html", str(page), "--no-color"]) == 0
    out = capsys.readouterr().out
    assert out.count("── chat:") == 2 and "[[" in out and "(line 2)" in out
    assert page.is_file() and "chat:1" in page.read_text()
    assert main_debug_tokens([str(root), "--dataset", "nope"]) == 1
    assert main_debug_tokens([str(tmp_path / "missing")]) == 1
    assert main_debug_tokens(["--bogus"]) == 2


def test_malformed_lines_show_as_errors_not_crashes(tmp_path, capsys):
    root = tmp_path / "run"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(1))
    with (root / "data" / "chat.jsonl").open("a") as fh:
        fh.write("{not json\n")
    make_bundle(root, tiny_tokenizer(), [{"name": "chat", "path": "data/chat.jsonl"}])
    assert main_debug_tokens([str(root), "--n", "2", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "malformed_json: 2: Expecting property name" in out and "[[" in out
