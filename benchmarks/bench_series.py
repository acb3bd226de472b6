#!/usr/bin/env python3
"""What a series costs the exporter: CPU per 1,000 series exposed.

A history-server target listing ``--apps`` running applications (the fleet
stand-in of bench_fleet.py, answering at once, in a process of its own; 23
series per application) is scraped:

- through the real exporter (``python -m sparkwatch``, a process of its own):
  ``--scrapes`` GET /metrics, the exporter's CPU time (user + system) per
  scrape and per 1,000 series, in the text format and in OpenMetrics;
- exposition only, in this process: the samples of one collection rendered
  ``--scrapes`` times the way /metrics renders them (``to_families`` and
  prometheus_client's text and OpenMetrics exposition), CPU per 1,000 series.

A change that slows the collectors or the exposition shows in these figures.

    .venv/bin/python benchmarks/bench_series.py [--apps 200] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psutil
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fleet import Fleet, fleet_server  # noqa: E402
from sparkwatch.collector import MetricSet, ScrapeContext, to_families  # noqa: E402
from sparkwatch.collectors.spark import SparkCollector, SparkTarget  # noqa: E402
from sparkwatch.scrape import Families  # noqa: E402
from testbed.exporter import count_series, exporter_process  # noqa: E402

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=50)
    a = ap.parse_args()

    with fleet_server(Fleet(a.apps, "history"), 0.0) as (url, _stats):
        # the whole exporter, in its own process
        with exporter_process({"exporter": {"scrape_timeout": 30},
                               "spark": [{"name": "history", "url": url}]}) as (base, exp):
            proc = psutil.Process(exp.pid)
            s = requests.Session()
            print(f"history server target, {a.apps} applications; exporter pid {exp.pid}, {a.scrapes} scrapes")
            for name, accept in (("text", "text/plain"), ("OpenMetrics", OPENMETRICS)):
                for _ in range(3):  # warm-up: connections, environment cache
                    text = s.get(base + "/metrics", headers={"Accept": accept}, timeout=60).text
                c0 = proc.cpu_times()
                t0 = time.perf_counter()
                for _ in range(a.scrapes):
                    text = s.get(base + "/metrics", headers={"Accept": accept}, timeout=60).text
                wall = (time.perf_counter() - t0) / a.scrapes
                c1 = proc.cpu_times()
                cpu = (c1.user - c0.user + c1.system - c0.system) / a.scrapes
                n = count_series(text)
                print(f"  GET /metrics ({name:11}): {n} series, {wall * 1000:6.1f} ms wall, exporter CPU "
                      f"{cpu * 1000:6.1f} ms per scrape = {cpu / n * 1e6:5.2f} ms per 1,000 series")
            s.close()

        # exposition only
        c = SparkCollector(SparkTarget(url=url, name="history"))
        try:
            out = MetricSet({"target": "history"})
            c.collect(out, ScrapeContext.within(30))
        finally:
            c.close()
        n = len(out)
        for name, render in (("text", generate_latest), ("OpenMetrics", generate_openmetrics)):
            c0 = time.process_time()
            for _ in range(a.scrapes):
                registry = CollectorRegistry(auto_describe=False)
                registry.register(Families(to_families([out])))
                render(registry)
            cpu = (time.process_time() - c0) / a.scrapes
            print(f"  exposition only ({name:11}): {n} series, {cpu * 1000:6.1f} ms per scrape = "
                  f"{cpu / n * 1e6:5.2f} ms per 1,000 series")
    return 0


if __name__ == "__main__":
    sys.exit(main())
