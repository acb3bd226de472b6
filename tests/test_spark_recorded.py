"""The Spark collector on responses recorded from real Spark 3.5 and 4.0
applications (scripts/record_spark_responses.py), replayed by a local HTTP
server. Fast: no Spark. Expected values are computed here from the recorded
JSON, independently of the collector's code paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sparkwatch.collector import Deadline, MetricSet, ScrapeContext, TargetError
from sparkwatch.collectors.spark import SparkCollector, SparkTarget
from sparkwatch.collectors.spark.cache import EnvironmentCache
from sparkwatch.collectors.spark.model import normalise_name, time_string_as_seconds
from sparkwatch.collectors.spark.scrape import scrape_spark_ui
from sparkwatch.httpclient import HttpClient
from testbed.exporter import find, running_exporter, scrape, value
from testbed.spark import ReplayServer, load_recording, merged_routes, recording_dirs, routes_from_recording

DIRS = recording_dirs()
assert len(DIRS) >= 2, "recordings of both Spark lines are expected in tests/data/spark-*"

#: the JvmSource pool names seen on HotSpot 17 (G1, segmented code cache), plus the
#: unsegmented code cache and other collectors' pools, and their label values
POOL_NAMES = {
    "CodeHeap-'non-nmethods'": "codeheap_non_nmethods",
    "CodeHeap-'profiled-nmethods'": "codeheap_profiled_nmethods",
    "CodeHeap-'non-profiled-nmethods'": "codeheap_non_profiled_nmethods",
    "Code-Cache": "code_cache",  # Java 8
    "CodeCache": "code_cache",  # Java 9+ with -XX:-SegmentedCodeCache
    "Compressed-Class-Space": "compressed_class_space",
    "Metaspace": "metaspace",
    "G1-Eden-Space": "g1_eden_space",
    "G1-Old-Gen": "g1_old_gen",
    "G1-Survivor-Space": "g1_survivor_space",
    "PS-Old-Gen": "ps_old_gen",
    "PS-Eden-Space": "ps_eden_space",
    "Tenured-Gen": "tenured_gen",
    "ZHeap": "zheap",
}


def ids(d: Path) -> str:
    return d.name


def collect(url: str, **kw) -> MetricSet:
    out = MetricSet()
    http = HttpClient(SparkTarget(url=url))
    try:
        scrape_spark_ui(http, url, out, Deadline(10), **kw)
    finally:
        http.close()
    return out


def samples_of(out: MetricSet):
    """MetricSet -> [(exposed name, labels, value)] like testbed.exporter.samples."""
    res = []
    for md, ss in out.samples.items():
        for key, v in ss.items():
            res.append((md.exposed_name, dict(zip(md.labels, key)), v))
    return res


def gauges(rec, suffix_re: str):
    """{match group: value} for servlet gauges of the recorded app matching ``suffix_re``."""
    app_id = rec["index"]["app_id"]
    out = {}
    for k, v in rec["metrics.json"]["gauges"].items():
        m = re.fullmatch(re.escape(app_id) + r"\.driver\." + suffix_re, k)
        if m:
            out[m.group(1)] = v["value"]
    return out


# --------------------------------------------------------------------------
# Parsing rules


@pytest.mark.parametrize("text,seconds", [
    ("3min", 180), ("30s", 30), ("1h", 3600), ("45", 45), ("2d", 172800), ("5m", 300),
    (" 10MIN ", 600), ("1500ms", 1), ("999ms", 0), ("3000000us", 3), ("-1", -1), ("0", 0),
])
def test_time_strings_as_spark_reads_them(text, seconds):
    assert time_string_as_seconds(text) == seconds


@pytest.mark.parametrize("text", ["1.5h", "3 min", "min", "", "10x", "h1", "30 s"])
def test_time_strings_spark_rejects(text):
    with pytest.raises(ValueError):
        time_string_as_seconds(text)


@pytest.mark.parametrize("raw,label", sorted(POOL_NAMES.items()))
def test_pool_names_normalised(raw, label):
    assert normalise_name(raw) == label


# --------------------------------------------------------------------------
# Values parsed from the recordings


@pytest.fixture(params=DIRS, ids=ids)
def recorded(request):
    d = request.param
    with ReplayServer(routes_from_recording(d)) as srv:
        yield d, load_recording(d), srv


def test_recorded_values(recorded):
    d, rec, srv = recorded
    app = rec["applications.json"][0]
    att = app["attempts"][0]
    now = rec["index"]["recorded_at"]
    out = collect(srv.url, now=now)
    ss = samples_of(out)
    lab = {"app_id": app["id"], "app_name": app["name"]}
    assert out.errors == []

    info = find(ss, "spark_app_info", **lab)
    assert len(info) == 1 and info[0][1]["spark_version"] == att["appSparkVersion"]
    assert info[0][1]["spark_user"] == att["sparkUser"]
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx(now - att["startTimeEpoch"] / 1000)
    assert value(ss, "spark_app_completed", **lab) == 0
    # a driver's UI keeps lastUpdated at the start time while it runs: never stale
    assert att["lastUpdatedEpoch"] == att["startTimeEpoch"]
    assert value(ss, "spark_app_stale", **lab) == 0

    jobs = rec["jobs.json"]
    assert value(ss, "spark_jobs_active", **lab) == len(jobs) >= 1  # the recorder keeps one job running
    from datetime import datetime, timezone
    oldest = min(datetime.strptime(j["submissionTime"], "%Y-%m-%dT%H:%M:%S.%fGMT").replace(tzinfo=timezone.utc).timestamp()
                 for j in jobs)
    assert value(ss, "spark_job_oldest_active_age_seconds", **lab) == pytest.approx(now - oldest)

    stages = rec["stages.json"]
    assert value(ss, "spark_stages_active", **lab) == sum(s["status"] == "ACTIVE" for s in stages)
    assert value(ss, "spark_stages_failed", **lab) == sum(s["status"] == "FAILED" for s in stages) >= 1

    execs = rec["executors.json"]
    assert value(ss, "spark_executors_active", **lab) == len(execs) >= 1
    for e in execs:
        el = dict(lab, executor_id=e["id"])
        if e["id"] == "driver":  # its totalDuration is the application's wall time (SPARK-37493): not task time
            assert find(ss, "spark_executor_run_seconds_total", **el) == []
            assert find(ss, "spark_executor_gc_seconds_total", **el) == []
        else:
            assert value(ss, "spark_executor_gc_seconds_total", **el) == e["totalGCTime"] / 1000
            assert value(ss, "spark_executor_run_seconds_total", **el) == e["totalDuration"] / 1000
        peak = e["peakMemoryMetrics"]["JVMHeapMemory"]
        if peak > 0:
            assert value(ss, "spark_executor_peak_heap_bytes", **el) == peak
        else:  # the 3.5.7 recording: all peaks 0 (no heartbeat reported them yet) = not recorded
            assert all(v == 0 for v in e["peakMemoryMetrics"].values())
            assert find(ss, "spark_executor_peak_heap_bytes", **el) == []
            assert find(ss, "spark_executor_peak_offheap_bytes", **el) == []
        assert value(ss, "spark_executor_storage_memory_used_bytes", **el) == e["memoryUsed"]
        assert value(ss, "spark_executor_failed_tasks_total", **el) == e["failedTasks"] >= 1

    props = dict(rec["environment.json"]["sparkProperties"])
    assert props["spark.cleaner.periodicGC.interval"] == "3min"  # what the recorder started the app with
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", **lab) == 180
    assert value(ss, "spark_cleaner_reference_tracking_blocking", **lab) == 0

    heap = gauges(rec, r"jvm\.heap\.(used)")
    assert value(ss, "spark_driver_jvm_heap_used_bytes", **lab) == heap["used"]
    for field, metric in (("used", "spark_driver_jvm_memory_pool_used_bytes"),
                          ("max", "spark_driver_jvm_memory_pool_max_bytes")):
        pools = gauges(rec, r"jvm\.pools\.(.+)\." + field)
        assert pools, field
        for raw, v in pools.items():
            assert raw in POOL_NAMES, f"pool {raw} seen in a real recording but not documented"
            got = find(ss, metric, pool=POOL_NAMES[raw], **lab)
            if field == "max" and v < 0:
                assert got == []  # no limit: absent, not -1
            else:
                assert [s[2] for s in got] == [v]
    code_max = [s[2] for s in find(ss, "spark_driver_jvm_memory_pool_max_bytes", **lab)
                if s[1]["pool"].startswith("codeheap_")]
    assert len(code_max) == 3 and all(v > 0 for v in code_max)

    streaming = gauges(rec, r"spark\.streaming\.counts\.(.+)")
    q = dict(lab, query="counts")
    assert value(ss, "spark_streaming_state_rows", **q) == streaming["states-rowsTotal"] > 0
    assert value(ss, "spark_streaming_state_memory_bytes", **q) == streaming["states-usedBytes"]
    assert value(ss, "spark_streaming_input_rows_per_second", **q) == streaming["inputRate-total"]
    assert value(ss, "spark_streaming_processed_rows_per_second", **q) == streaming["processingRate-total"]
    assert value(ss, "spark_streaming_batch_duration_seconds", **q) == streaming["latency"] / 1000
    assert value(ss, "spark_streaming_watermark_timestamp_seconds", **q) == streaming["eventTime-watermark"] / 1000

    sizes = gauges(rec, r"LiveListenerBus\.queue\.(.+)\.size")
    assert sizes
    app_id = app["id"]
    for queue, v in sizes.items():
        assert value(ss, "spark_listener_queue_events", queue=queue, **lab) == v
        dropped = rec["metrics.json"]["counters"][f"{app_id}.driver.LiveListenerBus.queue.{queue}.numDroppedEvents"]["count"]
        assert value(ss, "spark_listener_dropped_events_total", queue=queue, **lab) == dropped
    dag = gauges(rec, r"DAGScheduler\.(.+)")
    assert value(ss, "spark_dagscheduler_jobs_active", **lab) == dag["job.activeJobs"]
    assert value(ss, "spark_dagscheduler_stages_waiting", **lab) == dag["stage.waitingStages"]

    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 1
    assert value(ss, "spark_metrics_source_enabled", source="streaming", **lab) == 1


def test_requests_per_scrape_use_status_filters_and_cache_the_environment(recorded):
    d, rec, srv = recorded
    url = srv.url
    c = SparkCollector(SparkTarget(url=url))
    try:
        c.collect(MetricSet(), ScrapeContext.within(10))
        first = list(srv.requests)
        srv.requests.clear()
        c.collect(MetricSet(), ScrapeContext.within(10))
        second = list(srv.requests)
    finally:
        c.close()
    assert any(r.startswith("/api/v1/applications?") and "status=running" in r for r in first)
    assert any("/jobs?status=running" in r for r in first)
    assert any("/stages?status=active&status=failed" in r for r in first)
    assert sum("/environment" in r for r in first) == 1
    assert not any("/environment" in r for r in second)  # cached
    assert len(second) == 5, second


# --------------------------------------------------------------------------
# Missing sections, history-server behaviour


def _routes_with(d: Path, **replace):
    routes = routes_from_recording(d)
    rec = load_recording(d)
    for fname, transform in replace.items():
        fname = fname.replace("_", ".")
        path = next(r["path"] for r in rec["index"]["requests"] if r["file"] == fname)
        if transform is None:
            del routes[path]
        else:
            routes[path] = (200, json.dumps(transform(rec[fname])).encode(), "application/json")
    return routes, rec


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_no_servlet_is_not_an_error(d):
    """A history server has no /metrics/json/ for the applications: 404 -> API metrics only."""
    routes, rec = _routes_with(d, metrics_json=None)
    with ReplayServer(routes) as srv:
        out = collect(srv.url)
    ss = samples_of(out)
    assert out.errors == []
    app_id = rec["index"]["app_id"]
    assert value(ss, "spark_jobs_active", app_id=app_id) == len(rec["jobs.json"])
    assert find(ss, "spark_driver_jvm_heap_used_bytes") == []
    assert find(ss, "spark_streaming_state_rows") == []
    # the JvmSource is configured in the recorded app: said from the configuration
    assert value(ss, "spark_metrics_source_enabled", source="jvm") == 1


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_a_driver_running_for_weeks_is_not_stale(d):
    """A driver's own UI keeps lastUpdated at the start time while the application
    runs: it says nothing about liveness, even without the servlet."""
    routes, rec = _routes_with(d, metrics_json=None)
    att = rec["applications.json"][0]["attempts"][0]
    assert att["lastUpdatedEpoch"] == att["startTimeEpoch"]
    later = rec["index"]["recorded_at"] + 30 * 86400
    with ReplayServer(routes) as srv:
        ss = samples_of(collect(srv.url, now=later))
    app_id = rec["index"]["app_id"]
    assert value(ss, "spark_app_stale", app_id=app_id) == 0
    assert value(ss, "spark_app_uptime_seconds", app_id=app_id) == pytest.approx(later - att["startTimeEpoch"] / 1000)


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_sources_off_and_cleaner_defaults(d):
    app_id = load_recording(d)["index"]["app_id"]

    def no_sources(m):
        for sec in ("gauges", "counters"):
            m[sec] = {k: v for k, v in m[sec].items() if ".driver.jvm." not in k and ".driver.spark.streaming." not in k}
        return m

    def no_settings(env):
        drop = ("spark.cleaner.", "spark.sql.streaming.metricsEnabled", "spark.metrics.conf.")
        env["sparkProperties"] = [kv for kv in env["sparkProperties"] if not kv[0].startswith(drop)]
        env["metricsProperties"] = [kv for kv in env.get("metricsProperties", []) if "jvm" not in kv[0]]
        return env

    routes, rec = _routes_with(d, metrics_json=no_sources, environment_json=no_settings)
    with ReplayServer(routes) as srv:
        ss = samples_of(collect(srv.url))
    assert value(ss, "spark_metrics_source_enabled", app_id=app_id, source="jvm") == 0
    assert value(ss, "spark_metrics_source_enabled", app_id=app_id, source="streaming") == 0
    assert [s for s in ss if s[0].startswith(("spark_streaming_", "spark_driver_jvm_memory", "spark_driver_jvm_heap_max",
                                              "spark_driver_jvm_heap_committed"))] == []
    # without the JvmSource, the driver's heap still comes from the ExecutorMetrics source (on by default)
    gauges = json.loads((d / "metrics.json").read_text())["gauges"]
    em = f"{app_id}.driver.ExecutorMetrics."
    # (0 until the driver's first heartbeat: not recorded, absent; the 3.5 recording was taken before it)
    for metric, key in (("spark_driver_jvm_heap_used_bytes", "JVMHeapMemory"),
                        ("spark_driver_jvm_nonheap_used_bytes", "JVMOffHeapMemory")):
        recorded = gauges[em + key]["value"]
        if recorded > 0:
            assert value(ss, metric, app_id=app_id) == recorded
        else:
            assert find(ss, metric, app_id=app_id) == []
    # Spark's defaults when unset: 30min, blocking true
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", app_id=app_id) == 1800
    assert value(ss, "spark_cleaner_reference_tracking_blocking", app_id=app_id) == 1
    # what does not depend on those settings is still there
    assert find(ss, "spark_listener_queue_events", app_id=app_id)


def test_some_recording_has_the_driver_heap_in_executor_metrics():
    """Else the ExecutorMetrics fallback above would only ever be tested absent."""
    heaps = []
    for d in DIRS:
        app_id = load_recording(d)["index"]["app_id"]
        gauges = json.loads((d / "metrics.json").read_text())["gauges"]
        heaps.append(gauges[f"{app_id}.driver.ExecutorMetrics.JVMHeapMemory"]["value"])
    assert any(h > 0 for h in heaps), heaps


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_metrics_namespace_instead_of_app_id(d):
    """With spark.metrics.namespace the servlet keys do not carry the app id."""
    app_id = load_recording(d)["index"]["app_id"]

    def rename(m):
        for sec in ("gauges", "counters"):
            m[sec] = {k.replace(app_id + ".", "myjob.", 1): v for k, v in m[sec].items()}
        return m

    routes, rec = _routes_with(d, metrics_json=rename)
    with ReplayServer(routes) as srv:
        ss = samples_of(collect(srv.url))
    assert value(ss, "spark_streaming_state_rows", app_id=app_id, query="counts") > 0


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_mounted_below_a_proxy_path(d):
    """scrape_spark_ui on a base URL with a path (YARN proxy, Livy's sparkUiUrl)."""
    prefix = "/proxy/application_1700000000000_0001"
    with ReplayServer(routes_from_recording(d, prefix)) as srv:
        out = collect(srv.url + prefix + "/")
    assert out.errors == []
    assert find(samples_of(out), "spark_streaming_state_rows")


# --------------------------------------------------------------------------
# Faults


BAD_BODIES = {
    "html_from_proxy": (200, b"<!DOCTYPE html><html><body>WARNING: this application's UI is served "
                             b"by the YARN proxy</body></html>", "text/html"),
    "plain_text_while_starting": (200, b"Spark is starting up. Please wait a while until it's ready.", "text/plain"),
    "truncated_json": None,  # filled from the recording
    "http_500": (500, b"oops", "text/plain"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_bad_application_list_makes_target_down(kind):
    d = DIRS[-1]
    routes = routes_from_recording(d)
    body = BAD_BODIES[kind]
    if body is None:
        full = routes["/api/v1/applications"][1]
        body = (200, full[: len(full) // 2], "application/json")
    routes["/api/v1/applications"] = body
    with ReplayServer(routes) as srv:
        with pytest.raises(TargetError) as e:
            collect(srv.url)
    assert e.value.reason == ("http_status" if kind == "http_500" else "invalid_response")


@pytest.mark.parametrize("broken", ["jobs", "stages", "executors", "environment"])
@pytest.mark.parametrize("how", ["404", "html", "truncated"])
def test_one_broken_application_does_not_hide_the_others(broken, how):
    """A history server with two applications; one of them fails one endpoint
    (it finished mid-scrape, or a proxy answers HTML): it is skipped with a
    partial error, the other is reported in full, the target stays up."""
    routes = merged_routes(DIRS)
    recs = [load_recording(d) for d in DIRS]
    victim, other = recs[0]["index"]["app_id"], recs[1]["index"]["app_id"]
    path = f"/api/v1/applications/{victim}/{broken}"
    if how == "404":
        del routes[path]
    elif how == "html":
        routes[path] = BAD_BODIES["html_from_proxy"]
    else:
        routes[path] = (200, routes[path][1][:20], "application/json")
    with ReplayServer(routes) as srv:
        with running_exporter({"spark": [{"url": srv.url, "name": "hs"}]}) as (url, _):
            text = scrape(url)
    assert value(text, "sparkwatch_target_up", target="hs") == 1
    assert value(text, "sparkwatch_target_scrape_errors_total", target="hs", reason="partial") == 1
    assert find(text, "spark_app_info", app_id=victim) == []
    assert find(text, "spark_jobs_active", app_id=victim) == []
    assert value(text, "spark_jobs_active", app_id=other) >= 1
    assert value(text, "spark_streaming_state_rows", app_id=other, query="counts") > 0


@pytest.mark.parametrize("how", ["plain_text", "truncated", "500"])
def test_broken_servlet_keeps_the_api_metrics(how):
    d = DIRS[-1]
    routes = routes_from_recording(d)
    rec = load_recording(d)
    full = routes["/metrics/json/"][1]
    routes["/metrics/json/"] = {"plain_text": BAD_BODIES["plain_text_while_starting"],
                                "truncated": (200, full[:100], "application/json"),
                                "500": (500, b"x", "text/plain")}[how]
    with ReplayServer(routes) as srv:
        out = collect(srv.url)
    assert out.errors == ["partial"]
    ss = samples_of(out)
    assert value(ss, "spark_jobs_active", app_id=rec["index"]["app_id"]) == len(rec["jobs.json"])
    assert find(ss, "spark_streaming_state_rows") == []


def test_max_applications_is_a_limit_error():
    routes = merged_routes(DIRS)
    with ReplayServer(routes) as srv:
        out = collect(srv.url, max_applications=1)
        assert any("limit=2" in r for r in srv.requests if r.startswith("/api/v1/applications?"))
    assert out.errors == ["limit"]
    assert len(find(samples_of(out), "spark_app_info")) == 1


def test_history_server_lists_several_applications():
    routes = merged_routes(DIRS)
    with ReplayServer(routes) as srv:
        out = collect(srv.url)
    ss = samples_of(out)
    versions = sorted(s[1]["spark_version"] for s in find(ss, "spark_app_info"))
    assert versions == sorted(load_recording(d)["index"]["spark_version"] for d in DIRS)
    assert len(find(ss, "spark_streaming_state_rows")) == len(DIRS)


def test_environment_cache_expires():
    t = [0.0]
    cache = EnvironmentCache(ttl=300, clock=lambda: t[0])
    d = DIRS[-1]
    with ReplayServer(routes_from_recording(d)) as srv:
        http = HttpClient(SparkTarget(url=srv.url))
        for step in (0, 100, 301):
            t[0] = step
            scrape_spark_ui(http, srv.url, MetricSet(), Deadline(10), env_cache=cache)
        http.close()
        env_reqs = [r for r in srv.requests if "/environment" in r]
    assert len(env_reqs) == 2  # at 0 and after the ttl, not at 100


@pytest.mark.parametrize("d", DIRS, ids=ids)
def test_history_server_home_page_instead_of_servlet(d):
    """A real history server answers /metrics/json/ with its HTML home page
    (200): no servlet there, and not an error."""
    routes = routes_from_recording(d)
    routes["/metrics/json/"] = (200, b"<!DOCTYPE html><html><head><title>History Server</title></head></html>",
                                "text/html;charset=utf-8")
    with ReplayServer(routes) as srv:
        out = collect(srv.url)
    assert out.errors == []
    ss = samples_of(out)
    assert find(ss, "spark_jobs_active")
    assert find(ss, "spark_driver_jvm_heap_used_bytes") == []


def test_one_slow_application_is_skipped_within_the_deadline():
    """A history server replaying one application's event log answers slowly:
    that application is skipped (partial), the other is reported."""
    import time

    routes = merged_routes(DIRS)
    recs = [load_recording(d) for d in DIRS]
    slow, other = recs[0]["index"]["app_id"], recs[1]["index"]["app_id"]
    path = f"/api/v1/applications/{slow}/jobs"
    body = routes[path][1]
    routes[path] = (200, lambda: (time.sleep(6.0), body)[1], "application/json")
    with ReplayServer(routes) as srv:
        out = MetricSet()
        http = HttpClient(SparkTarget(url=srv.url, timeout=2.0))  # the other requests: far within it
        try:
            scrape_spark_ui(http, srv.url, out, Deadline(15))
        finally:
            http.close()
    assert out.errors == ["partial"]
    ss = samples_of(out)
    assert find(ss, "spark_app_info", app_id=slow) == []
    assert find(ss, "spark_jobs_active", app_id=other)


def test_deadline_spent_makes_target_down():
    """When the whole deadline is gone, the target is down (timeout), not partial."""
    import time

    d = DIRS[-1]
    routes = routes_from_recording(d)
    app_id = load_recording(d)["index"]["app_id"]
    path = f"/api/v1/applications/{app_id}/jobs"
    body = routes[path][1]
    routes[path] = (200, lambda: (time.sleep(1.5), body)[1], "application/json")
    with ReplayServer(routes) as srv:
        http = HttpClient(SparkTarget(url=srv.url))
        try:
            with pytest.raises(TargetError) as e:
                scrape_spark_ui(http, srv.url, MetricSet(), Deadline(1.0))
        finally:
            http.close()
    assert e.value.reason == "timeout"
