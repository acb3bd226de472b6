#!/usr/bin/env python3
"""Scrape latency and CPU cost of the Spark collector on a real application
that has run at least 1,000 finished jobs.

It starts testbed/sparkapps/streaming_app.py (pyspark, local[2]; JvmSource and
streaming metrics on; 1,000 small jobs, one failed job, then a stateful
streaming query), checks through the REST API that the UI holds >= 1,000
succeeded jobs, then runs the real exporter (``python -m sparkwatch``, a process
of its own, configured with that one Spark target) and scrapes its /metrics N
times. Prints the median and p95 scrape latency (client side, GET /metrics),
the collector's own duration as the exporter reports it, and the exporter
process' CPU time (user + system) per scrape.

    .venv/bin/python benchmarks/bench_spark.py [--jobs 1000] [--scrapes 50] [--version 4.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.exporter import exporter_process, samples, value  # noqa: E402
from testbed.spark import SPARK_PYTHONS, spark_app  # noqa: E402


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--version", choices=list(SPARK_PYTHONS), default="4.0")
    a = ap.parse_args()

    t0 = time.monotonic()
    with spark_app(a.version, metrics=True, finished_jobs=a.jobs, failing_job=True, timeout=900) as app:
        started = time.monotonic() - t0
        succeeded = requests.get(f"{app.url}/api/v1/applications/{app.app_id}/jobs",
                                 params={"status": "succeeded"}, timeout=60).json()
        print(f"Spark {a.version} app {app.app_id}: {len(succeeded)} succeeded jobs in the UI "
              f"(ready after {started:.0f}s)")
        assert len(succeeded) >= a.jobs, "the application must hold the finished jobs"

        with exporter_process({"spark": [{"url": app.url, "name": "bench"}]}) as (base, exp):
            proc = psutil.Process(exp.pid)
            text = requests.get(base + "/metrics", timeout=30).text  # warm-up: connections, environment cache
            assert value(text, "sparkwatch_target_up", target="bench") == 1
            lat, own = [], []
            cpu0 = proc.cpu_times()
            for _ in range(a.scrapes):
                t = time.perf_counter()
                text = requests.get(base + "/metrics", timeout=30).text
                lat.append(time.perf_counter() - t)
                own.append(value(text, "sparkwatch_target_scrape_duration_seconds", target="bench"))
            cpu1 = proc.cpu_times()
            ss = samples(text)
            assert value(ss, "sparkwatch_target_up", target="bench") == 1
            cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / a.scrapes
            series = len([s for s in ss if s[0].startswith("spark_")])
            print(f"{a.scrapes} scrapes, {series} spark_* series per scrape")
            print(f"scrape latency (GET /metrics): median {statistics.median(lat) * 1000:.1f} ms, "
                  f"p95 {p95(lat) * 1000:.1f} ms")
            print(f"collector duration (sparkwatch_target_scrape_duration_seconds): median "
                  f"{statistics.median(own) * 1000:.1f} ms, p95 {p95(own) * 1000:.1f} ms")
            print(f"exporter CPU time per scrape: {cpu * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
