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
    return "\n".join(lines) + "\n"


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
    for bench in benchmarks(args.quick):
        results.append(bench())
        print(f"done: {results[-1]['title']}", file=sys.stderr, flush=True)
    command = "make bench" + (" (--quick)" if args.quick else "")
    text = render(results, started, before, machine(), command)
    with open(args.write, "w", encoding="utf-8") as out:
        out.write(text)
    print(text)


if __name__ == "__main__":
    main()
