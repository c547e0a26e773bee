"""`make bench`: every benchmark, one after the other on this machine, into docs/PERFORMANCE.md.

Each figure is a ratio against a peer or a baseline measured in the same run (interleaved where
the benchmark allows), with min–max, so that a loaded or slower machine changes the absolute
numbers but not the comparison. Run on a quiet machine.

    python bench/run.py [--quick] [--write docs/PERFORMANCE.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import api_throughput  # noqa: E402
import first_answer  # noqa: E402
import logout_latency  # noqa: E402
import receipts  # noqa: E402
import stream_capacity  # noqa: E402
from common import ROOT, machine  # noqa: E402


def benchmarks(quick: bool):
    yield lambda: api_throughput.measure(rounds=3 if quick else 7, seconds=3 if quick else 5)
    yield lambda: receipts.measure(rounds=1 if quick else 3, count=500 if quick else 2000,
                                   orders=50 if quick else 200, baseline=receipts.BASELINE)
    yield lambda: first_answer.measure(runs=3 if quick else 11)
    yield lambda: logout_latency.measure(cycles=3 if quick else 10)
    yield lambda: stream_capacity.report(pages=40, caps=[8, 1000])


def render(results: list[dict], started: str, load_before: str, load_after: str, command: str) -> str:
    lines = ["# Performance", "",
             f"Written by `{command}` on {started} (UTC). Every figure below is measured in that one run, "
             "side by side with its peer or baseline; ratios are what to compare across machines.", "",
             f"Machine: {load_before}.  ", f"After the run: {load_after.split('; ')[-1]}.", "",
             "## Summary", "", "| check | measured | target | |", "|---|---|---|---|"]
    for result in results:
        for name, value, target, ok in result["checks"]:
            shown = f"{value:.2f}" if isinstance(value, float) else str(value)
            lines.append(f"| {name} | {shown} | {target} | {'met' if ok else '**missed**'} |")
    for result in results:
        lines += ["", f"## {result['title']}", "", result["what"], "", result["table"], "",
                  f"Reproduce: `{result['command']}`."]
    lines += ["", BACKGROUND]
    return "\n".join(lines) + "\n"


# What the former docs/benchmarks.md and docs/first-answer.md said that a run does not measure.
BACKGROUND = """## How to read these figures

- **Ratios, not absolute numbers.** The machine is usually shared: each benchmark runs its
  peer or baseline in the same run, interleaved round by round, and reports the median ratio
  with its min–max. The load average above says how busy the machine was; on a loaded machine
  the spread is wide and the absolute numbers low, but both sides pay the same.
- **The first answer.** `python app.py` checks the configuration (Flask only), binds the socket
  with waitress and answers `/healthz` from a small WSGI shim (`geekai/server.py`, `WarmingApp`)
  while SQLAlchemy, the models and the bot's runtime load in a thread: `/healthz` is the bare
  Flask figure, whatever the bot does. `/readyz` needs the whole app (database layer, models,
  blueprints, the previous process's state row replaced); requests in that window wait rather
  than fail or see a stale state. wxpy and itchat load with the first login attempt, APScheduler
  when the runtime starts (after the first answer), `requests` with the outbox's first send; a
  new, empty database gets its tables at once (stamped with the newest migration) instead of
  running every migration; geekai's bytecode is compiled by `make` and the image, not at each
  start. What is left is in the phase table: importing SQLAlchemy and Flask-SQLAlchemy alone
  takes longer than a bare Flask app's whole start, so no app built on Flask-SQLAlchemy answers
  its first `/readyz` within twice a bare Flask app's time; the stack's floor row measures that
  limit in the same run, and geekai's own part is what it adds on top of it.
- **Receipts.** The handler runs in one thread, as wxpy's listener calls it; each receipt is two
  commits (the raw notice first, so a crash loses nothing; then the booking), on file SQLite in
  WAL mode with `synchronous=NORMAL`, as the service runs; callbacks are only queued, not sent.
  Earlier single-machine figures (646 receipts/s on 2026-11-28, 413/s on another day under
  load) were absolute numbers from quieter or busier machines: compare the ratios instead.
- **GET /api/bot.** The state comes from the copy the state store keeps at each write
  (`geekai/bot/state_cache.py`); what is left per request is Flask and waitress themselves, the
  bearer check, the session, CSRF, metrics, language and security headers."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a check that it runs, not a result")
    parser.add_argument("--write", default=os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing (Debian: apt-get install wrk)")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    before = machine()
    results = []
    for number, bench in enumerate(benchmarks(args.quick), 1):
        try:
            results.append(bench())
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            results.append({"title": f"Benchmark {number} did not finish", "what": "", "command": "make bench",
                            "table": f"`{type(exc).__name__}: {exc}`",
                            "checks": [(f"benchmark {number}", "did not finish", "", False)]})
        print(f"done: {results[-1]['title']}", file=sys.stderr, flush=True)
    command = "make bench" + (" (--quick)" if args.quick else "")
    text = render(results, started, before, machine(), command)
    with open(args.write, "w", encoding="utf-8") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
