"""bench/notify.py in two checkouts, back to back, printed side by side.

Absolute figures on a shared machine move by 2-3x from day to day, so a change is judged against another
checkout measured in the same minutes: the rounds alternate (baseline, this, baseline, this, ...) and the
table shows each side's median over the rounds of notify handling p50 / p99 per channel, and the ratio.

    git worktree add /tmp/cardshop-before <commit>      # e.g. main before the change
    .venv/bin/python bench/notify_vs.py /tmp/cardshop-before --rounds 3 --count 200

Both checkouts run with this checkout's interpreter (.venv); each writes its own bench/results/notify.json,
read back after each round. Writes ``bench/results/notify_vs.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "notify_vs.json"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("baseline", type=Path, help="another checkout of the project (a git worktree)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--count", type=int, default=200, help="callbacks per channel per round")
    p.add_argument("--db-prefix", default="cardshop_bench_vs")
    return p.parse_args()


def one_run(checkout: Path, count: int, dbname: str) -> dict[str, dict]:
    url = f"postgres://root@127.0.0.1:5432/{dbname}"
    cmd = [sys.executable, "bench/notify.py", "--count", str(count), "--database-url", url]
    subprocess.run(cmd, cwd=checkout, check=True, stdout=subprocess.DEVNULL)
    data = json.loads((checkout / "bench" / "results" / "notify.json").read_text())
    return {row["channel"]: row for row in data["channels"]}


def main() -> None:
    args = parse_args()
    sides = {"before": args.baseline.resolve(), "after": ROOT}
    runs: dict[str, list[dict[str, dict]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for side, checkout in sides.items():
            print(f"round {r + 1}/{args.rounds}: {side} ({checkout})", file=sys.stderr)
            runs[side].append(one_run(checkout, args.count, f"{args.db_prefix}_{side}"))
    channels = [c for c in runs["after"][0] if c in runs["before"][0]]
    table = []
    for c in channels:
        row = {"channel": c}
        for side in sides:
            for fig in ("handle_p50_ms", "handle_p99_ms"):
                row[f"{side}_{fig}"] = round(statistics.median(run[c][fig] for run in runs[side]), 2)
        row["p50_ratio"] = round(row["after_handle_p50_ms"] / row["before_handle_p50_ms"], 2)
        row["p99_ratio"] = round(row["after_handle_p99_ms"] / row["before_handle_p99_ms"], 2)
        table.append(row)
    print(f"notify handling, median of {args.rounds} alternating rounds x {args.count} callbacks (ms)")
    print(
        f"{'channel':<10} {'before p50':>10} {'after p50':>10} {'ratio':>6} {'before p99':>11} {'after p99':>10} {'ratio':>6}"
    )
    for row in table:
        print(
            f"{row['channel']:<10} {row['before_handle_p50_ms']:>10.2f} {row['after_handle_p50_ms']:>10.2f}"
            f" {row['p50_ratio']:>6.2f} {row['before_handle_p99_ms']:>11.2f} {row['after_handle_p99_ms']:>10.2f}"
            f" {row['p99_ratio']:>6.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rounds": args.rounds, "count": args.count, "channels": table}, indent=2))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
