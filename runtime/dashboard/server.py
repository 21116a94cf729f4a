"""The dashboard's HTTP server: the page and its assets (all served from this package: it works offline) and
a small JSON API the page polls.

    GET /                         index.html (+ /app.js, /style.css)
    GET /api/runs                 [{id, label, estimate, report}] for every run (re-discovered: new trials appear)
    GET /api/metrics?run=ID&offset=B   {records, offset, reset}: metrics.jsonl lines after byte B

The standard library's ThreadingHTTPServer is enough for one user's browser; it binds 127.0.0.1 only
(reach it from a laptop through `ssh -L PORT:127.0.0.1:PORT box`).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from .runs import METRICS, Run, discover, read_from

HOST = "127.0.0.1"
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"), "/style.css": ("style.css", "text/css; charset=utf-8")}


class Dashboard:
    """The runs a server shows (`dirs` re-scanned on each /api/runs, so sweep trials show up as they start)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()

    def list_runs(self) -> list[dict[str, Any]]:
        runs = discover(self.dirs)
        with self.lock:
            self.runs = {r.id: r for r in runs}
        return [r.summary() for r in runs]

    def metrics(self, run_id: str, offset: int) -> dict[str, Any] | None:
        with self.lock:
            run = self.runs.get(run_id)
        if run is None:
            self.list_runs()
            with self.lock:
                run = self.runs.get(run_id)
        if run is None:
            return None
        records, new, reset = read_from(run.out / METRICS, offset)
        return {"records": records, "offset": new, "reset": reset}


def handler_for(dash: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "loft-dashboard"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the training log stays readable
            return

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
            self._send(status, json.dumps(obj, allow_nan=False, default=str).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path in ASSETS:
                name, ctype = ASSETS[url.path]
                self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), ctype)
                return
            q = parse_qs(url.query)
            if url.path == "/api/runs":
                self._json(dash.list_runs())
                return
            if url.path == "/api/metrics":
                try:
                    offset = max(0, int((q.get("offset") or ["0"])[0]))
                except ValueError:
                    self._json({"error": "offset must be an integer"}, HTTPStatus.BAD_REQUEST)
                    return
                body = dash.metrics((q.get("run") or [""])[0], offset)
                if body is None:
                    self._json({"error": "no such run"}, HTTPStatus.NOT_FOUND)
                else:
                    self._json(body)
                return
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

    return Handler


def make_server(dirs: list[Path], port: int = 0) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:`port` (0: any free port; see `server.server_address`)."""
    server = ThreadingHTTPServer((HOST, port), handler_for(Dashboard(dirs)))
    server.daemon_threads = True
    return server


def serve_in_thread(dirs: list[Path], port: int = 0) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = make_server(dirs, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="loft-dashboard", daemon=True)
    thread.start()
    return server, thread
