#!/usr/bin/env python3
"""A scrape of one real Spark driver against the raw fetches it is made of.

Starts testbed/sparkapps/streaming_app.py (pyspark, local[2]; JvmSource and
streaming metrics on; ``--jobs`` finished jobs, one failed job, then a
stateful streaming query), then, in this process, alternates for ``--rounds``
rounds:

- raw: the five requests a scrape of a driver makes once its environment is
  cached (the application list, the metrics servlet, the application's running
  jobs, its active and failed stages, its executors), all five at once, each
  from its own thread, with plain ``requests`` (one keep-alive session, the
  bodies read, nothing decoded);
- sparkwatch: one collection by the Spark collector (``SparkCollector.collect``,
  what ``sparkwatch_target_scrape_duration_seconds`` measures: the requests,
  decoding and checking the JSON, building the samples);
- with ``--sequential`` also the collector with ``max_concurrency: 1`` (every
  request one after another, as sparkwatch did before it made requests ahead of time).

Prints the median wall time of each, their ratio (the goal: at most 1.2), the
median of the per-round ratios, and the CPU time per scrape.

    .venv/bin/python benchmarks/bench_overhead.py [--jobs 1000] [--rounds 30] [--version 4.0] [--sequential]

Start it under the heavy-work lock on a shared machine (it starts Spark):
``flock /tmp/sparkwatch-heavy.lock .venv/bin/python benchmarks/bench_overhead.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch.collector import MetricSet, ScrapeContext  # noqa: E402
from sparkwatch.collectors.spark import SparkCollector, SparkTarget  # noqa: E402
from testbed.spark import SPARK_PYTHONS, spark_app  # noqa: E402


def median_ms(xs):
    return statistics.median(xs) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000, help="finished jobs the application runs first")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--version", choices=list(SPARK_PYTHONS), default="4.0")
    ap.add_argument("--sequential", action="store_true", help="also time the collector with max_concurrency 1")
    a = ap.parse_args()

    with spark_app(a.version, metrics=True, finished_jobs=a.jobs, failing_job=True, timeout=900) as app:
        api = f"{app.url}/api/v1"
        jobs = requests.get(f"{api}/applications/{app.app_id}/jobs", timeout=60).json()
        stages = requests.get(f"{api}/applications/{app.app_id}/stages", timeout=60).json()
        print(f"Spark {a.version} driver {app.url}, application {app.app_id}: {len(jobs)} jobs and "
              f"{len(stages)} stages in its UI")

        target = SparkTarget(url=app.url, name="bench", timeout=30)
        collectors = {"sparkwatch": SparkCollector(target)}
        if a.sequential:
            collectors["sparkwatch, max_concurrency 1"] = SparkCollector(
                SparkTarget(url=app.url, name="seq", timeout=30, max_concurrency=1))
        # the five requests of a scrape (environment cached), with the scrape's own parameters
        a_ = f"{api}/applications/{app.app_id}"
        fetches = [
            (f"{api}/applications", {"limit": target.max_applications + 1, "status": "running"}),
            (f"{app.url}/metrics/json/", None),
            (f"{a_}/jobs", {"status": "running"}),
            (f"{a_}/stages", {"status": ["active", "failed"]}),
            (f"{a_}/executors", None),
        ]
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_maxsize=len(fetches)))
        pool = ThreadPoolExecutor(max_workers=len(fetches))

        def raw():
            futures = [pool.submit(lambda u, p: session.get(u, params=p, timeout=30).content, u, p)
                       for u, p in fetches]
            return sum(len(f.result()) for f in futures)

        def scrape(c):
            out = MetricSet()
            c.collect(out, ScrapeContext.within(30))
            assert not out.errors, out.errors
            return out

        # warm-up: connections, the environment cache, the JIT of the driver
        for _ in range(3):
            raw()
            n_samples = len(scrape(collectors["sparkwatch"]))
            for c in collectors.values():
                scrape(c)
        wall = {name: [] for name in ["raw", *collectors]}
        cpu = {name: 0.0 for name in wall}
        for _ in range(a.rounds):
            for name in wall:
                c0, t0 = time.process_time(), time.perf_counter()
                raw() if name == "raw" else scrape(collectors[name])
                wall[name].append(time.perf_counter() - t0)
                cpu[name] += time.process_time() - c0
        pool.shutdown()
        session.close()
        for c in collectors.values():
            c.close()

    print(f"{a.rounds} rounds, alternating; {n_samples} samples per scrape; "
          f"raw = {len(fetches)} GETs at once with plain requests")
    print(f"{'':32} {'median wall':>12} {'p90 wall':>10} {'CPU/scrape':>11} {'x raw':>7}")
    base = statistics.median(wall["raw"])
    for name, xs in wall.items():
        p90 = sorted(xs)[int(0.9 * (len(xs) - 1))]
        print(f"{name:32} {median_ms(xs):9.1f} ms {p90 * 1000:7.1f} ms {cpu[name] / a.rounds * 1000:8.1f} ms "
              f"{statistics.median(xs) / base:6.2f}x")
    per_round = [s / r for s, r in zip(wall["sparkwatch"], wall["raw"])]
    print(f"sparkwatch / raw, median of the per-round ratios: {statistics.median(per_round):.2f}x (goal: <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
