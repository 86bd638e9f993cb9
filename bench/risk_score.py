"""Learned risk score latency: µs per `risk.scoring.score` call on one checkout's features, next to the
public `Booster.predict` on the same single row.

Set-up: trains a model on generated traffic (`risk.training.train.model_train`, default 100,000 rows, the
default trees) into var/bench/risk/models, promotes it, then scores its hold-out rows one at a time (warm-up first)
through `score()` (the snapshot check, the feature row, LightGBM's single-row fast path) and through
`Booster.predict` on a 1x24 array. No database, no Redis.

    .venv/bin/python bench/risk_score.py
    .venv/bin/python bench/risk_score.py --rows 20000 --calls 50000

Target: p99 of score() < 50 µs. Writes bench/results/risk_score.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "risk_score.json"
sys.path.insert(0, str(ROOT))
from common import bench_env, percentile  # noqa: E402

TARGET_P99_US = 50.0


def _timed(fn, rows: list[dict], calls: int) -> list[float]:
    for row in rows[:500]:
        fn(row)
    took = []
    clock = time.perf_counter_ns
    for i in range(calls):
        row = rows[i % len(rows)]
        start = clock()
        fn(row)
        took.append((clock() - start) / 1000)
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--calls", type=int, default=20_000)
    args = p.parse_args()
    os.environ.update(bench_env("sqlite:///:memory:", LOG_LEVEL="ERROR"))
    import django

    django.setup()
    import numpy as np

    from risk import scoring
    from risk.training.generator import TrafficMix
    from risk.training.train import model_train

    result = model_train(TrafficMix(rows=args.rows))
    scoring.model_promote(result.version)
    rows = [json.loads(line) for line in result.holdout_path.read_text().splitlines()]
    model = scoring.model_load()
    assert model is not None and model.version == result.version

    def public(row: dict) -> float:
        values = np.array([[float(row[name]) for name in model.features]], dtype=np.float64)
        return float(model.booster.predict(values, num_threads=1)[0])

    figures = {"model": result.version, "trees": model.booster.num_trees(), "calls": args.calls}
    for name, fn in (("score", scoring.score), ("booster_predict", public)):
        took = _timed(fn, rows, args.calls)
        figures[name] = {
            "mean_us": round(statistics.fmean(took), 2),
            "p50_us": round(percentile(took, 50), 2),
            "p99_us": round(percentile(took, 99), 2),
        }
        f = figures[name]
        print(f"{name}: mean {f['mean_us']} µs, p50 {f['p50_us']} µs, p99 {f['p99_us']} µs")
    assert all(abs(scoring.score(row) - row["model_score"]) < 1e-6 for row in rows[:1000])
    figures["target_p99_us"] = TARGET_P99_US
    figures["ok"] = figures["score"]["p99_us"] < TARGET_P99_US
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"{'OK' if figures['ok'] else 'SLOW'}: score() p99 {figures['score']['p99_us']} µs (target < {TARGET_P99_US})"
    )


if __name__ == "__main__":
    main()
