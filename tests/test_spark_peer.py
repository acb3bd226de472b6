"""The Spark code on real answers recorded by other projects (tests/data/peer/,
origins in its ORIGIN.md): Apache Spark's history-server expectations, the
DataDog and OpenTelemetry Spark fixtures, real metrics-servlet dumps. And
defect 10: every field of real answers (these and tests/data/spark-*/)
replaced by a value of the wrong type, one at a time.

The files are replayed as they are; where a test needs another shape (one
application of a list, a known lastUpdated) it derives it here. Expected
values are written out from the files, not computed by the collector's code.
Fast: no Spark.
"""

from __future__ import annotations

import copy
import json
import math
from calendar import timegm
from pathlib import Path
from time import strptime
from typing import Any, Dict, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkwatch.collector import Deadline, MetricSet, ScrapeContext, TargetError
from sparkwatch.collectors.spark import SparkCollector, SparkTarget
from sparkwatch.httpclient import HttpClient, decode_json
from sparkwatch.collectors.spark.scrape import scrape_spark_ui
from testbed.exporter import find, running_exporter, scrape, value
from testbed.spark import ReplayServer, load_recording, merged_routes, recording_dirs

PEER = Path(__file__).resolve().parent / "data" / "peer"
HS = PEER / "apache-spark"
DIRS = recording_dirs()
JSON = "application/json"
#: "now" for the tests: the day the fixtures were looked at (2026-11-29)
NOW = 1795910400.0


def raw(rel: str) -> bytes:
    return (PEER / rel).read_bytes()


def load(rel: str):
    return json.loads(raw(rel))


def epoch(text: str) -> float:
    """``2019-01-18T05:14:14.200GMT`` -> Unix seconds (written independently of the collector)."""
    base, ms = text[:-3].split(".")
    return timegm(strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000


def ok(body, ctype: str = JSON):
    return (200, body if isinstance(body, bytes) else json.dumps(body).encode(), ctype)


def app_routes(app_entry, *, jobs, stages, executors, environment, servlet=None, attempt: Optional[str] = None,
               extra_apps=()) -> Dict[str, tuple]:
    """A route map for one application (plus ``extra_apps`` entries in the list):
    bodies are fixture paths (served byte for byte) or JSON values."""
    app_id = app_entry["id"]
    p = f"/api/v1/applications/{app_id}" + (f"/{attempt}" if attempt else "")

    def body(b):
        return ok(raw(b)) if isinstance(b, str) else ok(b)

    routes = {
        "/api/v1/applications": ok([app_entry, *extra_apps]),
        p + "/jobs": body(jobs),
        p + "/stages": body(stages),
        p + "/executors": body(executors),
        p + "/environment": body(environment),
    }
    if servlet is not None:
        routes["/metrics/json/"] = body(servlet)
    return routes


def collect(routes, **kw):
    """Scrape a ReplayServer of ``routes``: (MetricSet, samples, requests)."""
    kw.setdefault("now", NOW)
    kw.setdefault("include_completed", True)
    with ReplayServer(routes) as srv:
        out = MetricSet()
        http = HttpClient(SparkTarget(url=srv.url))
        try:
            scrape_spark_ui(http, srv.url, out, Deadline(10), **kw)
        finally:
            http.close()
        return out, samples_of(out), list(srv.requests)


def samples_of(out: MetricSet):
    return [(md.exposed_name, dict(zip(md.labels, key)), v) for md, ss in out.samples.items() for key, v in ss.items()]


def hs_app(app_id: str, listing: str = "apache-spark/application_list_json_expectation.json") -> dict:
    return next(a for a in load(listing) if a["id"] == app_id)


# --------------------------------------------------------------------------
# Executors: excluded ones do not run tasks; all-zero peaks were not recorded

#: app-20161116163331-0000 ran with spark.blacklist.enabled (its environment)
BLACKLIST_APP = "app-20161116163331-0000"

#: executors file -> executors that can run tasks, read off the file: not excluded
#: (isExcluded, or isBlacklisted when isExcluded is absent), and not a driver with
#: 0 cores that never ran a task
ACTIVE_EXECUTORS = {
    # driver, 0, 1, 3: isExcluded true; 2: only isBlacklisted, true
    "apache-spark/executor_memory_usage_expectation.json": 0,
    # the pre-3.1 shape: isBlacklisted only, true for all
    "apache-spark/executor_node_blacklisting_expectation.json": 0,
    # all false: executors 0 to 3; the driver has 0 cores and no tasks
    "apache-spark/executor_node_excludeOnFailure_unexcluding_expectation.json": 4,
    "apache-spark/executor_list_with_executor_metrics_json_expectation.json": 7,
    "apache-spark/executor_list_with_executor_process_tree_metrics_json_expectation.json": 1,
    "apache-spark/executor_list_with_executor_garbage_collection_metrics_json_expectation.json": 2,
    "apache-spark/executor_resource_information_expectation.json": 2,
    # Spark 1.x local mode: the driver is "<driver>", ran 32 tasks, cores not recorded
    "apache-spark/executor_list_json_expectation.json": 1,
    # Spark 3.4 local mode: the driver with 12 cores
    "otel/executors_stats_response.json": 1,
}


def executors_routes(executors: str) -> Dict[str, tuple]:
    return app_routes(hs_app(BLACKLIST_APP), jobs="apache-spark/job_list_json_expectation.json",
                      stages="apache-spark/failed_stage_list_json_expectation.json", executors=executors,
                      environment="apache-spark/app_environment_expectation.json")


@pytest.mark.parametrize("executors", sorted(ACTIVE_EXECUTORS))
def test_excluded_executors_are_not_active(executors):
    out, ss, _ = collect(executors_routes(executors))
    assert out.errors == []
    assert value(ss, "spark_executors_active", app_id=BLACKLIST_APP) == ACTIVE_EXECUTORS[executors]
    # excluded or not, every executor the UI lists keeps its own series
    listed = {"driver" if e["id"] == "<driver>" else e["id"] for e in load(executors)}
    assert {s[1]["executor_id"] for s in find(ss, "spark_executor_failed_tasks_total")} == listed


def test_excluded_executors_keep_their_counters():
    out, ss, _ = collect(executors_routes("apache-spark/executor_memory_usage_expectation.json"))
    el = dict(app_id=BLACKLIST_APP, executor_id="2")  # excluded (isBlacklisted) after 4 failed tasks
    assert value(ss, "spark_executor_failed_tasks_total", **el) == 4
    assert value(ss, "spark_executor_run_seconds_total", **el) == 2.537
    assert value(ss, "spark_executor_gc_seconds_total", **el) == 0.088


def test_all_zero_peak_memory_is_not_recorded():
    """History-server answers hold peakMemoryMetrics of all zeros when no heartbeat
    with executor metrics was logged: not 0 bytes, absent."""
    out, ss, _ = collect(executors_routes("apache-spark/executor_node_excludeOnFailure_unexcluding_expectation.json"))
    for eid in ("0", "1", "2", "3"):
        assert find(ss, "spark_executor_peak_heap_bytes", executor_id=eid) == []
        assert find(ss, "spark_executor_peak_offheap_bytes", executor_id=eid) == []
        assert find(ss, "spark_executor_storage_memory_max_bytes", executor_id=eid)  # the rest is there


def test_recorded_peak_memory_is_reported():
    out, ss, _ = collect(executors_routes("apache-spark/executor_list_with_executor_metrics_json_expectation.json"))
    peaks = {"driver": (629553808, 205304696), "1": (755008624, 100519936), "2": (595946552, 91208368),
             "3": (726805712, 90709624), "4": (518613056, 95657456)}
    for eid, (heap, offheap) in peaks.items():
        assert value(ss, "spark_executor_peak_heap_bytes", executor_id=eid) == heap
        assert value(ss, "spark_executor_peak_offheap_bytes", executor_id=eid) == offheap
    for eid in ("5", "6", "7"):  # no peakMemoryMetrics at all
        assert find(ss, "spark_executor_peak_heap_bytes", executor_id=eid) == []


# --------------------------------------------------------------------------
# Applications a history server shows as running for years

RUNNING_LIST = "apache-spark/running_app_list_json_expectation.json"
STALE_APP = "application_1547723113049_0006"
K8S_JOBS = "other/k8s-driver-2019/jobs_status_running.json"


def stale_routes(last_updated: Optional[str]) -> Dict[str, tuple]:
    """The running application of Spark's expectations; ``last_updated`` replaces
    its blanked lastUpdated (Spark's test suite zeroes it) as a history server
    sends it: the event log's modification time."""
    app = copy.deepcopy(load(RUNNING_LIST)[0])
    if last_updated is not None:
        att = app["attempts"][0]
        att["lastUpdated"], att["lastUpdatedEpoch"] = last_updated, int(epoch(last_updated) * 1000)
    return app_routes(app, attempt="1", jobs=K8S_JOBS, stages="apache-spark/failed_stage_list_json_expectation.json",
                      executors="apache-spark/executor_list_with_executor_metrics_json_expectation.json",
                      environment="apache-spark/multiple_resource_profiles_expectation.json")


START = epoch("2019-01-18T05:14:14.200GMT")
SUBMITTED = epoch("2019-11-29T06:06:54.386GMT")  # the running job
DIED = "2019-12-01T08:00:00.000GMT"  # the event log's last write (derived in stale_routes)


def test_never_closed_event_log_is_stale_and_measured_to_its_last_update():
    out, ss, reqs = collect(stale_routes(DIED))
    assert out.errors == []
    lab = dict(app_id=STALE_APP)
    assert value(ss, "spark_app_stale", **lab) == 1
    assert value(ss, "spark_app_completed", **lab) == 0
    # bounded: what it ran until its log stopped, not 7.8 years
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx(epoch(DIED) - START)
    assert value(ss, "spark_job_oldest_active_age_seconds", **lab) == pytest.approx(epoch(DIED) - SUBMITTED)
    assert value(ss, "spark_jobs_active", **lab) == 1
    assert any(r.startswith(f"/api/v1/applications/{STALE_APP}/1/jobs") for r in reqs)


def test_recently_updated_event_log_is_running():
    recent = "2026-11-28T20:00:00.000GMT"  # 4 hours before NOW
    out, ss, _ = collect(stale_routes(recent))
    assert value(ss, "spark_app_stale", app_id=STALE_APP) == 0
    assert value(ss, "spark_app_uptime_seconds", app_id=STALE_APP) == pytest.approx(NOW - START)
    # a shorter threshold says stale
    out, ss, _ = collect(stale_routes(recent), stale_after=3600)
    assert value(ss, "spark_app_stale", app_id=STALE_APP) == 1
    assert value(ss, "spark_app_uptime_seconds", app_id=STALE_APP) == pytest.approx(epoch(recent) - START)


def test_stale_after_zero_turns_it_off():
    out, ss, _ = collect(stale_routes(DIED), stale_after=0)
    assert value(ss, "spark_app_stale", app_id=STALE_APP) == 0
    assert value(ss, "spark_app_uptime_seconds", app_id=STALE_APP) == pytest.approx(NOW - START)


def test_unknown_last_update_cannot_say_stale():
    """As recorded, lastUpdated is blank (and lastUpdatedEpoch 0): nothing tells a
    dead driver from a live one, so the application is reported as running."""
    out, ss, _ = collect(stale_routes(None))
    assert out.errors == []
    assert value(ss, "spark_app_stale", app_id=STALE_APP) == 0
    assert value(ss, "spark_app_uptime_seconds", app_id=STALE_APP) == pytest.approx(NOW - START)


def test_stale_after_is_a_spark_target_setting():
    with ReplayServer(stale_routes(DIED)) as srv:
        for cfg, stale in (({}, 1), ({"stale_after": 0}, 0)):
            c = SparkCollector(SparkTarget(url=srv.url, **cfg))
            out = MetricSet()
            try:
                c.collect(out, ScrapeContext.within(10))
            finally:
                c.close()
            assert value(samples_of(out), "spark_app_stale", app_id=STALE_APP) == stale


def test_live_driver_keeps_last_updated_at_its_start():
    """Spark 3.4 in local mode (OpenTelemetry's fixtures): lastUpdated is the start
    time on a driver's own UI, so years later, servlet or not, it is not stale."""
    app = load("otel/apps_stats_response.json")[0]
    att = app["attempts"][0]
    assert att["lastUpdatedEpoch"] == att["startTimeEpoch"]
    routes = app_routes(app, jobs="otel/jobs_stats_response.json", stages="otel/stages_stats_response.json",
                        executors="otel/executors_stats_response.json",
                        environment="apache-spark/app_environment_expectation.json")
    out, ss, _ = collect(routes, include_completed=False)
    assert out.errors == []
    lab = dict(app_id="local-1682603253681")
    assert value(ss, "spark_app_stale", **lab) == 0
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx(NOW - 1682603252.721)


# --------------------------------------------------------------------------
# Other shapes


def test_pre_1_4_application_list_without_attempts():
    """Before Spark 1.4 an application had no attempts: startTime, endTime (epoch
    ms numbers, not strings), sparkUser and completed are on the application."""
    listing = load("apache-spark/applications/json_expectation")
    first = listing[0]
    assert "attempts" not in first and isinstance(first["startTime"], int)
    routes = app_routes(first, jobs="apache-spark/applications/local-1422981780767/jobs/json_expectation",
                        stages="apache-spark/stage_list_json_expectation.json",
                        executors="apache-spark/applications/local-1422981780767/executors/json_expectation",
                        environment="apache-spark/multiple_resource_profiles_expectation.json")
    out, ss, _ = collect(routes)
    assert out.errors == []
    lab = dict(app_id="local-1422981780767", app_name="Spark shell")
    assert value(ss, "spark_app_completed", **lab) == 1
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx((1422981788731 - 1422981779720) / 1000)
    assert find(ss, "spark_app_info", spark_user="irashid", **lab)
    # jobs: unfiltered SUCCEEDED/FAILED ones are not running
    assert value(ss, "spark_jobs_active", **lab) == 0
    assert value(ss, "spark_stages_failed", **lab) == 1
    # the legacy driver id "<driver>" is labelled "driver" (docs/spark.md); local mode: it ran the 32 tasks
    assert value(ss, "spark_executors_active", **lab) == 1
    assert {s[1]["executor_id"] for s in find(ss, "spark_executor_completed_tasks_total")} == {"driver"}
    el = dict(lab, executor_id="driver")
    assert value(ss, "spark_executor_completed_tasks_total", **el) == 31
    # a driver's totalDuration is no task time on a Spark 3.3+ UI (the application's wall time): never exported
    assert find(ss, "spark_executor_run_seconds_total") == []
    assert find(ss, "spark_executor_gc_seconds_total") == []  # not in this answer: absent, not 0
    # an environment without any Spark property: Spark's defaults
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", **lab) == 1800
    assert value(ss, "spark_cleaner_reference_tracking_blocking", **lab) == 1


def test_completed_applications_of_a_history_server():
    """Spark's own listing: 13 completed applications (blank lastUpdated, multi-attempt
    ones); those without answers here are skipped as partial, the others reported."""
    listing = load("apache-spark/application_list_json_expectation.json")
    multi = next(a for a in listing if a["id"] == "local-1430917381535")
    assert [a["attemptId"] for a in multi["attempts"]] == ["2", "1"]  # latest first
    routes = app_routes(multi, attempt="2", jobs="apache-spark/job_list_from_multi_attempt_app_json_2__expectation.json",
                        stages="apache-spark/stage_list_json_expectation.json",
                        executors="apache-spark/executor_list_json_expectation.json",
                        environment="apache-spark/app_environment_expectation.json")
    routes["/api/v1/applications"] = ok(raw("apache-spark/application_list_json_expectation.json"))
    out, ss, reqs = collect(routes, max_applications=20)
    assert out.errors == ["partial"] * (len(listing) - 1)
    lab = dict(app_id="local-1430917381535")
    assert value(ss, "spark_app_completed", **lab) == 1
    assert value(ss, "spark_app_stale", **lab) == 0
    assert value(ss, "spark_app_uptime_seconds", **lab) == 0.057  # attempt 2's duration
    assert find(ss, "spark_app_info", spark_version="1.4.0-SNAPSHOT", **lab)
    assert any(r.startswith("/api/v1/applications/local-1430917381535/2/executors") for r in reqs)


def test_live_spark_34_driver():
    """OpenTelemetry's Spark 3.4 recordings, the servlet included. Its jobs and
    stages answers are unfiltered (a SUCCEEDED job, COMPLETE stages): none is active."""
    app = load("otel/apps_stats_response.json")[0]
    routes = app_routes(app, jobs="otel/jobs_stats_response.json", stages="otel/stages_stats_response.json",
                        executors="otel/executors_stats_response.json", servlet="otel/cluster_stats_response.json",
                        environment="apache-spark/app_environment_expectation.json")
    out, ss, _ = collect(routes, include_completed=False)
    assert out.errors == []
    lab = dict(app_id="local-1682603253681", app_name="streaming-example")
    assert value(ss, "spark_jobs_active", **lab) == 0
    assert value(ss, "spark_job_oldest_active_age_seconds", **lab) == 0
    assert value(ss, "spark_stages_active", **lab) == 0
    assert value(ss, "spark_executors_active", **lab) == 1
    assert value(ss, "spark_executor_peak_heap_bytes", executor_id="driver", **lab) == 380379232
    assert value(ss, "spark_dagscheduler_stages_running", **lab) == 1
    assert value(ss, "spark_driver_jvm_cpu_seconds_total", **lab) == pytest.approx(32.742193)
    assert value(ss, "spark_listener_events_posted_total", **lab) == 248
    assert {s[1]["queue"] for s in find(ss, "spark_listener_queue_events", **lab)} == {
        "appStatus", "executorManagement", "streams"}
    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 0


def servlet_routes(servlet: str) -> Dict[str, tuple]:
    """A driver UI around a recorded servlet answer: its application, nothing running."""
    gauges = load(servlet)["gauges"]
    app_id = next(iter(gauges)).split(".driver.")[0]
    app = {"id": app_id, "name": "servlet", "attempts": [{
        "startTime": "2019-01-23T21:41:21.000GMT", "lastUpdated": "2019-01-23T21:41:21.000GMT",
        "completed": False, "startTimeEpoch": 1548279681000, "lastUpdatedEpoch": 1548279681000}]}
    return app_routes(app, jobs=[], stages=[], executors=[], servlet=servlet,
                      environment="apache-spark/app_environment_expectation.json")


def test_spark_22_java_8_servlet():
    out, ss, _ = collect(servlet_routes("other/spark22-driver-metrics-servlet/metrics_json.json"))
    assert out.errors == []
    lab = dict(app_id="app-20171012154950-0001")
    assert value(ss, "spark_driver_jvm_heap_used_bytes", **lab) == 149327432
    assert value(ss, "spark_driver_jvm_heap_max_bytes", **lab) == 954728448
    assert value(ss, "spark_driver_jvm_nonheap_used_bytes", **lab) == 65229720
    used = {s[1]["pool"]: s[2] for s in find(ss, "spark_driver_jvm_memory_pool_used_bytes", **lab)}
    assert used == {"code_cache": 7857792, "compressed_class_space": 7106560, "metaspace": 50270088,
                    "ps_eden_space": 32954200, "ps_old_gen": 116373232, "ps_survivor_space": 0}
    maxed = {s[1]["pool"] for s in find(ss, "spark_driver_jvm_memory_pool_max_bytes", **lab)}
    assert "metaspace" not in maxed and "code_cache" in maxed  # -1: no limit
    assert value(ss, "spark_driver_jvm_gc_collections_total", gc="ps_marksweep", **lab) == 3
    assert value(ss, "spark_driver_jvm_gc_seconds_total", gc="ps_scavenge", **lab) == 0.081
    assert {s[1]["gc"] for s in find(ss, "spark_driver_jvm_gc_collections_total")} == {"ps_marksweep", "ps_scavenge"}
    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 1


@pytest.mark.parametrize("variant", ["metrics_json_bare_nan.json", "metrics_json_quoted_nan.json"])
def test_nan_from_the_servlet_is_absent(variant):
    out, ss, _ = collect(servlet_routes("other/databricks-2019-console-sink/" + variant))
    assert out.errors == []
    q = dict(app_id="app-20190123214121-0000", query="955aa7f2-1aa3-4b60-825d-c2868cb35e9a")
    assert find(ss, "spark_streaming_input_rows_per_second", **q) == []
    assert value(ss, "spark_streaming_processed_rows_per_second", **q) == 0.02631509697113234
    assert value(ss, "spark_streaming_batch_duration_seconds", **q) == 38.001
    assert value(ss, "spark_metrics_source_enabled", source="streaming", app_id=q["app_id"]) == 1
    assert all(math.isfinite(s[2]) for s in ss)


def test_datadog_servlet_and_executors():
    routes = servlet_routes("datadog/metrics_json")
    app_id = "app-20201120094950-0000"
    routes[f"/api/v1/applications/{app_id}/executors"] = ok(raw("datadog/executor_metrics"))
    routes[f"/api/v1/applications/{app_id}/stages"] = ok(raw("datadog/stage_metrics_3-0-0"))
    out, ss, _ = collect(routes)
    assert out.errors == []
    lab = dict(app_id=app_id)
    named = dict(lab, query="my_named_query")
    assert value(ss, "spark_streaming_watermark_timestamp_seconds", **named) == 0.012
    assert value(ss, "spark_streaming_state_rows", **named) == 12
    assert value(ss, "spark_streaming_batch_duration_seconds", query="e8e4803f-cc76-4b53-82f9-361b54448fc4", **lab) == 0.012
    assert value(ss, "spark_driver_jvm_cpu_seconds_total", **lab) == 60.65
    # "RUNNING" is not one of Spark's stage statuses (ACTIVE, COMPLETE, FAILED, PENDING, SKIPPED)
    assert value(ss, "spark_stages_active", **lab) == 0
    # no isActive, totalCores or totalGCTime in this answer: GC absent; both have run tasks
    assert value(ss, "spark_executors_active", **lab) == 2
    assert find(ss, "spark_executor_gc_seconds_total") == []
    assert value(ss, "spark_executor_peak_heap_bytes", executor_id="1", **lab) == 361970928


@pytest.mark.parametrize("where", ["applications", "executors"])
def test_yarn_proxy_warning_page(where):
    routes = executors_routes("apache-spark/executor_memory_usage_expectation.json")
    page = (200, raw("datadog/html_warning_page"), "text/html")
    if where == "applications":
        routes["/api/v1/applications"] = page
        with pytest.raises(TargetError) as e:
            collect(routes)
        assert e.value.reason == "invalid_response"
    else:
        routes[f"/api/v1/applications/{BLACKLIST_APP}/executors"] = page
        out, ss, _ = collect(routes)
        assert out.errors == ["partial"] and ss == []


# --------------------------------------------------------------------------
# Defect 10: wrong JSON types, one field at a time
#
# Two applications on one history server: the victim's answers are mutated, the
# other's must come out exactly as without the mutation.


class RouteClient:
    """HttpClient's interface over a route map (path -> (status, body, type)), in
    memory, with the real JSON decoding: fast enough for thousands of scrapes."""

    def __init__(self, routes):
        self.routes = routes

    def get(self, url, deadline, params=None, ok_statuses=(200,)):
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        status, body, ctype = self.routes.get(path, (404, b"no such path", "text/plain"))
        if status not in ok_statuses:
            raise TargetError("http_status", f"GET {path}: HTTP {status}")
        return type("Resp", (), {"status_code": status, "content": body, "headers": {"Content-Type": ctype}})()

    def get_json(self, url, deadline, params=None, expect=object):
        resp = self.get(url, deadline, params)
        body = resp.content
        if id(body) in _UNMUTATED:  # decoded once (the collector does not modify what it reads)
            if id(body) not in _DECODED:
                _DECODED[id(body)] = decode_json(body, url, JSON, object)
            data = _DECODED[id(body)]
            if not isinstance(data, expect):
                raise TargetError("invalid_response", f"{url}: not a JSON {expect.__name__}")
            return data
        return decode_json(body, url, resp.headers["Content-Type"], expect)


_UNMUTATED: set = set()
_DECODED: Dict[int, Any] = {}


def run(routes) -> MetricSet:
    out = MetricSet()
    scrape_spark_ui(RouteClient(routes), "http://ui", out, Deadline(30), include_completed=True, now=NOW)
    return out


def samples_for(out: MetricSet, app_id: str):
    return {(md.name, key): v for md, ss in out.samples.items() for key, v in ss.items()
            if key[md.labels.index("app_id")] == app_id}


def victims():
    """(name, routes, victim app id, other app id): a recorded Spark
    3.5 driver, a Spark history-server application (blacklisted executors, its
    environment) and OpenTelemetry's Spark 3.4 application, each next to the
    Spark 4.0 recording."""
    out = []
    recs = {d.name: load_recording(d) for d in DIRS}
    other_dir = DIRS[-1]
    other = recs[other_dir.name]["index"]["app_id"]
    # 1. two recordings as one server
    victim_rec = recs[DIRS[0].name]
    vid = victim_rec["index"]["app_id"]
    out.append(("spark-recorded", merged_routes(DIRS), vid, other))
    # 2. and 3. a peer application added to the other recording
    for name, routes_fn in (("history-server", lambda: executors_routes("apache-spark/executor_memory_usage_expectation.json")),
                            ("otel-3.4", lambda: app_routes(
                                load("otel/apps_stats_response.json")[0], jobs=K8S_JOBS,
                                stages="otel/stages_stats_response.json",
                                executors="otel/executors_stats_response.json",
                                environment="apache-spark/app_environment_expectation.json"))):
        routes = merged_routes([other_dir])
        peer = routes_fn()
        apps = json.loads(peer.pop("/api/v1/applications")[1]) + json.loads(routes["/api/v1/applications"][1])
        routes.update(peer)
        routes["/api/v1/applications"] = ok(apps)
        out.append((name, routes, apps[0]["id"], other))
    return out


VICTIMS = victims()
_UNMUTATED.update(id(route[1]) for v in VICTIMS for route in v[1].values())

BAD = "__sparkwatch_bad_value__"
#: wrong values: JSON text put where the field's value was
WRONG = {
    "string": '"x"',
    "object": '{"a": {"b": 1}}',
    "array": '[1, "2"]',
    "true": "true",
    "null": "null",
    "zero": "0",
    "negative": "-1",
    "1e400": "1e400",
    "-1e400": "-1e400",
    "NaN": "NaN",
    "10^400": "1" + "0" * 400,
    "empty": '""',
}
#: every site gets these; the others (and "missing") in rotation, two per site
CORE = ("string", "object", "array", "true", "1e400", "10^400")
OTHERS = sorted(set(WRONG) - set(CORE)) + ["missing"]
ALL = sorted(WRONG) + ["missing"]
DEEP = "[" * 100_000 + "]" * 100_000
#: properties sparkwatch reads from /environment (the rest is 100 KB of the same shape)
READ_PROPS = ("spark.cleaner.", "spark.metrics.", "spark.sql.streaming.", "spark.scheduler.listenerbus.", "*.")


def wrong_values(n: int, where: str):
    """The wrong values for the n-th site: CORE, and two of OTHERS in turn; in the
    servlet answer (whose values are read leniently anyway) three of all in turn."""
    if where == "/metrics/json/":
        labels = tuple(ALL[(3 * n + k) % len(ALL)] for k in range(3))
    else:
        labels = CORE + (OTHERS[(2 * n) % len(OTHERS)], OTHERS[(2 * n + 1) % len(OTHERS)])
    for label in labels:
        yield label, WRONG.get(label)


def sites(data, path=()):
    """Paths to mutate in a decoded answer: every container and leaf, except that
    arrays are sampled (the first element, the last of longer ones, and any
    [key, value] pair sparkwatch reads)."""
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from sites(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            pair_read = isinstance(v, list) and v and isinstance(v[0], str) and v[0].startswith(READ_PROPS)
            if i == 0 or (i == len(data) - 1 and len(data) > 2) or pair_read:
                yield from sites(v, path + (i,))


def mutated(data, path, text: Optional[str]) -> bytes:
    """``data`` with the value at ``path`` replaced by the JSON ``text`` (None:
    removed). ``data`` is changed in place for the time of the encoding only."""
    if not path:
        return (text if text is not None else "").encode()
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    old = parent[key]
    try:
        if text is None:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
            return json.dumps(data).encode()
        parent[key] = BAD
        return json.dumps(data).encode().replace(json.dumps(BAD).encode(), text.encode())
    finally:
        if text is None and isinstance(parent, list):
            parent.insert(key, old)
        else:
            parent[key] = old


def victim_bodies(routes, vid):
    """(route path, decoded answer, mutation sites) of the victim: its entry in the
    application list, its four endpoints, its keys in the servlet answer."""
    apps = json.loads(routes["/api/v1/applications"][1])
    i = next(n for n, a in enumerate(apps) if a.get("id") == vid)
    yield "/api/v1/applications", apps, [(i,) + s for s in sites(apps[i], ())]
    for path in sorted(routes):
        if path.startswith(f"/api/v1/applications/{vid}/"):
            data = json.loads(routes[path][1])
            yield path, data, list(sites(data))
    servlet = json.loads(routes.get("/metrics/json/", (0, b"{}", ""))[1])
    mine = [(sec, k) + s for sec in ("gauges", "counters") for k, v in (servlet.get(sec) or {}).items()
            if k.startswith(vid + ".") for s in sites(v)]
    if mine:
        yield "/metrics/json/", servlet, mine


def check(routes, base_other, other, list_may_fail: bool = False):
    """One mutated scrape: only TargetError may escape, and only when the application
    list itself is unreadable; errors are partial at most; the other application is
    untouched; every value is a finite float."""
    try:
        out = run(routes)
    except TargetError as e:
        assert list_may_fail and e.reason == "invalid_response", (e.reason, e.message)
        return None
    assert set(out.errors) <= {"partial"}, out.errors
    assert samples_for(out, other) == base_other
    assert all(isinstance(v, float) and math.isfinite(v) for ss in out.samples.values() for v in ss.values())
    return out


@pytest.mark.parametrize("name,routes,vid,other", VICTIMS, ids=[v[0] for v in VICTIMS])
def test_wrong_types_in_one_application_skip_only_that_application(name, routes, vid, other):
    base = run(routes)
    assert base.errors == []
    base_other, base_victim = samples_for(base, other), samples_for(base, vid)
    assert base_other and base_victim
    cases = skipped = 0
    for where, data, paths in victim_bodies(routes, vid):
        status, _, ctype = routes[where]
        for n, path in enumerate(paths):
            for label, text in wrong_values(n, where):
                if text is None and (not path or where == "/api/v1/applications" and len(path) == 1):
                    continue  # an answer or an application that is not there: tested elsewhere
                r = dict(routes)
                r[where] = (status, mutated(data, path, text), ctype)
                out = check(r, base_other, other)
                cases += 1
                if "partial" in out.errors:
                    skipped += 1
                    # skipped as a whole, nothing half-reported
                    assert out.errors == ["partial"] and samples_for(out, vid) == {}, (where, path, label)
        if where != "/metrics/json/":
            # a deeply nested value: the answer is invalid, not a RecursionError
            r = dict(routes)
            r[where] = (status, mutated(data, paths[-1], DEEP), ctype)
            out = check(r, base_other, other, list_may_fail=where == "/api/v1/applications")
            if out is not None:
                assert out.errors == ["partial"] and samples_for(out, vid) == {}
    assert cases > 500 and skipped > 50, (cases, skipped)


def test_wrong_top_level_types_are_the_targets_invalid_response():
    name, routes, vid, other = VICTIMS[0]
    for text in [*(t for k, t in WRONG.items() if k != "array"), DEEP, '{"applications": []}']:
        r = dict(routes)
        r["/api/v1/applications"] = (200, text.encode(), JSON)
        with pytest.raises(TargetError) as e:
            run(r)
        assert e.value.reason == "invalid_response", text[:20]


@pytest.mark.parametrize("text", ['{"gauges": [1], "counters": {}}', '{"gauges": {}, "counters": "x"}', "[]", '"x"',
                                  '{"gauges": {"a.driver.jvm.heap.used": {"value": 1e400}}}', DEEP])
def test_wrong_servlet_types_keep_the_api_metrics(text):
    name, routes, vid, other = VICTIMS[0]
    r = dict(routes)
    r["/metrics/json/"] = (200, text.encode(), JSON)
    out = run(r)
    assert set(out.errors) <= {"partial"}
    for app in (vid, other):
        assert any(k[0] == "spark_jobs_active" for k in samples_for(out, app))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)


_BASE_OTHER: Dict[str, dict] = {}


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_any_json_value_anywhere(data):
    """Any JSON value (NaN and infinities included) at any site of any victim."""
    name, routes, vid, other = data.draw(st.sampled_from(VICTIMS))
    if name not in _BASE_OTHER:
        _BASE_OTHER[name] = samples_for(run(routes), other)
    where, doc, paths = data.draw(st.sampled_from(list(victim_bodies(routes, vid))))
    path = data.draw(st.sampled_from(paths))
    if where == "/api/v1/applications" and len(path) == 0:
        return
    text = json.dumps(data.draw(JSON_VALUES))  # NaN / Infinity as Python's json writes them
    r = dict(routes)
    r[where] = (200, mutated(doc, path, text), JSON)
    check(r, _BASE_OTHER[name], other)


def test_through_the_exporter_no_internal_error():
    """The engine's view: a victim with a wrong type or deep nesting is skipped as
    partial, never an internal error; numbers beyond a float are absent."""
    name, routes, vid, other = VICTIMS[0]
    ex, jobs = f"/api/v1/applications/{vid}/executors", f"/api/v1/applications/{vid}/jobs"
    executors = json.loads(routes[ex][1])
    cases = [
        (ex, mutated(executors, (0, "peakMemoryMetrics"), '"x"'), 1),
        (jobs, DEEP.encode(), 1),
        (ex, mutated(executors, (0, "memoryUsed"), "1" + "0" * 400), 0),
        (ex, mutated(executors, (0, "memoryUsed"), "1e400"), 0),
    ]
    for path, body, partial in cases:
        r = dict(routes)
        r[path] = (200, body, JSON)
        with ReplayServer(r) as srv:
            with running_exporter({"spark": [{"url": srv.url, "name": "hs"}]}) as (url, _):
                text = scrape(url)
        assert value(text, "sparkwatch_target_up", target="hs") == 1
        errors = {s[1]["reason"]: s[2] for s in find(text, "sparkwatch_target_scrape_errors_total", target="hs")}
        assert errors.get("internal", 0) == 0 and errors.get("partial", 0) == partial, errors
        assert value(text, "spark_jobs_active", app_id=other) >= 1
        if partial:
            assert find(text, "spark_app_info", app_id=vid) == []
        else:
            assert find(text, "spark_executor_storage_memory_used_bytes", app_id=vid) == []
            assert value(text, "spark_executor_storage_memory_max_bytes", app_id=vid) == executors[0]["maxMemory"]
