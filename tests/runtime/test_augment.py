"""`loft augment`: the pure transforms, and LLM style transfer against a fake OpenAI-compatible endpoint on
127.0.0.1 (retried on 503, cached by request hash: a rerun sends nothing and writes the same bytes)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from loft.runtime.augment import AugmentError, load_config, ops
from loft.runtime.augment import run as augment

pytest.importorskip("tenacity", reason="loft augment retries with tenacity: the observe extra (pip install 'loft[observe]')")


class FakeEndpoint:
    """/v1/chat/completions that upper-cases the user message; the first `fail` calls answer 503."""

    def __init__(self, fail: int = 0, status: int = 503) -> None:
        self.calls: list[dict] = []
        self.fail, self.status = fail, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if len(outer.calls) <= outer.fail:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                text = body["messages"][1]["content"].upper()
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def endpoint():
    ep = FakeEndpoint(fail=2)
    yield ep
    ep.close()


def rows(n: int) -> list[dict]:
    return [{"id": i, "messages": [{"role": "user", "content": f"question {i}"},
                                   {"role": "assistant", "content": f"answer number {i}"}]} for i in range(n)]


def write(path: Path, data: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def test_ops_are_deterministic_and_do_what_they_say():
    msgs = rows(1)[0]["messages"]
    rng = ops.row_rng(0, rows(1)[0], "system")
    out, done = ops.system_pool(msgs, {"pool": ["S1", "S2"]}, rng)
    assert done and out[0]["role"] == "system" and out[0]["content"] in ("S1", "S2") and out[1:] == msgs
    again, _ = ops.system_pool(msgs, {"pool": ["S1", "S2"]}, ops.row_rng(0, rows(1)[0], "system"))
    assert again == out
    kept, done = ops.system_pool(out, {"pool": ["X"]}, rng)
    assert not done and kept == out
    replaced, _ = ops.system_pool(out, {"pool": ["X"], "mode": "replace"}, rng)
    assert replaced[0]["content"] == "X"
    p, done = ops.persona(out, {"pool": ["a pirate"], "template": "You speak as {persona}."}, rng)
    assert done and p[0]["content"].endswith("You speak as a pirate.") and len(p) == len(out)
    assert ops.persona(msgs, {"pool": ["x"], "probability": 0.0}, rng) == (msgs, False)
    long = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "aaaa\n\nbbbb\n\ncccc"}]
    split, n = ops.split_long_replies(long, {"max_chars": 10, "continue_prompt": "go on"})
    assert n == 1 and [m["content"] for m in split] == ["q", "aaaa\n\nbbbb", "go on", "cccc"]
    assert [m["role"] for m in split] == ["user", "assistant", "user", "assistant"]
    assert ops.split_long_replies(long, {"max_chars": 100}) == (long, 0)


def test_style_transfer_retries_caches_and_reruns_identically(tmp_path, endpoint, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    src = write(tmp_path / "raw" / "part" / "a.jsonl", rows(5))
    cfg = {"seed": 3, "style_transfer": {"endpoint": endpoint.url, "model": "m", "instruction": "Shout.",
                                         "concurrency": 3, "retries": 4, "backoff_s": 0.01, "api_key_env": "FAKE_KEY"},
           "system_prompts": {"pool": ["You help.", "You assist."]}}
    report = augment(cfg, tmp_path / "raw", tmp_path / "out1", tmp_path)
    out1 = (tmp_path / "out1" / "part" / "a.jsonl").read_bytes()
    got = [json.loads(x) for x in out1.decode().splitlines()]
    assert [r["messages"][-1]["content"] for r in got] == [f"ANSWER NUMBER {i}" for i in range(5)]
    assert [r["id"] for r in got] == list(range(5)) and all(r["messages"][0]["role"] == "system" for r in got)
    assert report["counts"]["rewritten"] == 5 and report["llm"] == {"requests": 5, "cache_hits": 0, "failed": 0}
    assert len(endpoint.calls) == 7  # 2 answered 503, then retried
    assert {c["path"] for c in endpoint.calls} == {"/v1/chat/completions"}
    assert all(c["auth"] == "Bearer sk-test" for c in endpoint.calls)
    assert endpoint.calls[-1]["body"]["messages"][0] == {"role": "system", "content": "Shout."}
    cache = list((tmp_path / ".augment-cache").rglob("*.json"))
    assert len(cache) == 5 and not any("sk-test" in p.read_text() for p in cache)
    report = augment(cfg, src, tmp_path / "out2", tmp_path)  # a single file as input
    assert len(endpoint.calls) == 7 and report["llm"]["cache_hits"] == 5
    assert (tmp_path / "out2" / "a.jsonl").read_bytes() == out1
    assert json.loads((tmp_path / "out2" / "augment_report.json").read_text())["counts"]["rows"] == 5


def test_a_client_error_keeps_the_reply_and_is_reported(tmp_path):
    ep = FakeEndpoint(fail=100, status=400)
    try:
        write(tmp_path / "raw.jsonl", rows(2))
        cfg = {"style_transfer": {"endpoint": ep.url, "model": "m", "instruction": "x", "retries": 3}}
        report = augment(cfg, tmp_path / "raw.jsonl", tmp_path / "out", tmp_path)
        assert len(ep.calls) == 2  # a 400 is not retried
        assert report["llm"]["failed"] == 2 and "HTTP 400" in report["errors"][0]
        got = [json.loads(x) for x in (tmp_path / "out" / "raw.jsonl").read_text().splitlines()]
        assert got[1]["messages"][1]["content"] == "answer number 1"
    finally:
        ep.close()


def test_config_and_input_errors_are_clear(tmp_path, capsys):
    from loft.runtime.__main__ import main

    bad = tmp_path / "augment.yaml"
    bad.write_text("style_transfer: {endpoint: http://127.0.0.1:1/v1, model: m}\nseeed: 1\n")
    with pytest.raises(AugmentError, match=r"augment\.yaml: \(top level\): .*'seeed'.*did you mean 'seed'"):
        load_config(bad)
    write(tmp_path / "in" / "x.jsonl", [{"text": "no messages"}])
    good = tmp_path / "ok.yaml"
    good.write_text("system_prompts: {pool: [hi]}\n")
    assert main(["augment", "--config", str(bad), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]) == 1
    assert "augment.yaml" in capsys.readouterr().err
    assert main(["augment", "--config", str(good), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")]) == 1
    assert "x.jsonl:1: no 'messages'" in capsys.readouterr().err
    assert main(["augment", "--config", str(good), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "in"),
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["errors"][0]["code"] == "augment"
