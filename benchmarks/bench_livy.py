#!/usr/bin/env python3
"""Scrape time and series count of the Livy and ZooKeeper collectors as the
number of Livy sessions grows (seed 000/001 sizes: up to 40,000).

- Livy: the REST stand-in of the tests (testbed/livy_server.py, in a
  process of its own) holding N sessions: 70 % success, 10 % dead, the rest
  running batches (each with a yarnAppMonitorThread in the thread dump), and 5
  idle interactive sessions.
- ZooKeeper: a real ZooKeeper server (Debian's package) holding Livy's state
  store with N batch recovery records.

The whole exporter runs in-process; a scrape is one GET /metrics. Prints one
line per size: the median scrape time of 5 scrapes and the number of series.
The series count must not depend on N.

    .venv/bin/python benchmarks/bench_livy.py [--sizes 100,1000,10000,40000] [--page-size 500]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kazoo.client import KazooClient  # noqa: E402

from testbed.exporter import running_exporter, samples, scrape  # noqa: E402
from testbed.procs import stop_process_group  # noqa: E402
from testbed.zookeeper import write_livy_store, zookeeper_server  # noqa: E402

SCRAPES = 5


def measure(config: dict):
    with running_exporter(config) as (base, _):
        scrape(base)  # warm up (connections, first-seen memory)
        times = []
        for _ in range(SCRAPES):
            t = time.perf_counter()
            text = scrape(base)
            times.append(time.perf_counter() - t)
    ss = samples(text)
    up = [s for s in ss if s[0] == "sparkwatch_target_up"]
    assert all(s[2] == 1 for s in up), f"a target is down: {up}"
    # the collector's own series (the exporter's self-metrics are the same for every size)
    own = [s for s in ss if not s[0].startswith("sparkwatch_")]
    return statistics.median(times), len(own), len(ss)


def bench_livy(sizes, page_size):
    print(f"Livy: GET /batches + /sessions (page_size {page_size}), /version, /metrics/threads")
    print(f"{'sessions':>10} {'scrape s':>9} {'series':>7} {'all':>5}")
    for n in sizes:
        running = n - n * 7 // 10 - n // 10 - 5
        # the stand-in runs in its own process: its JSON encoding must not share our GIL
        proc = subprocess.Popen([sys.executable, "-m", "testbed.livy_server", "--success", str(n * 7 // 10),
                                 "--dead", str(n // 10), "--running", str(running), "--idle", "5"],
                                cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            url = proc.stdout.readline().strip()
            cfg = {"exporter": {"scrape_timeout": 60},
                   "livy": [{"url": url, "name": "livy", "page_size": page_size, "process": "livy"}]}
            t, own, total = measure(cfg)
        finally:
            proc.stdin.close()  # the stand-in ends when its stdin closes
            stop_process_group(proc, grace=10)
            proc.stdout.close()
        print(f"{n:>10} {t:>9.3f} {own:>7} {total:>5}")


def bench_zookeeper(sizes):
    print("ZooKeeper: Livy state store (/livy/v1/batch), Stat only, plus mntr")
    print(f"{'records':>10} {'scrape s':>9} {'series':>7} {'all':>5}")
    with tempfile.TemporaryDirectory() as d, zookeeper_server(Path(d)) as zk:
        c = KazooClient(hosts=zk.hosts)
        c.start(30)
        try:
            for i, n in enumerate(sizes):
                prefix = f"livy{i}"
                write_livy_store(c, prefix, "batch", n)
                cfg = {"exporter": {"scrape_timeout": 60},
                       "zookeeper": [{"hosts": zk.hosts, "name": "zk", "paths": [f"/{prefix}/v1/batch"],
                                      "livy_state_store": {"key_prefix": prefix, "process": "livy"}}]}
                t, own, total = measure(cfg)
                print(f"{n:>10} {t:>9.3f} {own:>7} {total:>5}")
        finally:
            c.stop()
            c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000,40000")
    ap.add_argument("--page-size", type=int, default=500)
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    bench_livy(sizes, args.page_size)
    print()
    bench_zookeeper(sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
