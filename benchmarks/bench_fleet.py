#!/usr/bin/env python3
"""One spark target listing many running applications, every endpoint slow.

Serves, from a process of its own, what a history server, a YARN ResourceManager
(with its web proxy) or a standalone master (with the driver UIs) answers for
``--apps`` running applications, every request answered after ``--delay``
seconds (default 20 ms): the Spark answers are the recorded ones of a real
Spark 4.0.1 driver (tests/data/spark-4.0.1), one copy per application with its
id. Then it runs the real Spark collector on that target (in this process,
as the exporter does) under a ``--deadline`` (default 10 s), a first scrape
(nothing cached: every application's /environment too) and ``--scrapes``
more, and prints per scrape: wall time, the exporter's CPU time,
applications read, series, the most
requests the server had in flight at once and the most connections it had
open at once (the target's ``max_concurrency`` bounds both).

A scrape that fails as a whole (the target down, e.g. its listing not read
within the deadline under load) is reported as the exporter reports it, its
reason in the errors column (``down:timeout``), and counted per target kind;
it fails the goals, it does not end the run.

A second table checks that the series count is linear in the applications
and independent of their jobs, stages and tasks: the same scrape with a
quarter, half and all of the applications, and with every application
running ``--jobs`` jobs (each with a stage of 100 tasks) instead of one.

    .venv/bin/python benchmarks/bench_fleet.py [--apps 200] [--delay 0.02] [--deadline 10]
        [--mode history|yarn|standalone|all] [--max-concurrency N] [--scrapes 5] [--jobs 200]

Needs no Spark: it runs in a minute.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch.collector import MetricSet, ScrapeContext, TargetError  # noqa: E402
from sparkwatch.collectors.spark import SparkCollector, SparkTarget  # noqa: E402
from testbed.counting_http import COUNTS_PATH, CountingServer  # noqa: E402

RECORDING = ROOT / "tests" / "data" / "spark-4.0.1"


class Fleet:
    """The answers of ``n`` running Spark applications; ``mode`` says who lists them."""

    def __init__(self, n: int, mode: str, jobs: int = 1):
        rec = {f: (RECORDING / f).read_bytes() for f in
               ("applications.json", "jobs.json", "stages.json", "executors.json", "environment.json", "metrics.json")}
        self.rec_id = json.loads((RECORDING / "index.json").read_text())["app_id"]
        self.mode = mode
        self.ids = [f"app-20261123045805-{i:04d}" for i in range(n)]
        self.yarn_ids = [f"application_1764400000000_{i:04d}" for i in range(n)]
        # /proxy/<id>: YARN's web proxy names the YARN application, a standalone master the Spark one
        self.proxied = {app_id: i for ids in (self.ids, self.yarn_ids) for i, app_id in enumerate(ids)}
        app = json.loads(rec["applications.json"])[0]
        if jobs > 1:  # many running jobs, each with an active stage of 100 tasks
            job = json.loads(rec["jobs.json"])[0]
            stage = json.loads(rec["stages.json"])[0]
            rec["jobs.json"] = json.dumps([dict(job, jobId=i, numTasks=100, numActiveTasks=100)
                                           for i in range(jobs)]).encode()
            rec["stages.json"] = json.dumps([dict(stage, stageId=i, status="ACTIVE", numTasks=100, numActiveTasks=100)
                                             for i in range(jobs)]).encode()
        self.rec = rec
        self.apps = []
        for i, app_id in enumerate(self.ids):
            self.apps.append(dict(app, id=app_id, name=f"service-{i}"))

    def answer(self, path: str, query: dict, base: str):
        """(status, body, content type) for ``path``."""
        if self.mode == "history":
            return self._ui(path, self.ids, history=True)
        if self.mode == "yarn":
            if path.rstrip("/") == "/ws/v1/cluster/apps":
                items = [{"id": yarn_id, "name": f"service-{i}", "state": "RUNNING",
                          "applicationType": "SPARK", "trackingUrl": f"{base}/proxy/{yarn_id}/"}
                         for i, yarn_id in enumerate(self.yarn_ids)]
                return 200, json.dumps({"apps": {"app": items}}).encode(), "application/json"
        if self.mode == "standalone":
            if path == "/json/":
                active = [{"id": app_id, "name": f"service-{i}", "state": "RUNNING"} for i, app_id in enumerate(self.ids)]
                return 200, json.dumps({"activeapps": active}).encode(), "application/json"
            if path == "/":
                rows = "".join(f'<tr><td><a href="app?appId={app_id}">{app_id}</a></td>'
                               f'<td><a href="{base}/proxy/{app_id}">service-{i}</a></td></tr>'
                               for i, app_id in enumerate(self.ids))
                return 200, f"<html><table>{rows}</table></html>".encode(), "text/html"
        if path.startswith("/proxy/"):
            proxied, _, rest = path[len("/proxy/"):].partition("/")
            if proxied in self.proxied:
                return self._ui("/" + rest, [self.ids[self.proxied[proxied]]], history=False)
        return 404, b"not found", "text/plain"

    def _ui(self, path: str, ids, history: bool):
        api = "/api/v1/applications"
        if path == api:
            apps = [a for a in self.apps if a["id"] in ids] if not history else self.apps
            return 200, json.dumps(apps).encode(), "application/json"
        if path in ("/metrics/json/", "/metrics/json"):
            if history:
                return 404, b"not found", "text/plain"
            return 200, self.rec["metrics.json"].replace(self.rec_id.encode(), ids[0].encode()), "application/json"
        if path.startswith(api + "/"):
            app_id, _, what = path[len(api) + 1:].partition("/")
            f = {"jobs": "jobs.json", "stages": "stages.json", "executors": "executors.json",
                 "environment": "environment.json"}.get(what)
            if f is not None and (app_id in ids):
                return 200, self.rec[f], "application/json"
        return 404, b"not found", "text/plain"


@contextmanager
def fleet_server(fleet: Fleet, delay: float):
    """A :class:`CountingServer` of the fleet in a process of its own (its CPU is not the
    exporter's); yields (url, stats) where ``stats(reset=False)`` returns its counts."""
    srv = CountingServer(lambda path, query: fleet.answer(path, query, srv.url), delay)
    proc = multiprocessing.get_context("fork").Process(target=srv.serve, daemon=True)
    proc.start()
    srv.httpd.server_close()  # the child serves; the listening socket stays open there
    ctl = requests.Session()

    def stats(reset: bool = False) -> dict:
        return ctl.get(srv.url + COUNTS_PATH + ("/reset" if reset else ""), timeout=10).json()

    try:
        for _ in range(100):
            try:
                stats()
                break
            except requests.RequestException:
                time.sleep(0.05)
        yield srv.url, stats
    finally:
        ctl.close()
        proc.terminate()
        proc.join(10)


def series(out: MetricSet) -> int:
    return len(out)


def run(mode: str, apps: int, delay: float, deadline: float, scrapes: int, max_concurrency, jobs: int = 1,
        verbose: bool = True):
    """[(wall, cpu, apps read, series, requests, max in flight, max connections, errors)] per scrape;
    errors: the reasons of the scrape's partial errors, or ``down:<reason>`` when the target
    failed as a whole (what the exporter reports as sparkwatch_target_up 0)."""
    fleet = Fleet(apps, mode, jobs)
    rows = []
    with fleet_server(fleet, delay) as (url, stats):
        kw = {"url": url, "name": "fleet", "timeout": deadline}
        if mode != "history":
            kw["discover"] = mode
        if max_concurrency:
            kw["max_concurrency"] = max_concurrency
        target = SparkTarget(**kw)
        c = SparkCollector(target)
        try:
            for i in range(1 + scrapes):
                stats(reset=True)
                out = MetricSet({"target": "fleet"})
                c0, t0 = time.process_time(), time.perf_counter()
                try:
                    c.collect(out, ScrapeContext.within(deadline))
                    errors = sorted(set(out.errors))
                except TargetError as e:  # the target down: the engine keeps none of its samples
                    out, errors = MetricSet({"target": "fleet"}), [f"down:{e.reason}"]
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                read = len({k[0] for md, ss in out.samples.items() if md.name == "spark_app" for k in ss})
                st = stats()
                rows.append((wall, cpu, read, series(out), st["requests"], st["max_in_flight"],
                             st["max_connections"], errors))
        finally:
            c.close()
    return target, rows


def failures(rows) -> str:
    """How many of ``rows``' scrapes failed and why, e.g. "2 of 6 scrapes: down:timeout 2";
    empty when none did."""
    counts = {}
    for row in rows:
        for e in row[7]:
            counts[e] = counts.get(e, 0) + 1
    bad = sum(1 for row in rows if row[7])
    if not bad:
        return ""
    return f"{bad} of {len(rows)} scrapes: " + ", ".join(f"{e} {n}" for e, n in sorted(counts.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.02, help="seconds before every answer")
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--mode", choices=["history", "yarn", "standalone", "all"], default="all")
    ap.add_argument("--max-concurrency", type=int, default=None, help="the target's (default: its default)")
    ap.add_argument("--scrapes", type=int, default=5, help="scrapes after the first")
    ap.add_argument("--jobs", type=int, default=200, help="running jobs per application in the series table")
    a = ap.parse_args()
    modes = ["history", "yarn", "standalone"] if a.mode == "all" else [a.mode]
    ok = True

    print(f"{a.apps} running applications, every answer after {a.delay * 1000:.0f} ms, deadline {a.deadline:g} s")
    print(f"{'target':11} {'scrape':>6} {'wall':>7} {'CPU':>7} {'apps read':>9} {'series':>7} {'requests':>8} "
          f"{'in flight':>9} {'conns':>5}  errors")
    for mode in modes:
        target, rows = run(mode, a.apps, a.delay, a.deadline, a.scrapes, a.max_concurrency)
        for i, (wall, cpu, read, n, reqs, mif, mc, errs) in enumerate(rows):
            label = "first" if i == 0 else f"{i + 1}"
            print(f"{mode:11} {label:>6} {wall:6.2f}s {cpu:6.2f}s {read:9d} {n:7d} {reqs:8d} {mif:9d} {mc:5d}  "
                  f"{','.join(errs) or '-'}")
            ok &= read == a.apps and wall < a.deadline and not errs and mif <= target.max_concurrency
        later = [r[0] for r in rows[1:]]
        if later:
            print(f"{mode:11} {'median':>6} {statistics.median(later):6.2f}s  (max_concurrency {target.max_concurrency}, "
                  f"max_applications {target.max_applications})")
        failed = failures(rows)
        if failed:
            print(f"{mode:11} {'failed':>6} {failed}")

    print()
    print("series against applications and their jobs (history server, second scrape):")
    print(f"{'apps':>5} {'jobs/app':>8} {'series':>7} {'series/app':>10}")
    per_app = set()
    for n in sorted({max(1, a.apps // 4), max(1, a.apps // 2), a.apps}):
        for jobs in (1, a.jobs):
            _, rows = run("history", n, 0.0, a.deadline, 1, a.max_concurrency, jobs=jobs)
            s, errs = rows[-1][3], rows[-1][7]
            if errs:  # a partial or failed scrape says nothing about the series of a whole one
                ok = False
                print(f"{n:5d} {jobs:8d} {'-':>7} {'-':>10}  {','.join(errs)}")
                continue
            per_app.add(s / n)
            print(f"{n:5d} {jobs:8d} {s:7d} {s / n:10.1f}")
    linear = len(per_app) == 1  # none (every scrape failed) is no evidence either
    print(f"series per application: {'constant' if linear else 'NOT constant'} ({', '.join(f'{x:.1f}' for x in sorted(per_app))})")
    ok &= linear
    print("all goals met" if ok else "GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
