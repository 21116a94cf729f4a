"""The dashboard: its JSON API and incremental reads, the terminal view, and the page in headless Chromium
(Debian's chromium + chromium-driver, driven by Selenium; skipped with a reason where they are absent)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from loft.runtime.dashboard.runs import discover, eta_s, read_from
from loft.runtime.dashboard.server import serve_in_thread
from loft.runtime.dashboard.tui import Watch, run_tui, sparkline


def rec(step, loss, **kw):
    return {"step": step, "loss": loss, "learning_rate": 1e-4 * step, "grad_norm": 1.0 + step / 10,
            "tokens": 100 * step, "tokens_per_s": 50.0 + step, "epoch": step / 10, "elapsed_s": 2.0 * step,
            "max_steps": 10, **kw}


def write(path: Path, records, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(mode, encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def make_run(root: Path, trials: int = 0, steps: int = 4) -> Path:
    """A bundle-shaped directory: plan.lock with an estimate, out/metrics.jsonl (and trial-N/ ones)."""
    root.mkdir(parents=True)
    plan = {"format": 1, "name": "demo", "config": {"output_dir": "out"}, "derived": {"total_steps": 10},
            "estimate": {"vram": {"total_gib": 6.5, "allocated_gib": 5.0, "gpu": "H100"}, "time": {"tokens_per_s": 60.0}}}
    (root / "plan.lock").write_text(json.dumps(plan))
    gpus = [{"index": 0, "util_pct": 90, "mem_used_gib": 6.1, "mem_total_gib": 79.6},
            {"index": 1, "util_pct": 80, "mem_used_gib": 5.9, "mem_total_gib": 79.6}]
    write(root / "out" / "metrics.jsonl", [rec(s, 3.0 - s * 0.1, gpus=gpus, mem_peak_reserved_gib=5.5)
                                            for s in range(1, steps + 1)])
    write(root / "out" / "metrics.jsonl", [{"step": 2, "epoch": 0.2, "elapsed_s": 4.5, "eval_loss": 2.9}], "a")
    for t in range(trials):
        write(root / "out" / f"trial-{t}" / "metrics.jsonl", [rec(s, 2.5 - s * 0.05 * (t + 1)) for s in range(1, 4)])
    return root


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_read_from_returns_complete_lines_and_detects_a_rewrite(tmp_path):
    p = tmp_path / "metrics.jsonl"
    write(p, [rec(1, 2.0), rec(2, 1.9)])
    records, off, reset = read_from(p, 0)
    assert [r["step"] for r in records] == [1, 2] and off == p.stat().st_size and not reset
    with p.open("a") as f:
        f.write(json.dumps(rec(3, 1.8))[:20])  # a line being written
    assert read_from(p, off)[:2] == ([], off)
    with p.open("a") as f:
        f.write(json.dumps(rec(3, 1.8))[20:] + "\n")
    records, off2, _ = read_from(p, off)
    assert [r["step"] for r in records] == [3] and off2 > off
    write(p, [rec(1, 2.0)])  # a resume cut the file back
    records, _, reset = read_from(p, off2)
    assert reset and [r["step"] for r in records] == [1]
    assert read_from(tmp_path / "missing.jsonl", 0) == ([], 0, False)


def test_runs_include_sweep_trials_and_eta(tmp_path):
    root = make_run(tmp_path / "run", trials=2)
    runs = discover([root])
    assert [r.label for r in runs] == ["demo", "demo/trial-0", "demo/trial-1"]
    s = runs[0].summary()
    assert s["estimate"]["total_gib"] == 6.5 and s["estimate"]["tokens_per_s"] == 60.0 and s["report"] is None
    recs = read_from(runs[0].out / "metrics.jsonl", 0)[0]
    assert eta_s(recs) == pytest.approx((10 - 4) * 8.0 / 4)
    assert discover([runs[1].out])[0].label == "trial-0"  # an output directory given directly


def test_api_serves_assets_and_incremental_metrics_on_localhost(tmp_path):
    root = make_run(tmp_path / "run", trials=1)
    server, thread = serve_in_thread([root], 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        base = f"http://127.0.0.1:{port}"
        status, ctype, body = get(base + "/")
        assert status == 200 and "text/html" in ctype and b'src="/app.js"' in body
        assert b"http" not in body.replace(b"http-equiv", b"")  # no external asset on the page
        for asset in ("/app.js", "/style.css"):
            assert get(base + asset)[0] == 200
        runs = json.loads(get(base + "/api/runs")[2])
        assert [r["label"] for r in runs] == ["demo", "demo/trial-0"]
        first = json.loads(get(base + "/api/metrics?run=0&offset=0")[2])
        assert [r["step"] for r in first["records"]] == [1, 2, 3, 4, 2]
        write(root / "out" / "metrics.jsonl", [rec(5, 2.4)], "a")
        more = json.loads(get(f"{base}/api/metrics?run=0&offset={first['offset']}")[2])
        assert [r["step"] for r in more["records"]] == [5]
        for bad, code in (("/api/metrics?run=9", 404), ("/api/metrics?run=0&offset=x", 400), ("/../plan.lock", 404)):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(base + bad)
            assert e.value.code == code
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_terminal_view_rows_and_one_frame(tmp_path, capsys):
    root = make_run(tmp_path / "run", trials=1)
    rows = Watch([root]).rows()
    assert rows[0]["step"] == "4/10" and rows[0]["loss"] == "2.6" and rows[0]["eval"] == "2.9"
    assert rows[0]["gpu"] == "0:90% 6.1G 1:80% 5.9G" and rows[0]["peak/est GiB"] == "5.5/6.5"
    assert rows[0]["eta"] == "0.2 min" and rows[1]["run"] == "demo/trial-0"
    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁" and sparkline([]) == ""
    assert run_tui([root], interval=0.01, frames=2, color=False) == 0
    out = capsys.readouterr().out
    assert "demo/trial-0" in out and "4/10" in out


def _chrome():
    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test drives chromium with selenium")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _wait(check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met within the timeout")


def test_page_draws_curves_updates_live_and_screenshots(tmp_path):
    root = make_run(tmp_path / "run", trials=1, steps=4)
    (root / "out" / "metrics.jsonl").write_text((root / "out" / "metrics.jsonl").read_text().replace(
        '"step": 3, "loss"', '"spike": {"metrics": {}}, "step": 3, "loss"'))
    driver = _chrome()
    server, thread = serve_in_thread([root], 0)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/?interval=200")

        def points(chart):
            return int(driver.find_element("id", chart).get_attribute("data-points") or 0)

        # loss: 4 + 3 train points and 1 eval point; memory: two GPUs × 4 + the torch peak × 4
        _wait(lambda: points("chart-loss") == 8)
        assert points("chart-mem") == 12 and points("chart-util") == 8 and points("chart-lr") == 7
        loss = driver.find_element("id", "chart-loss")
        assert len(loss.find_elements("css selector", "path")) == 3  # two runs' loss + the eval curve
        assert len(loss.find_elements("css selector", "circle.spike")) == 1
        mem = driver.find_element("id", "chart-mem")
        assert len(mem.find_elements("css selector", "line.dash")) == 2  # each run's estimated peak (one plan, two runs)
        write(root / "out" / "metrics.jsonl", [rec(5, 2.4)], "a")  # no reload
        _wait(lambda: points("chart-loss") == 9)
        # cards are rebuilt on every poll: read in one script call (a found element could go stale)
        step = driver.execute_script(
            'return document.querySelector(\'.run[data-run="0"] dd[data-key="step"]\').textContent')
        assert step == "5 / 10"
        shot = Path(os.environ.get("LOFT_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
        assert driver.save_screenshot(str(shot))
        from PIL import Image

        img = Image.open(shot).convert("RGB")
        assert img.size[0] >= 1000 and len(img.getcolors(1 << 20) or []) > 50  # a drawn page, not a blank one
        # the curve's colour is on the page (first run: #1f77b4)
        assert any(abs(r - 0x1F) < 30 and abs(g - 0x77) < 30 and abs(b - 0xB4) < 30
                   for _, (r, g, b) in img.getcolors(1 << 20))
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_started_beside_training_when_the_plan_asks(tmp_path):
    import socket

    from loft.runtime.dashboard import start_beside_training
    from loft.runtime.plan import Bundle

    def load(root: Path) -> Bundle:  # make_run writes a bundle-shaped dir, not a whole plan: no schema check
        return Bundle(root=root, plan=json.loads((root / "plan.lock").read_text()))

    root = make_run(tmp_path / "run")
    assert start_beside_training(load(root), print) is None  # tracking.dashboard is off by default
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    plan = json.loads((root / "plan.lock").read_text())
    plan["config"]["tracking"] = {"dashboard": True, "dashboard_port": port}
    (root / "plan.lock").write_text(json.dumps(plan))
    said: list[str] = []
    server = start_beside_training(load(root), said.append)
    try:
        assert server is not None and f"http://127.0.0.1:{port}/" in said[0]
        assert [r["label"] for r in json.loads(get(f"http://127.0.0.1:{port}/api/runs")[2])] == ["demo"]
        again = start_beside_training(load(root), said.append)  # the port is taken: said, not fatal
        assert again is None and "dashboard not started" in said[-1]
    finally:
        server.shutdown()
        server.server_close()


def test_measured_vs_estimate_table(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from loft.runtime.train.gpustats import measured_vs_estimate
    from measured_vs_estimate import markdown, rows

    root = make_run(tmp_path / "run")
    peaks = {"source": ["torch", "nvml"], "peak_allocated_gib": 5.2, "peak_reserved_gib": 5.6, "context_gib": 0.6}
    est = json.loads((root / "plan.lock").read_text())["estimate"]
    m = measured_vs_estimate(peaks, tokens=6000, runtime_s=100.0, estimate=est)
    assert m["peak_total_gib"] == 6.2 and m["tokens_per_s"] == 60.0
    assert m["ratio"] == {"total_gib": round(6.2 / 6.5, 4), "allocated_gib": 1.04, "tokens_per_s": 1.0}
    (root / "out" / "train_report.json").write_text(json.dumps({"status": "completed", "measured": m}))
    table = rows([root])
    assert table[0]["ratio_total"] == round(6.2 / 6.5, 4) and table[0]["gpu"] == "H100"
    assert "| demo | H100 | 6.2 | 6.5 |" in markdown(table)
