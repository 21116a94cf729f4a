"""`loft dashboard RUN [RUN ...] [--port N] [--tui]`: a live view of metrics.jsonl (and `tracking.dashboard`
in the plan starts the server beside training). See server.py (browser page) and tui.py (terminal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..plan import Bundle

DEFAULT_PORT = 8765


def start_beside_training(bundle: Bundle, say: Callable[[str], None]) -> Any:
    """When the plan's `tracking.dashboard` is true: serve the run's dashboard from a daemon thread of
    the training process (rank 0). A port already taken is said, not fatal: training matters more."""
    tracking = bundle.config.get("tracking") or {}
    if not tracking.get("dashboard"):
        return None
    from .server import serve_in_thread

    port = int(tracking.get("dashboard_port") or DEFAULT_PORT)
    try:
        server, _ = serve_in_thread([bundle.root], port)
    except OSError as e:
        say(f"dashboard not started: 127.0.0.1:{port}: {e.strerror or e}; run `loft dashboard {bundle.root} --port N`")
        return None
    say(f"dashboard: http://127.0.0.1:{server.server_address[1]}/  (from a laptop: ssh -L {port}:127.0.0.1:{port} box)")
    return server


def main(argv: Sequence[str]) -> int:
    from ..jsonout import Parser, fail, parse, print_ok
    from ..progress import color_enabled

    ap = Parser(prog="loft dashboard", description="live view of one or more runs' metrics.jsonl "
                                 "(bundles, their sweep trials, or output directories), on 127.0.0.1")
    ap.add_argument("runs", nargs="+", metavar="RUN", help="bundle directory (plan.lock) or output directory")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any)")
    ap.add_argument("--tui", action="store_true", help="terminal view instead of the web page")
    ap.add_argument("--interval", type=float, default=2.0, help="terminal view refresh, seconds")
    ap.add_argument("--once", action="store_true", help="terminal view: print one frame and exit")
    ap.add_argument("--json", action="store_true", help="print the runs' current state (what the page shows: "
                    "latest metrics, ETA, measured vs estimated peak memory) as one JSON object and exit")
    parsed = parse(ap, list(argv))
    if isinstance(parsed, int):
        return parsed
    args = parsed
    dirs = [Path(r) for r in args.runs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        return fail("loft dashboard", f"no such directory: {', '.join(missing)}", "not-found", args.json,
                    file=missing[0])
    if args.json:
        from .runs import snapshot

        print_ok({"runs": snapshot(dirs)})
        return 0
    if args.tui or args.once:
        from .tui import run_tui

        return run_tui(dirs, args.interval, 1 if args.once else None, color=color_enabled())
    from .server import make_server

    try:
        server = make_server(dirs, args.port)
    except OSError as e:
        return fail("loft dashboard", f"cannot listen on 127.0.0.1:{args.port}: {e.strerror or e} (try --port N)",
                    "port", args.json)
    port = server.server_address[1]
    print(f"loft dashboard: http://127.0.0.1:{port}/  (Ctrl-C stops; from a laptop: "
          f"ssh -L {port}:127.0.0.1:{port} THIS_BOX)", flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
