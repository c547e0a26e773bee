"""How many open live pages (SSE streams) the server holds while /healthz still answers.

Starts `python app.py` (bot disabled: only the web is measured) with a given STREAM_MAX_CLIENTS,
opens N event streams as N admin pages would, then times /healthz and /api/bot (what a page
refused a stream polls) while they stay open.

    python bench/stream_capacity.py [--pages 40] [--cap 8] [--cap 1000]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789"


def start_server(cap: int, instance: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKAI_")}
    env.update(NO_PROXY="127.0.0.1", GEEKAI_API_TOKEN=TOKEN, GEEKAI_ADMIN_PASSWORD="bench-password",
               GEEKAI_BOT_ENABLED="false", GEEKAI_STREAM_MAX_CLIENTS=str(cap))
    proc = subprocess.Popen([sys.executable, "app.py", "--port", "0", "--instance", instance],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("geekai: serving on "):
            return proc, line.split()[-1]
    raise SystemExit(f"server did not start (exit {proc.wait()})")


def open_stream(host: str, port: int) -> tuple[socket.socket, int]:
    """An admin page's EventSource: returns the socket (kept open) and the HTTP status."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(f"GET /api/bot/stream HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                 f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    try:
        status = int(sock.recv(64).split()[1])
    except (socket.timeout, IndexError):
        status = 0  # no answer in 5 s: every thread is busy
    return sock, status


def time_get(url: str, path: str, token: bool = False, tries: int = 20) -> tuple[float | None, int]:
    """Median milliseconds of successful GETs (timeout 2 s each) and how many failed."""
    times, failed = [], 0
    for _ in range(tries):
        request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"} if token else {})
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
            times.append((time.perf_counter() - began) * 1000)
        except OSError:
            failed += 1
    return (statistics.median(times) if times else None), failed


def measure(cap: int, pages: int) -> dict:
    with tempfile.TemporaryDirectory() as instance:
        proc, url = start_server(cap, instance)
        host, port = url.split("//")[1].rsplit(":", 1)
        socks = []
        try:
            statuses = []
            for _ in range(pages):
                sock, status = open_stream(host, int(port))
                socks.append(sock)
                statuses.append(status)
            healthz, healthz_failed = time_get(url, "/healthz")
            poll, poll_failed = time_get(url, "/api/bot", token=True)
        finally:
            for sock in socks:
                sock.close()
            proc.terminate()
            proc.wait(timeout=15)
    return {"cap": cap, "pages": pages, "streaming": statuses.count(200), "refused_503": statuses.count(503),
            "no_answer": statuses.count(0), "healthz_ms": healthz, "healthz_failed": healthz_failed,
            "poll_ms": poll, "poll_failed": poll_failed}


TITLE = "Open live pages while /healthz still answers"


def report(pages: int, caps: list[int]) -> dict:
    rows = ["| STREAM_MAX_CLIENTS | pages opened | streaming | refused (503, page polls) | no answer "
            "| /healthz median ms | /healthz failed of 20 | /api/bot median ms | /api/bot failed of 20 |",
            "|---|---|---|---|---|---|---|---|---|"]
    checks = []
    for cap in caps:
        r = measure(cap, pages)
        ms = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        rows.append(f"| {r['cap']} | {r['pages']} | {r['streaming']} | {r['refused_503']} | {r['no_answer']} "
                    f"| {ms(r['healthz_ms'])} | {r['healthz_failed']} | {ms(r['poll_ms'])} | {r['poll_failed']} |")
        if cap < 16:
            checks.append((f"/healthz failures with {pages} pages open, cap {cap}", r["healthz_failed"], "0",
                           r["healthz_failed"] == 0))
    return {
        "title": TITLE,
        "command": f"python bench/stream_capacity.py --pages {pages} " + " ".join(f"--cap {c}" for c in caps),
        "what": (f"`python app.py` (bot disabled) with a given STREAM_MAX_CLIENTS; {pages} admin pages open the "
                 "event stream and keep it open; then 20 GETs each of /healthz and /api/bot (what a refused "
                 "page polls). A cap above the server's 16 threads is cut to 12 at start (the second row)."),
        "table": "\n".join(rows),
        "checks": checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--cap", type=int, action="append", help="STREAM_MAX_CLIENTS values (default 8 and 1000)")
    args = parser.parse_args()
    print(report(args.pages, args.cap or [8, 1000])["table"])


if __name__ == "__main__":
    main()
