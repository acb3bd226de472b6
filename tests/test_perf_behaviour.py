"""What the fleet-scale work (issue 14) promises, as behaviour rather than timing:
the requests to one target are bounded in number at once, every application of
a large listing is read, a failing application's prefetched answers cost that
application only, the applications listed last time are requested together
with the list, no thread outlives a scrape, and the shared request watchdog
still ends every request at its own deadline. The figures are in
benchmarks/bench_fleet.py, bench_overhead.py, bench_jvm_fleet.py, bench_leak.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, Iterator, Optional

import pytest

from sparkwatch.collector import Deadline, MetricSet, ScrapeContext, TargetError
from sparkwatch.collectors.spark import SparkCollector, SparkTarget
from sparkwatch.httpclient import HttpClient, requests_in_flight
from sparkwatch.collectors.spark.cache import EnvironmentCache
from sparkwatch.collectors.spark.scrape import scrape_spark_ui
from testbed.counting_http import CountingServer
from testbed.exporter import no_scrape_threads_within
from testbed.spark import load_recording, recording_dirs

REC_DIR = recording_dirs()[-1]
REC = load_recording(REC_DIR)
REC_ID = REC["index"]["app_id"]
JSON = "application/json"


def Counting(answer: Callable[[str], tuple], delay: float = 0.0) -> CountingServer:  # noqa: N802
    """A :class:`CountingServer` answering ``answer(path)``."""
    return CountingServer(lambda path, query: answer(path), delay)


def _body(name: str) -> bytes:
    return (REC_DIR / name).read_bytes()


def history(n: int, broken: Optional[Dict[str, tuple]] = None) -> Callable[[str], tuple]:
    """A history server of ``n`` running applications (the recorded 4.0 driver's answers,
    one copy per application); ``broken`` maps a path to the answer it gets instead."""
    app = json.loads(_body("applications.json"))[0]
    ids = [f"app-{i:04d}" for i in range(n)]
    listing = json.dumps([dict(app, id=i, name=f"svc-{i}") for i in ids]).encode()
    bodies = {what: _body(f"{what}.json") for what in ("jobs", "stages", "executors", "environment")}
    broken = broken or {}

    def answer(path: str):
        if path in broken:
            return broken[path]
        if path == "/api/v1/applications":
            return 200, listing, JSON
        if path.startswith("/api/v1/applications/"):
            app_id, _, what = path[len("/api/v1/applications/"):].partition("/")
            if app_id in ids and what in bodies:
                return 200, bodies[what], JSON
        return 404, b"no such path", "text/plain"

    return answer


def app_ids(out: MetricSet):
    return sorted({key[0] for md, ss in out.samples.items() if md.name == "spark_app" for key in ss})


# ---------------------------------------------------------------- the concurrency bound


def test_a_history_target_never_has_more_than_max_concurrency_requests_or_connections():
    with Counting(history(60), delay=0.01) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="h", max_concurrency=3))
        try:
            for _ in range(2):
                out = MetricSet()
                c.collect(out, ScrapeContext.within(30))
                assert out.errors == []
                assert len(app_ids(out)) == 60
        finally:
            c.close()
    assert srv.max_in_flight <= 3, srv.max_in_flight
    assert srv.max_conns <= 3, srv.max_conns
    assert srv.max_in_flight >= 2  # and the requests do run concurrently


def io_threads(name: str):
    return [t for t in threading.enumerate() if t.name.startswith(f"sparkwatch-spark-{name}-io")]


def test_a_targets_request_threads_are_kept_between_scrapes_bounded_and_end_with_the_target():
    """Starting threads per scrape cost more than the requests to a driver: a
    spark target keeps at most max_concurrency request threads, the same ones
    from scrape to scrape, none with a request in flight once a scrape has
    returned; closing the target (shutdown, an evicted probe target) ends them."""
    with Counting(history(20), delay=0.005) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="kept", max_concurrency=3))
        try:
            seen = set()
            for _ in range(4):
                out = MetricSet()
                c.collect(out, ScrapeContext.within(30))
                assert out.errors == [] and len(app_ids(out)) == 20
                assert requests_in_flight() == 0
                threads = io_threads("kept")
                assert 1 <= len(threads) <= 3, [t.name for t in threads]
                seen |= {t.ident for t in threads}
            assert len(seen) <= 3  # reused, not started anew per scrape
        finally:
            c.close()
        end = time.monotonic() + 2
        while io_threads("kept") and time.monotonic() < end:
            time.sleep(0.02)
        assert not io_threads("kept")
        # a closed target still answers a scrape running at that moment: its requests
        # are made in the scraping thread
        c2 = SparkCollector(SparkTarget(url=srv.url, name="closed", max_concurrency=3))
        c2.pool.close()
        try:
            for _ in range(2):
                out = MetricSet()
                c2.collect(out, ScrapeContext.within(30))
                assert out.errors == [] and len(app_ids(out)) == 20
        finally:
            c2.close()
        assert not io_threads("closed")


def test_a_cluster_target_never_has_more_than_max_concurrency_requests_at_once():
    n = 30
    ui = history(1)

    def answer(path: str):
        if path == "/ws/v1/cluster/apps":
            apps = [{"id": f"application_1_{i:04d}", "name": f"a{i}", "state": "RUNNING",
                     "trackingUrl": f"{srv.url}/proxy/application_1_{i:04d}/"} for i in range(n)]
            return 200, json.dumps({"apps": {"app": apps}}).encode(), JSON
        if path.startswith("/proxy/"):
            _, _, rest = path[len("/proxy/"):].partition("/")
            return ui("/" + rest)
        return 404, b"", "text/plain"

    with Counting(answer, delay=0.01) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="y", discover="yarn", max_concurrency=4))
        try:
            out = MetricSet()
            c.collect(out, ScrapeContext.within(30))
        finally:
            c.close()
    assert [v for md, ss in out.samples.items() if md.name == "spark_cluster_applications_scraped"
            for v in ss.values()] == [n]
    assert srv.max_in_flight <= 4 and srv.max_conns <= 4, (srv.max_in_flight, srv.max_conns)


def test_the_http_client_bound_holds_for_any_number_of_threads_and_waits_no_longer_than_the_deadline():
    with Counting(lambda p: (200, b"[]", JSON), delay=0.05) as srv:
        http = HttpClient(SparkTarget(url=srv.url), max_concurrency=2)
        errors = []

        def get(deadline):
            try:
                http.get_json("/x", deadline)
            except TargetError as e:
                errors.append(e.reason)

        try:
            threads = [threading.Thread(target=get, args=(Deadline(30),)) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == [] and srv.max_in_flight <= 2
            # every slot taken for longer than a request's deadline: that request times out
            srv.delay = 3.0
            busy = [threading.Thread(target=get, args=(Deadline(30),)) for _ in range(2)]
            for t in busy:
                t.start()
            end = time.monotonic() + 10
            while srv.in_flight < 2 and time.monotonic() < end:  # both slots taken
                time.sleep(0.01)
            assert srv.in_flight == 2
            t0 = time.monotonic()
            with pytest.raises(TargetError) as e:
                http.get_json("/x", Deadline(0.3))
            assert e.value.reason == "timeout" and "slot" in e.value.message
            assert time.monotonic() - t0 < 1.5  # a request that waited for a slot would take 3 s
            for t in busy:
                t.join()
        finally:
            http.close()


def test_no_connection_pool_warning_with_more_concurrency_than_urllib3s_default_pool(caplog):
    # each answer held 0.5 s: all 16 requests are in flight together even on a busy machine
    with Counting(lambda p: (200, b"[]", JSON), delay=0.5) as srv:
        http = HttpClient(SparkTarget(url=srv.url), max_concurrency=16)
        try:
            with caplog.at_level(logging.WARNING, logger="urllib3"):
                for _ in range(2):
                    threads = [threading.Thread(target=http.get_json, args=("/x", Deadline(30))) for _ in range(16)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
        finally:
            http.close()
    assert srv.max_in_flight > 10
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert srv.max_conns <= 16


# ---------------------------------------------------------------- every application, errors stay local


def test_every_one_of_200_applications_is_read_with_the_default_settings():
    target = SparkTarget(url="http://unused")
    assert target.max_applications >= 200
    with Counting(history(200)) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="h"))
        try:
            out = MetricSet()
            c.collect(out, ScrapeContext.within(60))
        finally:
            c.close()
    assert out.errors == []
    assert app_ids(out) == [f"app-{i:04d}" for i in range(200)]
    # one servlet, the list, and four requests per application
    assert len(srv.paths) == 2 + 4 * 200
    assert no_scrape_threads_within()


def test_prefetched_errors_cost_their_application_only():
    a = "/api/v1/applications/app-"
    broken = {
        a + "0003/stages": (500, b"<html>oops</html>", "text/html"),
        a + "0007/executors": (200, b"<html>a proxy page</html>", "text/html"),
        a + "0011/jobs": (200, lambda: (time.sleep(6.0), b"[]")[1], JSON),  # beyond the 2 s request timeout
        a + "0013/environment": (200, b'{"sparkProperties": 5}', JSON),
        a + "0017/jobs": (404, b"gone", "text/plain"),
    }
    with Counting(history(40, broken)) as srv:
        http = HttpClient(SparkTarget(url=srv.url, timeout=2.0), max_concurrency=6)
        out = MetricSet()
        try:
            n = scrape_spark_ui(http, srv.url, out, Deadline(30), max_concurrency=6)
        finally:
            http.close()
    bad = {"app-0003", "app-0007", "app-0011", "app-0013", "app-0017"}
    assert n == 35
    assert app_ids(out) == sorted(f"app-{i:04d}" for i in range(40) if f"app-{i:04d}" not in bad)
    assert out.errors == ["partial"] * 5
    assert no_scrape_threads_within()


def test_a_fatal_error_ends_the_scrape_and_leaves_no_thread():
    """Connection refused for everything after the list: the target is down
    (connection), and the pool's threads are gone with the scrape."""
    listing = history(50)("/api/v1/applications")
    with Counting(lambda p: listing if p == "/api/v1/applications" else (401, b"no", "text/plain")) as srv:
        http = HttpClient(SparkTarget(url=srv.url), max_concurrency=4)
        try:
            with pytest.raises(TargetError) as e:
                scrape_spark_ui(http, srv.url, MetricSet(), Deadline(30), max_concurrency=4)
        finally:
            http.close()
    assert e.value.reason == "auth"
    assert no_scrape_threads_within()


def test_a_sequential_scrape_makes_the_same_requests_in_the_old_order():
    with Counting(history(3)) as srv:
        http = HttpClient(SparkTarget(url=srv.url))
        out = MetricSet()
        try:
            scrape_spark_ui(http, srv.url, out, Deadline(30), max_concurrency=1)
        finally:
            http.close()
    paths = [p.split("?")[0] for p in srv.paths]
    a = "/api/v1/applications"
    expected = [a, "/metrics/json/"]
    for i in range(3):
        # the environment first: it says whether the application runs in local mode, where the
        # driver is the executor (counted in spark_executors_active)
        expected += [f"{a}/app-{i:04d}/{w}" for w in ("environment", "jobs", "stages", "executors")]
    assert paths == expected
    assert len(app_ids(out)) == 3


# ---------------------------------------------------------------- the previous listing goes out with the list


def test_the_applications_listed_last_time_are_requested_with_the_list_and_vanished_ones_dropped():
    state = {"n": 3}
    answer = history(3)
    app = json.loads(_body("applications.json"))[0]

    def listing_of_now(path):
        if path == "/api/v1/applications":
            return 200, json.dumps([dict(app, id=f"app-{i:04d}", name=f"svc-{i}") for i in range(state["n"])]).encode(), JSON
        return answer(path)

    with Counting(listing_of_now, delay=0.05) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="d"))
        try:
            c.collect(MetricSet(), ScrapeContext.within(30))
            srv.paths.clear()
            srv.max_in_flight = 0
            srv.delay = 0.5  # long enough that every request is sent while the first is held, even on a busy machine
            out = MetricSet()
            c.collect(out, ScrapeContext.within(30))
            second = list(srv.paths)
            assert len(second) == 2 + 3 * 3  # environment cached
            # the list, the servlet and every application's three requests at once, as many as allowed
            assert srv.max_in_flight == min(len(second), c.config.max_concurrency)
            assert len(app_ids(out)) == 3
            state["n"] = 1  # two applications end
            srv.paths.clear()
            out = MetricSet()
            c.collect(out, ScrapeContext.within(30))
        finally:
            c.close()
    assert app_ids(out) == ["app-0000"]
    assert out.errors == []  # the answers for the ended applications are dropped, not errors


def test_the_environment_cache_and_the_listings_are_bounded():
    t = [0.0]
    cache = EnvironmentCache(ttl=300, clock=lambda: t[0])
    for i in range(1000):
        t[0] = i
        cache.put((f"http://ui-{i}", "app", ""), object())
        cache.remember_listing(f"http://ui-{i}", [{"id": "app"}])
    assert len(cache._items) <= 64 + 301
    assert len(cache._listings) == EnvironmentCache.MAX_LISTINGS
    assert cache.listing("http://ui-999") == [{"id": "app"}] and cache.listing("http://ui-0") == []
    cache.retain_bases(["http://ui-999"])
    assert list(cache._listings) == ["http://ui-999"]


# ---------------------------------------------------------------- the shared watchdog


@contextmanager
def trickling() -> Iterator[str]:
    """Answers the status line, then one header byte every 0.1 s, forever."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    stop = threading.Event()

    def serve(conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():
                conn.sendall(b"X")
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            conn.close()

    def loop():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        srv.close()


def test_concurrent_requests_each_end_at_their_own_deadline():
    with trickling() as url:
        http = HttpClient(SparkTarget(url=url, timeout=30))
        ended: Dict[float, float] = {}

        def get(seconds):
            t0 = time.monotonic()
            with pytest.raises(TargetError) as e:
                http.get("/x", Deadline(seconds))
            assert e.value.reason == "timeout"
            ended[seconds] = time.monotonic() - t0

        try:
            threads = [threading.Thread(target=get, args=(s,)) for s in (6.0, 1.0, 3.0)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
        finally:
            http.close()
    assert sorted(ended) == [1.0, 3.0, 6.0]
    for seconds, took in ended.items():  # each at its own deadline, well before the next one
        assert seconds - 0.05 <= took < seconds + 1.5, ended
    assert no_scrape_threads_within()


def test_requests_register_while_the_watchdog_thread_is_starting():
    """Starting the watchdog's thread waits until the thread runs, which takes a while on
    a busy machine: the other requests of the scrape must not queue behind it. The first
    request's thread start is held until a second request has registered; before, the
    second waited for the first's start (the start ran under the watchdog's lock)."""
    from sparkwatch.httpwatch import Watchdog

    dog = Watchdog()
    second_registered = threading.Event()
    real_start = threading.Thread.start

    def held_start(thread):
        if thread.name == "sparkwatch-http-deadline":
            second_registered.wait(10)
        real_start(thread)

    class Dummy:
        def _fire(self):
            pass

    entries = []
    first = threading.Thread(target=lambda: entries.append(dog.add(Dummy(), time.monotonic() + 60)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading.Thread, "start", held_start)
        real_start(first)
        end = time.monotonic() + 10
        while dog._thread is None and time.monotonic() < end:  # the first request is starting it
            time.sleep(0.001)
        second = threading.Thread(target=lambda: (entries.append(dog.add(Dummy(), time.monotonic() + 60)),
                                                  second_registered.set()))
        real_start(second)
        registered = second_registered.wait(5)
        first.join(15)
        second.join(15)
    assert registered, "the second request waited for the watchdog thread of the first to start"
    for entry in entries:
        dog.remove(entry)
    end = time.monotonic() + 5
    while dog._thread is not None and time.monotonic() < end:
        time.sleep(0.01)
    assert dog._thread is None and dog._active == 0


def test_the_origin_decision_is_made_once_per_url_not_at_every_request(monkeypatch):
    """Where a URL leads (urlpattern.resolve) depends on the URL and its params alone: a
    client decides it once per URL it asks for again, in the params' order; a URL it
    refuses is refused every time."""
    import sparkwatch.httpclient as httpclient_module

    decided = []
    real = httpclient_module.resolve

    def counting(url, params=None):
        decided.append((url, str(params)))
        return real(url, params)

    monkeypatch.setattr(httpclient_module, "resolve", counting)

    with Counting(lambda path: (200, b"[]", JSON)) as srv:
        http = HttpClient(SparkTarget(url=srv.url))
        decided.clear()  # the target's own origin, decided once when the client is made
        try:
            for _ in range(3):
                http.get_json("/x", Deadline(10), params={"status": ["active", "failed"], "limit": 2})
            assert decided == [(srv.url + "/x", "{'status': ['active', 'failed'], 'limit': 2}")]
            http.get_json("/x", Deadline(10), params={"limit": 2, "status": ["active", "failed"]})
            assert len(decided) == 2  # another order is another URL
            for _ in range(2):
                with pytest.raises(TargetError) as e:
                    http.get("http://a@127.0.0.1:1/x", Deadline(10))
                assert e.value.reason == "invalid_response"
            assert len(decided) == 4  # refused each time, never remembered
        finally:
            http.close()
        assert len([p for p in srv.paths if p.startswith("/x?")]) == 4  # every request was made


def test_the_servlet_answer_is_read_by_the_request_thread_while_the_list_is_in_flight(monkeypatch):
    """The metrics servlet's answer is decoded and sorted by the thread that fetched it,
    while the application list is still on its way, not by the scrape once the list is in."""
    import sparkwatch.collectors.spark.scrape as scrape_module

    readers = []
    real = scrape_module.decode_json

    def recording(body, path, *args, **kwargs):
        readers.append((path, threading.current_thread().name))
        return real(body, path, *args, **kwargs)

    monkeypatch.setattr(scrape_module, "decode_json", recording)
    rec = history(1)

    def answer(path):
        if path == "/metrics/json/":
            return 200, _body("metrics.json"), JSON
        if path == "/api/v1/applications":
            time.sleep(0.3)  # the list comes last
        return rec(path)

    with Counting(answer) as srv:
        c = SparkCollector(SparkTarget(url=srv.url, name="servlet"))
        try:
            for _ in range(2):  # the second scrape sends the servlet's request with the list's
                out = MetricSet()
                readers.clear()
                c.collect(out, ScrapeContext.within(30))
                assert out.errors == [] and app_ids(out) == ["app-0000"]
        finally:
            c.close()
    assert [p for p, _ in readers] == ["/metrics/json/"]
    assert readers[0][1].startswith("sparkwatch-spark-servlet-io"), readers
    assert any(md.name == "spark_driver_jvm_heap_used_bytes" for md in out.samples)


# ---------------------------------------------------------------- attach: once per JVM per interval


def test_attach_runs_once_per_jvm_per_attach_interval_not_once_per_scrape(jvm_classes, monkeypatch):
    from sparkwatch.collectors import jvm as jvm_collector
    from sparkwatch.collectors.jvm import JvmCollector, JvmTarget
    from testbed.jvm import running_jvm

    calls = []
    real = jvm_collector.hs_attach.jcmd

    def counting(pid, *args, **kw):
        calls.append(pid)
        return real(pid, *args, **kw)

    monkeypatch.setattr(jvm_collector.hs_attach, "jcmd", counting)
    with running_jvm(jvm_classes, "Workload", ["attach-once"]) as j:
        c = JvmCollector(JvmTarget(name="w", match=r"Workload attach-once$", attach=True, attach_interval=60))
        for _ in range(5):
            out = MetricSet()
            c.collect(out, ScrapeContext.within(20))
            assert out.errors == []
            assert [v for md, ss in out.samples.items() if md.name == "jvm_jit_compilation_enabled" for v in ss.values()] == [1]
        assert calls == [j.pid]
        calls.clear()
        # the attach cache's clock, moved by hand: a slow collection cannot outlast the interval
        clock = [1000.0]
        monkeypatch.setattr(jvm_collector, "time", SimpleNamespace(monotonic=lambda: clock[0]))
        c = JvmCollector(JvmTarget(name="w", match=r"Workload attach-once$", attach=True, attach_interval=0.5))
        for _ in range(2):
            for _ in range(3):
                c.collect(MetricSet(), ScrapeContext.within(20))
            clock[0] += 0.6
        assert calls == [j.pid, j.pid]
    assert no_scrape_threads_within()


# ---------------------------------------------------------------- malloc arenas

_ARENA_PROBE = r"""
import ctypes, sys, threading
if sys.argv[1] == "limit":
    from sparkwatch.cli import limit_malloc_arenas
    print("applied" if limit_malloc_arenas() else "not applied", flush=True)
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    keep = [bytearray(20000) for _ in range(200)]  # malloc, not pymalloc, not mmap
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # "Arena N:" per arena, on stderr
"""


def _arenas(mode: str, env=None):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    e = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", _ARENA_PROBE, mode], cwd=str(root), env=e, capture_output=True,
                       text=True, timeout=60, check=True)
    return p.stdout.strip(), sum(1 for line in p.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not __import__("platform").libc_ver()[0] == "glibc", reason="glibc only")
def test_the_exporter_limits_its_malloc_arenas_unless_told_otherwise():
    """Eight threads allocating at once: glibc gives them arenas of their own (the
    resident size of a long-running exporter crept up with them); after
    limit_malloc_arenas, which `sparkwatch` calls before any thread starts, they
    share two. MALLOC_ARENA_MAX in the environment wins."""
    said, limited = _arenas("limit")
    assert said == "applied" and limited <= 2, (said, limited)
    _, free = _arenas("none")
    assert free > 2, free  # the probe does make glibc create arenas: the limit is what holds them
    said, by_env = _arenas("limit", {"MALLOC_ARENA_MAX": "4"})
    assert said == "not applied" and 2 < by_env <= 4, (said, by_env)
