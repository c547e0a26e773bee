"""Payment receipts stored per second: this checkout against an older commit, side by side, and
against the plain-sqlite3 floor (the same writes without an ORM), in interleaved rounds.

The older commit is checked out in a temporary git worktree and driven by the same script
(bench/receipts_driver.py), so both run on this machine, at the same time, under the same load.

    python bench/receipts.py [--baseline f2b1567] [--rounds 3] [--count 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ROOT, Spread, clean_env, print_result, ratio_spread  # noqa: E402

TITLE = "Payment receipts per second against the previous release and the sqlite3 floor"
# The release before the receipts were made faster (issue 13 measured 413/s there).
BASELINE = "f2b1567"
TARGET = 2.0


def run_driver(source: str, script: str, count: int, orders: int) -> dict:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), str(count), str(orders)],
                         cwd=source, env=clean_env(), capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["booked"] != count or result["orders_paid"] != min(orders, (count + 9) // 10):
        raise RuntimeError(f"{source}: booked {result['booked']} of {count}, paid {result['orders_paid']}")
    return result


def measure(rounds: int, count: int, orders: int, baseline: str) -> dict:
    tree = tempfile.mkdtemp(prefix="geekai-baseline-")
    subprocess.run(["git", "worktree", "add", "--detach", tree, baseline], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        series = {"current": Spread(), "baseline": Spread(), "floor": Spread()}
        for _ in range(rounds):
            for name, source, script in (("current", ROOT, "receipts_driver.py"),
                                         ("baseline", tree, "receipts_driver.py"),
                                         ("floor", ROOT, "receipts_floor.py")):
                result = run_driver(source, script, count, orders)
                series[name].add(result["messages"] / result["seconds"])
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)
    speedup = ratio_spread(series["current"], series["baseline"])
    of_floor = ratio_spread(series["current"], series["floor"])
    table = "\n".join([
        "| | receipts/s, median (min–max) | vs the previous release | fraction of the floor |",
        "|---|---|---|---|",
        f"| this checkout | {series['current'].show()} | {speedup.show(2)} | {of_floor.show(2)} |",
        f"| previous release ({baseline}) | {series['baseline'].show()} | 1 | "
        f"{ratio_spread(series['baseline'], series['floor']).show(2)} |",
        f"| plain sqlite3, same writes | {series['floor'].show()} | | 1 |",
    ])
    return {
        "title": TITLE,
        "command": f"python bench/receipts.py --baseline {baseline} --rounds {rounds} --count {count}",
        "what": (f"The registered message handlers, called one message at a time as the bot's listener "
                 f"calls them, for {count} distinct WeChat Pay receipts ({orders} paying orders) and "
                 f"{count // 10} redeliveries, on a file SQLite database in WAL mode. Each receipt: raw "
                 "notice committed, sender check, parse, ledger row, order match, callback events queued in "
                 "the outbox, committed; every run checks that each receipt was booked once and each order "
                 f"paid once. {rounds} interleaved rounds of this checkout, the previous release (a git "
                 "worktree of it, same driver), and the same writes in plain sqlite3 (the floor)."),
        "table": table,
        "checks": [("receipts vs previous release", speedup.median, f">= {TARGET}", speedup.median >= TARGET),
                   ("receipts, fraction of the sqlite3 floor", of_floor.median, "(reported)", True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    result = measure(args.rounds, args.count, args.orders, args.baseline)
    print_result(result, digits=2)


if __name__ == "__main__":
    main()
