"""The Spark collector on a real history server replaying Spark's own test event
logs (tests/data/spark-events, see its ORIGIN.md): a restarted application
(attempts 1 and 2, both finished), a driver that ran no task in local mode, and
a log that was never closed but whose file is recent (its application started
in 2015). Fast tests use the answers scripts/record_history_server.py recorded
(tests/data/history-<spark version>/); the tests marked ``spark`` start the
history server itself. Expected values are read off the recorded JSON and
Spark's own expectations of those replays (tests/data/peer/apache-spark)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from sparkwatch.collector import Deadline, MetricSet
from sparkwatch.collectors.spark import SparkTarget
from sparkwatch.collectors.spark.model import AppAttempt, parse_spark_time
from sparkwatch.collectors.spark.scrape import scrape_spark_ui
from sparkwatch.httpclient import HttpClient
from testbed.exporter import find, value
from testbed.history_server import HistoryReplay, copy_event_logs, history_recordings, history_server
from tests.helpers import spark_python

RECORDINGS = history_recordings()
assert len(RECORDINGS) >= 2, "recordings of both Spark lines are expected in tests/data/history-*"
PEER = Path(__file__).resolve().parent / "data" / "peer" / "apache-spark"

RESTARTED = "local-1430917381535"  # attempts 1 and 2, both completed, local mode, no task
NEVER_CLOSED = "local-1426533911241"  # attempt 1, never closed (its file: recent), local mode, 8 tasks
LEGACY = "local-1422981780767"  # Spark 1.2: no attempts, the driver "<driver>", local mode, 32 tasks
#: every event log and its modification time (the history server's lastUpdated) for a live server
LIVE_LOGS = {"local-1430917381535_1": 1430917380.890, "local-1430917381535_2": 1430917380.950,
             "local-1422981780767": 1422981788.731}


def samples_of(out: MetricSet):
    return [(md.exposed_name, dict(zip(md.labels, key)), v) for md, ss in out.samples.items() for key, v in ss.items()]


def collect(url: str, now: float, **kw):
    out = MetricSet()
    http = HttpClient(SparkTarget(url=url))
    try:
        scrape_spark_ui(http, url, out, Deadline(30), now=now, **kw)
    finally:
        http.close()
    return out, samples_of(out)


def answer(d: Path, path: str, params=None):
    idx = json.loads((d / "index.json").read_text())
    r = next(r for r in idx["requests"] if r["path"] == path and r["params"] == (params or {}))
    return json.loads((d / r["file"]).read_bytes())


@pytest.fixture(params=RECORDINGS, ids=lambda d: d.name)
def recorded(request):
    d = request.param
    with HistoryReplay(d) as srv:
        yield d, srv, json.loads((d / "index.json").read_text())["recorded_at"]


def attempts_of(ss, name, app_id):
    return sorted(s[1]["attempt_id"] for s in find(ss, name, app_id=app_id))


# --------------------------------------------------------------------------
# What the history server answered is what Spark's own test suite expects of these logs


def test_the_replay_matches_sparks_expectations(recorded):
    d, _, _ = recorded
    expected = {a["id"]: a for a in json.loads((PEER / "application_list_json_expectation.json").read_text())}
    listed = {a["id"]: a for a in answer(d, "/api/v1/applications")}
    keys = ("attemptId", "startTime", "endTime", "duration", "sparkUser", "completed")
    assert [{k: a.get(k) for k in keys} for a in listed[RESTARTED]["attempts"]] == \
        [{k: a.get(k) for k in keys} for a in expected[RESTARTED]["attempts"]]
    # the never-closed copy of attempt 1 of Spark's local-1426533911241: same start, not completed
    (att,) = listed[NEVER_CLOSED]["attempts"]
    exp1 = next(a for a in expected[NEVER_CLOSED]["attempts"] if a["attemptId"] == "1")
    assert (att["attemptId"], att["startTime"], att["completed"]) == ("1", exp1["startTime"], False)


# --------------------------------------------------------------------------
# Attempts: one per application by default, labelled; earlier ones where asked


def test_one_attempt_per_application_by_default(recorded):
    d, srv, now = recorded
    out, ss = collect(srv.url, now)  # status=running: the never-closed application only
    assert out.errors == []
    assert attempts_of(ss, "spark_app_info", NEVER_CLOSED) == ["1"]
    assert find(ss, "spark_app_info", app_id=RESTARTED) == []
    out, ss = collect(srv.url, now, include_completed=True)
    assert out.errors == []
    # the latest attempt only, and labelled as such: exactly one series per application
    assert attempts_of(ss, "spark_app_info", RESTARTED) == ["2"]
    assert attempts_of(ss, "spark_executors_active", RESTARTED) == ["2"]
    assert attempts_of(ss, "spark_executor_completed_tasks_total", RESTARTED) == ["2"]


def test_finished_attempts_where_asked(recorded):
    d, srv, now = recorded
    out, ss = collect(srv.url, now, include_completed=True, max_attempts=2)
    assert out.errors == []
    assert attempts_of(ss, "spark_app_info", RESTARTED) == ["1", "2"]
    assert attempts_of(ss, "spark_executor_completed_tasks_total", RESTARTED) == ["1", "2"]
    for att in answer(d, "/api/v1/applications", {"status": "completed"})[0]["attempts"]:
        lab = dict(app_id=RESTARTED, attempt_id=att["attemptId"])
        assert value(ss, "spark_app_completed", **lab) == 1
        assert value(ss, "spark_app_uptime_seconds", **lab) == att["duration"] / 1000
    # the environment of each attempt was read on its own path
    paths = {r.split("?")[0] for r in srv.requests}
    assert {f"/api/v1/applications/{RESTARTED}/1/environment", f"/api/v1/applications/{RESTARTED}/2/environment"} <= paths


def test_earlier_attempts_only_with_completed_applications():
    with pytest.raises(ValidationError, match="max_attempts"):
        SparkTarget(url="http://127.0.0.1:18080", max_attempts=2)
    SparkTarget(url="http://127.0.0.1:18080", max_attempts=2, include_completed=True)
    with pytest.raises(ValidationError, match="max_attempts"):
        SparkTarget(url="http://127.0.0.1:18080", include_completed=True, max_attempts=11)


@pytest.mark.parametrize("raw,label", [
    (None, ""), ("1", "1"), ("2", "2"), ("attempt_1.b-c", "attempt_1.b-c"), ("x" * 32, "x" * 32),
    ("x" * 33, "invalid"), ("1 2", "invalid"), ("1\n2", "invalid"), ("é", "invalid"), ('1"}', "invalid"),
])
def test_attempt_label_is_bounded(raw, label):
    app = {"id": "app-1", "attempts": [{"attemptId": raw} if raw is not None else {}]}
    assert AppAttempt(app).attempt_label == label


# --------------------------------------------------------------------------
# The driver: no wall time as task time; the executor of local mode; its label


def test_driver_run_time_is_not_task_time(recorded):
    d, srv, now = recorded
    out, ss = collect(srv.url, now, include_completed=True, max_attempts=2)
    for path in (f"/api/v1/applications/{RESTARTED}/1/executors", f"/api/v1/applications/{NEVER_CLOSED}/1/executors"):
        (driver,) = answer(d, path)
        assert driver["id"] == "driver"
    # what Spark answers for a driver that ran no task: the attempt's wall time, not task time
    (driver,) = answer(d, f"/api/v1/applications/{RESTARTED}/2/executors")
    app = answer(d, "/api/v1/applications", {"status": "completed"})[0]
    assert driver["totalTasks"] == 0 and driver["totalDuration"] == app["attempts"][0]["duration"] > 0
    # so neither the driver's "run" time nor its GC time (its whole JVM's) is exported as an executor's
    assert [s for s in find(ss, "spark_executor_run_seconds_total") if s[1]["executor_id"] == "driver"] == []
    assert [s for s in find(ss, "spark_executor_gc_seconds_total") if s[1]["executor_id"] == "driver"] == []
    # its task counters are
    assert value(ss, "spark_executor_completed_tasks_total", app_id=NEVER_CLOSED, executor_id="driver") == 8


def test_local_mode_driver_is_the_executor(recorded):
    d, srv, now = recorded
    out, ss = collect(srv.url, now, include_completed=True, max_attempts=2)
    (driver,) = answer(d, f"/api/v1/applications/{RESTARTED}/2/executors")
    env = dict(answer(d, f"/api/v1/applications/{RESTARTED}/2/environment")["sparkProperties"])
    assert (driver["totalCores"], driver["totalTasks"], env["spark.master"]) == (0, 0, "local[*]")
    for att in ("1", "2"):
        assert value(ss, "spark_executors_active", app_id=RESTARTED, attempt_id=att) == 1
    assert value(ss, "spark_executors_active", app_id=NEVER_CLOSED) == 1


def test_pre_1_4_driver_is_labelled_driver(recorded):
    d, srv, now = recorded
    # what the history server answers for the pre-1.4 log is Spark's own expectation of it
    (driver,) = answer(d, f"/api/v1/applications/{LEGACY}/executors")
    (expected,) = json.loads((PEER / "executor_list_json_expectation.json").read_text())
    keys = ("id", "totalCores", "totalTasks", "completedTasks", "failedTasks", "totalGCTime", "isActive")
    assert {k: driver[k] for k in keys} == {k: expected[k] for k in keys}
    assert driver["id"] == "<driver>" and driver["totalCores"] == 0
    out, ss = collect(srv.url, now, include_completed=True)
    assert out.errors == []
    lab = dict(app_id=LEGACY, attempt_id="")  # no attempts before Spark 1.4: an empty attempt_id
    assert value(ss, "spark_app_completed", **lab) == 1
    assert {s[1]["executor_id"] for s in find(ss, "spark_executor_completed_tasks_total", app_id=LEGACY)} == {"driver"}
    assert value(ss, "spark_executor_completed_tasks_total", executor_id="driver", **lab) == expected["completedTasks"]
    assert value(ss, "spark_executor_failed_tasks_total", executor_id="driver", **lab) == expected["failedTasks"] == 1
    assert value(ss, "spark_executors_active", **lab) == 1  # local mode: the driver ran the tasks
    assert find(ss, "spark_executor_run_seconds_total", app_id=LEGACY) == []


# --------------------------------------------------------------------------
# A log never closed, whose file is recent: stale, measured to its last sign of life


def last_sign_of_life(d: Path) -> float:
    """The newest time the never-closed application's own answers show, read off the
    recording: its start, its jobs' submission and completion, its executors' addition."""
    (att,) = answer(d, "/api/v1/applications", {"status": "running"})[0]["attempts"]
    times = [att["startTimeEpoch"] / 1000]
    for j in answer(d, f"/api/v1/applications/{NEVER_CLOSED}/1/jobs"):
        times += [parse_spark_time(j.get(k)) for k in ("submissionTime", "completionTime")]
    for e in answer(d, f"/api/v1/applications/{NEVER_CLOSED}/1/executors"):
        times.append(parse_spark_time(e.get("addTime")))
    return max(t for t in times if t is not None)


def test_never_closed_log_with_a_recent_file_is_stale(recorded):
    d, srv, now = recorded
    (att,) = answer(d, "/api/v1/applications", {"status": "running"})[0]["attempts"]
    start, updated = att["startTimeEpoch"] / 1000, att["lastUpdatedEpoch"] / 1000
    assert now - updated < 3600 < now - start  # the case: a recent file, an application of 2015
    assert answer(d, f"/api/v1/applications/{NEVER_CLOSED}/1/jobs", {"status": "running"}) == []
    newest = last_sign_of_life(d)
    assert start <= newest < start + 60
    out, ss = collect(srv.url, now)
    assert out.errors == []
    lab = dict(app_id=NEVER_CLOSED, attempt_id="1")
    assert value(ss, "spark_app_completed", **lab) == 0
    assert value(ss, "spark_app_stale", **lab) == 1
    # its uptime ends at the last thing it did, not now nor the file's time
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx(newest - start)
    # stale_after 0: never stale, the uptime runs to now
    out, ss = collect(srv.url, now, stale_after=0)
    assert value(ss, "spark_app_stale", **lab) == 0
    assert value(ss, "spark_app_uptime_seconds", **lab) == pytest.approx(now - start)


def test_a_sign_of_life_within_stale_after_is_not_stale(recorded):
    """Started longer than stale_after ago, its file recent, its last sign of life just within
    stale_after: alive."""
    d, srv, now = recorded
    (att,) = answer(d, "/api/v1/applications", {"status": "running"})[0]["attempts"]
    start, newest = att["startTimeEpoch"] / 1000, last_sign_of_life(d)
    stale_after = now - newest + 0.5
    assert now - start > stale_after or newest == start
    out, ss = collect(srv.url, now, stale_after=stale_after)
    assert value(ss, "spark_app_stale", app_id=NEVER_CLOSED) == 0
    assert value(ss, "spark_app_uptime_seconds", app_id=NEVER_CLOSED) == pytest.approx(now - start)
    out, ss = collect(srv.url, now, stale_after=now - newest - 0.5)
    assert value(ss, "spark_app_stale", app_id=NEVER_CLOSED) == 1


# --------------------------------------------------------------------------
# The same on a live history server


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("version", ["4.0", "3.5"])
def test_live_history_server(version):
    spark_python(version)
    with tempfile.TemporaryDirectory(prefix="sparkwatch-history-") as tmp:
        now = time.time()
        copy_event_logs(Path(tmp), dict(LIVE_LOGS, **{"local-1426533911241.inprogress": now - 60}))
        with history_server(version, Path(tmp), expect_apps=3) as hs:
            out, ss = collect(hs.url, time.time(), include_completed=True)
            assert out.errors == []
            assert attempts_of(ss, "spark_app_info", RESTARTED) == ["2"]
            assert value(ss, "spark_executors_active", app_id=RESTARTED) == 1
            assert value(ss, "spark_executors_active", app_id=LEGACY) == 1
            assert {s[1]["executor_id"] for s in find(ss, "spark_executor_completed_tasks_total", app_id=LEGACY)} \
                == {"driver"}
            assert value(ss, "spark_app_stale", app_id=NEVER_CLOSED, attempt_id="1") == 1
            assert value(ss, "spark_app_uptime_seconds", app_id=NEVER_CLOSED) < 86400
            assert [s for s in find(ss, "spark_executor_run_seconds_total") if s[1]["executor_id"] == "driver"] == []
            out, ss = collect(hs.url, time.time(), include_completed=True, max_attempts=2)
            assert attempts_of(ss, "spark_app_info", RESTARTED) == ["1", "2"]
