#!/usr/bin/env python3
"""A scrape of real Spark drivers against the raw fetches it is made of.

Starts ``max(--drivers)`` drivers of testbed/sparkapps/streaming_app.py
(pyspark, local[2]; JvmSource and streaming metrics on; ``--jobs`` finished
jobs, one failed job, then a stateful streaming query), then, in this process,
for each number of drivers N of ``--drivers`` (default ``1,3``), alternates
for ``--rounds`` rounds:

- raw: the five requests a scrape of a driver makes once its environment is
  cached (the application list, the metrics servlet, the application's running
  jobs, its active and failed stages, its executors), for each of the N drivers,
  all 5N at once, each from its own thread, with plain ``requests`` (one
  keep-alive session, the bodies read, nothing decoded);
- sparkwatch: one collection by each of N Spark collectors (one target per
  driver), each in a thread of its own started for the scrape, as the scrape
  engine runs targets (``SparkCollector.collect``, what
  ``sparkwatch_target_scrape_duration_seconds`` measures: the requests,
  decoding and checking the JSON, building the samples);
- with ``--sequential`` also the collectors with ``max_concurrency: 1`` (every
  request one after another, as sparkwatch did before it made requests ahead of time);
- with ``--compare DIR`` also the collectors of another copy of sparkwatch's
  source (``DIR``: the ``exporter/`` folder of another commit, e.g. from
  ``git archive``), loaded under another name: a change's before and after in
  the same rounds, under the same load.

``--replay`` serves the recorded answers of a Spark 4.0.1 driver
(``tests/data/spark-4.0.1``) instead, one server per driver, each in a process
of its own, answering at once with keep-alive (as Jetty does): no Spark, little
noise, and all of a round's time is the client's, the worst case for the ratio.

The figure, per N: the median of the per-round ratios sparkwatch / raw (each
round times both back to back, so that a burst of load on a shared machine
weighs on both sides of the ratio it falls in); the goal is at most 1.2x.
Printed besides: the ratio of the medians, the median and p90 wall times and
the CPU time of this process per scrape.

``--profile FILE`` then profiles ``--profile-rounds`` more scrapes of one driver
with cProfile in every thread (the collector's request threads included;
profiling slows everything down, so only the shares count), timed by each
thread's CPU time (``--profile-clock cpu``) or by the clock (``wall``: where
the threads wait), prints the top functions and writes the merged statistics
to FILE (``python -m pstats FILE``).

    .venv/bin/python benchmarks/bench_overhead.py [--drivers 1,3] [--jobs 1000] [--rounds 30] [--replay] \
        [--version 4.0] [--sequential] [--profile /tmp/overhead.pstats] [--profile-clock cpu]

Start it under the heavy-work lock on a shared machine (it starts Spark):
``flock /tmp/sparkwatch-heavy.lock .venv/bin/python benchmarks/bench_overhead.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import platform
import pstats
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List

import requests
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch.collector import MetricSet  # noqa: E402
from sparkwatch.collectors.spark import SparkCollector, SparkTarget  # noqa: E402
from testbed.counting_http import COUNTS_PATH, CountingServer  # noqa: E402
from testbed.spark import DATA, SPARK_PYTHONS, routes_from_recording, spark_app  # noqa: E402

GOAL = 1.2
REPLAYED = DATA / "spark-4.0.1"


@dataclass
class Replayed:
    """A driver replayed from a recording (what ``spark_app`` yields, as far as this needs)."""

    url: str
    app_id: str


@contextmanager
def replayed_driver() -> Iterator[Replayed]:
    """The recorded driver's answers from a :class:`CountingServer` in a process of its own
    (its CPU is not the client's)."""
    routes = routes_from_recording(REPLAYED)
    srv = CountingServer(lambda path, query: routes.get(path, (404, b"no such path", "text/plain")))
    proc = multiprocessing.get_context("fork").Process(target=srv.serve, daemon=True)
    proc.start()
    srv.httpd.server_close()  # the child serves; the listening socket stays open there
    try:
        for _ in range(100):
            try:
                requests.get(srv.url + COUNTS_PATH, timeout=10)
                break
            except requests.RequestException:
                time.sleep(0.05)
        yield Replayed(srv.url, json.loads((REPLAYED / "index.json").read_text())["app_id"])
    finally:
        proc.terminate()
        proc.join(10)


def median_ms(xs):
    return statistics.median(xs) * 1000


def fetches_of(app, target: SparkTarget) -> list:
    """The five requests of a scrape of ``app`` (environment cached), with the scrape's own parameters."""
    api = f"{app.url}/api/v1"
    a_ = f"{api}/applications/{app.app_id}"
    return [
        (f"{api}/applications", {"limit": target.max_applications + 1, "status": "running"}),
        (f"{app.url}/metrics/json/", None),
        (f"{a_}/jobs", {"status": "running"}),
        (f"{a_}/stages", {"status": ["active", "failed"]}),
        (f"{a_}/executors", None),
    ]


def collect(c) -> MetricSet:
    own = sys.modules[type(c).__module__.split(".")[0] + ".collector"]  # sparkwatch's, or --compare's
    out = own.MetricSet()
    c.collect(out, own.ScrapeContext.within(30))
    assert not out.errors, out.errors
    return out


def load_other(src: Path):
    """The Spark collector module of the sparkwatch source folder ``src``, imported as the
    package ``sparkwatch_other`` (its modules import each other relatively)."""
    import importlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("sparkwatch_other", src / "__init__.py",
                                                  submodule_search_locations=[str(src)])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["sparkwatch_other"] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module("sparkwatch_other.collectors.spark")


def collect_all(cs: List[SparkCollector]) -> int:
    """Each collector in a thread of its own, started now, as the scrape engine runs targets."""
    if len(cs) == 1:
        return len(collect(cs[0]))
    outs: Dict[int, int] = {}
    threads = [threading.Thread(target=lambda i, c: outs.__setitem__(i, len(collect(c))), args=(i, c))
               for i, c in enumerate(cs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == len(cs), "a collection failed"
    return sum(outs.values())


class ThreadProfiles:
    """cProfile in every thread: those started while it is on (``threading.setprofile``), and
    the collectors' request threads, which are started at their first request (so the
    collectors to profile are made while it is on)."""

    def __init__(self, timer=None):
        self.timer = timer
        self.profiles: List[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_):
        p = cProfile.Profile(self.timer) if self.timer is not None else cProfile.Profile()
        with self._lock:
            self.profiles.append(p)
        p.enable()  # replaces this hook in this thread

    def __enter__(self):
        threading.setprofile(self._start_in_thread)
        self._start_in_thread()
        return self

    def __exit__(self, *exc):
        threading.setprofile(None)
        self.profiles[0].disable()

    def stats(self) -> pstats.Stats:
        with self._lock:
            profiles = list(self.profiles)
        st = pstats.Stats(profiles[0], stream=io.StringIO())
        for p in profiles[1:]:
            p.create_stats()
            st.add(p)
        return st


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drivers", default="1,3", help="numbers of drivers scraped at once, comma-separated")
    ap.add_argument("--jobs", type=int, default=1000, help="finished jobs each application runs first")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--version", choices=list(SPARK_PYTHONS), default="4.0")
    ap.add_argument("--replay", action="store_true", help="recorded answers instead of real drivers")
    ap.add_argument("--sequential", action="store_true", help="also time the collectors with max_concurrency 1")
    ap.add_argument("--compare", metavar="DIR", help="also time the collectors of the sparkwatch source in DIR")
    ap.add_argument("--profile", metavar="FILE", help="then profile scrapes of one driver (cProfile, every thread)")
    ap.add_argument("--profile-rounds", type=int, default=200)
    ap.add_argument("--profile-clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: each thread's CPU time (where the exporter's CPU goes); wall: elapsed time "
                         "(where its threads wait: locks, sockets, each other)")
    a = ap.parse_args()
    counts = sorted({int(x) for x in a.drivers.split(",")})
    if not counts or counts[0] < 1:
        ap.error("--drivers: positive numbers")

    with ExitStack() as stack:
        # the drivers start one after another (each runs its jobs on both cores)
        if a.replay:
            apps = [stack.enter_context(replayed_driver()) for _ in range(counts[-1])]
            print(f"{len(apps)} replayed Spark 4.0.1 drivers ({REPLAYED.relative_to(ROOT)})")
        else:
            apps = [stack.enter_context(spark_app(a.version, metrics=True, finished_jobs=a.jobs, failing_job=True,
                                                  timeout=900)) for _ in range(counts[-1])]
        for app in apps if not a.replay else []:
            api = f"{app.url}/api/v1/applications/{app.app_id}"
            jobs = requests.get(f"{api}/jobs", timeout=60).json()
            stages = requests.get(f"{api}/stages", timeout=60).json()
            print(f"Spark {a.version} driver {app.url}, application {app.app_id}: {len(jobs)} jobs and "
                  f"{len(stages)} stages in its UI")

        targets = [SparkTarget(url=app.url, name=f"bench{i}", timeout=30) for i, app in enumerate(apps)]
        kinds = {"sparkwatch": [SparkCollector(t) for t in targets]}
        if a.compare:
            other = load_other(Path(a.compare))
            kinds[f"compared: {Path(a.compare).resolve().parent.name}"[:32]] = [
                other.SparkCollector(other.SparkTarget(url=app.url, name=f"cmp{i}", timeout=30))
                for i, app in enumerate(apps)]
        if a.sequential:
            kinds["sparkwatch, max_concurrency 1"] = [
                SparkCollector(SparkTarget(url=app.url, name=f"seq{i}", timeout=30, max_concurrency=1))
                for i, app in enumerate(apps)]
        fetches = {n: [f for app, t in zip(apps[:n], targets) for f in fetches_of(app, t)] for n in counts}
        session = requests.Session()
        session.mount("http://", HTTPAdapter(pool_maxsize=5))  # per driver (host and port)
        pool = ThreadPoolExecutor(max_workers=5 * counts[-1])

        def raw(n: int) -> int:
            futures = [pool.submit(lambda u, p: session.get(u, params=p, timeout=30).content, u, p)
                       for u, p in fetches[n]]
            return sum(len(f.result()) for f in futures)

        # warm-up: connections, the environment caches, the request threads, the drivers' JIT
        n_samples = {}
        for _ in range(3):
            for n in counts:
                raw(n)
                for name, cs in kinds.items():
                    n_samples[n] = collect_all(cs[:n])
        wall = {(n, name): [] for n in counts for name in ["raw", *kinds]}
        cpu = {k: 0.0 for k in wall}
        for _ in range(a.rounds):
            for (n, name) in wall:
                c0, t0 = time.process_time(), time.perf_counter()
                raw(n) if name == "raw" else collect_all(kinds[name][:n])
                wall[n, name].append(time.perf_counter() - t0)
                cpu[n, name] += time.process_time() - c0
        for cs in kinds.values():
            for c in cs:
                c.close()

        profile_text = None
        if a.profile:
            with ThreadProfiles(time.thread_time if a.profile_clock == "cpu" else None) as prof:
                c = SparkCollector(SparkTarget(url=apps[0].url, name="profiled", timeout=30))
                for _ in range(3):
                    collect(c)
                t0 = time.perf_counter()
                for _ in range(a.profile_rounds):
                    collect(c)
                took = time.perf_counter() - t0
            c.close()
            # the request threads' profiles are read once they have ended (a profile read while
            # its thread waits for work counts that wait with another thread's clock)
            end = time.monotonic() + 30
            while (any(t.name.startswith("sparkwatch-spark-profiled-io") for t in threading.enumerate())
                   and time.monotonic() < end):
                time.sleep(0.05)
            st = prof.stats()
            st.dump_stats(a.profile)
            buf = io.StringIO()
            st.stream = buf
            st.sort_stats("tottime").print_stats(30)
            st.sort_stats("cumulative").print_stats(40)
            profile_text = (f"cProfile ({a.profile_clock} time), {a.profile_rounds} scrapes of one driver (every thread; "
                            f"{took / a.profile_rounds * 1000:.1f} ms each under the profiler), "
                            f"statistics in {a.profile}:\n{buf.getvalue()}")
        pool.shutdown()
        session.close()

    print(f"\n{platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{a.rounds} rounds, alternating; raw = the 5 GETs of each driver, all at once, with plain requests")
    figures = {}
    for n in counts:
        print(f"\n{n} driver{'s' if n > 1 else ''} ({n_samples[n]} samples per scrape):")
        print(f"{'':32} {'median wall':>12} {'p90 wall':>10} {'CPU/scrape':>11} {'x raw':>7}")
        base = statistics.median(wall[n, "raw"])
        for name in ["raw", *kinds]:
            xs = wall[n, name]
            p90 = sorted(xs)[int(0.9 * (len(xs) - 1))]
            print(f"{name:32} {median_ms(xs):9.1f} ms {p90 * 1000:7.1f} ms {cpu[n, name] / a.rounds * 1000:8.1f} ms "
                  f"{statistics.median(xs) / base:6.2f}x")
        for name in kinds:
            per_round = [s / r for s, r in zip(wall[n, name], wall[n, "raw"])]
            figures[n, name] = statistics.median(per_round)
            print(f"{name} / raw: {figures[n, name]:.2f}x, the median of the {a.rounds} per-round ratios "
                  f"(ratio of the medians: {statistics.median(wall[n, name]) / base:.2f}x)")
    print()
    for n in counts:
        f = figures[n, "sparkwatch"]
        print(f"goal: a scrape of {n} driver{'s' if n > 1 else ''} within {GOAL}x the raw fetches "
              f"(median of per-round ratios): {f:.2f}x, {'met' if f <= GOAL else 'NOT met'}")
    if profile_text:
        print("\n" + profile_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
