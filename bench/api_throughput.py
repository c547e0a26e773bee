"""GET /api/bot: geekai against a plain Flask + sqlite3 peer serving the same JSON from the same
database, side by side, in interleaved rounds (wrk, 16 connections).

    python bench/api_throughput.py [--rounds 5] [--seconds 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ROOT, TOKEN, Spread, clean_env, free_port, print_result, ratio_spread, stop, wait_ok, wrk  # noqa: E402

TITLE = "GET /api/bot against a plain Flask + sqlite3 peer"
THROUGHPUT_TARGET = 0.8   # geekai's requests/s at least this fraction of the peer's
P99_TARGET = 1.25         # geekai's p99 latency at most this multiple of the peer's


def measure(rounds: int, seconds: float) -> dict:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with tempfile.TemporaryDirectory(prefix="geekai-bench-") as instance:
        port, peer_port = free_port(), free_port()
        geekai = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--instance", instance], cwd=ROOT,
                                  env=clean_env(GEEKAI_BOT_ENABLED="false"), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        peer = None
        try:
            wait_ok(f"http://127.0.0.1:{port}/api/bot", geekai, headers=auth)
            peer = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "peer_app.py"),
                                     os.path.join(instance, "geekai.sqlite"), str(peer_port), TOKEN], cwd=ROOT,
                                    env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_ok(f"http://127.0.0.1:{peer_port}/api/bot", peer, headers=auth)
            ours, theirs = {"rate": Spread(), "p99": Spread()}, {"rate": Spread(), "p99": Spread()}
            for name, url in (("geekai", port), ("peer", peer_port)):  # warm both up
                wrk(f"http://127.0.0.1:{url}/api/bot", 1, headers=auth)
            for _ in range(rounds):
                for series, url in ((ours, port), (theirs, peer_port)):
                    result = wrk(f"http://127.0.0.1:{url}/api/bot", seconds, headers=auth)
                    if result.errors:
                        raise RuntimeError(f"{result.errors} failed requests against port {url}")
                    series["rate"].add(result.requests_per_second)
                    series["p99"].add(result.p99_ms)
        finally:
            stop(geekai)
            if peer is not None:
                stop(peer)
    throughput = ratio_spread(ours["rate"], theirs["rate"])
    p99 = ratio_spread(ours["p99"], theirs["p99"])
    table = "\n".join([
        "| | requests/s, median (min–max) | p99 ms, median (min–max) |",
        "|---|---|---|",
        f"| geekai | {ours['rate'].show()} | {ours['p99'].show(2)} |",
        f"| plain Flask + sqlite3 | {theirs['rate'].show()} | {theirs['p99'].show(2)} |",
        f"| ratio geekai / peer | {throughput.show(2)} | {p99.show(2)} |",
    ])
    return {
        "title": TITLE,
        "command": f"python bench/api_throughput.py --rounds {rounds} --seconds {seconds:g}",
        "what": (f"`python app.py` (bot disabled) and `bench/peer_app.py` on the same database, each on "
                 f"waitress with 16 threads; {rounds} interleaved rounds of `wrk -t2 -c16 -d{seconds:g}s` with "
                 "the bearer token; ratios are taken round by round."),
        "table": table,
        "checks": [("throughput vs peer", throughput.median, f">= {THROUGHPUT_TARGET}",
                    throughput.median >= THROUGHPUT_TARGET),
                   ("p99 vs peer", p99.median, f"<= {P99_TARGET}", p99.median <= P99_TARGET)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    result = measure(args.rounds, args.seconds)
    print_result(result, digits=2)


if __name__ == "__main__":
    main()
