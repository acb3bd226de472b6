"""The Spark collector against real Spark applications (pyspark 3.5 and 4.0,
local mode, started as subprocesses on free ports by testbed/spark.py).

Four applications in all, one per (Spark line, settings), shared by the tests:
- "on": streaming metrics and the JvmSource on, cleaner settings changed from
  Spark's defaults (periodicGC.interval=3min, referenceTracking.blocking=false),
  one failed job, one job that stays active, a stateful streaming query;
- "off": the same query with neither metrics source and no cleaner settings,
  writing an event log that a real history server reads.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.spark import SPARK_VERSIONS, history_server, spark_app
from tests.helpers import spark_python

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

REQUIRED_APP = [
    "spark_app_info", "spark_app_uptime_seconds", "spark_jobs_active", "spark_job_oldest_active_age_seconds",
    "spark_stages_active", "spark_stages_failed", "spark_executors_active",
    "spark_listener_queue_events", "spark_listener_dropped_events_total",
    "spark_cleaner_periodic_gc_interval_seconds", "spark_cleaner_reference_tracking_blocking",
]
#: (a local-mode driver is the only executor: no spark_executor_run/gc_seconds_total, which are executors' only)
REQUIRED_EXECUTOR = [
    "spark_executor_peak_heap_bytes", "spark_executor_storage_memory_used_bytes", "spark_executor_failed_tasks_total",
]
REQUIRED_JVM = [
    "spark_driver_jvm_heap_used_bytes", "spark_driver_jvm_memory_pool_used_bytes", "spark_driver_jvm_memory_pool_max_bytes",
]
REQUIRED_STREAMING = [
    "spark_streaming_input_rows_per_second", "spark_streaming_processed_rows_per_second",
    "spark_streaming_batch_duration_seconds", "spark_streaming_watermark_timestamp_seconds",
    "spark_streaming_state_rows", "spark_streaming_state_memory_bytes",
]
JVM_OR_STREAMING_PREFIXES = ("spark_streaming_", "spark_driver_jvm_heap_", "spark_driver_jvm_memory_pool_",
                             "spark_driver_jvm_gc_", "spark_driver_jvm_nonheap_")


@pytest.fixture(scope="session", params=SPARK_VERSIONS)
def spark_on(request):
    py = spark_python(request.param)
    with spark_app(request.param, py, metrics=True, periodic_gc="3min", blocking="false",
                   failing_job=True, slow_job=True) as app:
        yield app


@pytest.fixture(scope="session", params=SPARK_VERSIONS)
def spark_off(request, tmp_path_factory):
    py = spark_python(request.param)
    events = tmp_path_factory.mktemp(f"events-{request.param}")
    with spark_app(request.param, py, metrics=False, event_log=str(events)) as app:
        app.event_log = str(events)
        yield app


# generous: the tests check what is collected, not how fast (benchmarks/bench_spark.py
# measures that), and CI's two cores are shared with the Spark applications
SCRAPE_TIMEOUT = 60


def scrape_app(app, recorded=("spark_executor_peak_heap_bytes",)) -> str:
    """A scrape once the ``recorded`` series are there: Spark reports zeros for the
    executors' peak memory and the driver's ExecutorMetrics (not recorded, absent from
    sparkwatch) until the first heartbeat, every spark.executor.heartbeatInterval (10 s)."""
    cfg = {"exporter": {"scrape_timeout": SCRAPE_TIMEOUT},
           "spark": [{"url": app.url, "name": "drv", "timeout": SCRAPE_TIMEOUT}]}
    end = time.monotonic() + 90
    with running_exporter(cfg) as (url, _):
        while True:
            text = scrape(url, client_timeout=SCRAPE_TIMEOUT + 30)
            if all(find(samples(text), name) for name in recorded) or time.monotonic() > end:
                break
            time.sleep(2)
    assert value(text, "sparkwatch_target_up", target="drv") == 1, text
    return text


def pyspark_version(app) -> str:
    out = subprocess.run([app.args[0], "-c", "import pyspark; print(pyspark.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_sources_on(spark_on):
    text = scrape_app(spark_on)
    ss = samples(text)
    lab = {"app_id": spark_on.app_id, "target": "drv"}

    for name in REQUIRED_APP + REQUIRED_EXECUTOR + REQUIRED_JVM + REQUIRED_STREAMING:
        assert find(ss, name, **lab), f"{name} missing"

    info = find(ss, "spark_app_info", **lab)
    assert len(info) == 1 and info[0][1]["spark_version"] == pyspark_version(spark_on)
    assert info[0][1]["app_name"] == "sparkwatch-test"

    # the stateful query's state
    assert value(ss, "spark_streaming_state_rows", query="counts", **lab) > 0
    assert value(ss, "spark_streaming_state_memory_bytes", query="counts", **lab) > 0
    assert value(ss, "spark_streaming_watermark_timestamp_seconds", query="counts", **lab) > 1.6e9

    # code heaps (segmented code cache on JDK 17) with a positive max, old gen, metaspace
    code_max = {s[1]["pool"]: s[2] for s in find(ss, "spark_driver_jvm_memory_pool_max_bytes", **lab)
                if s[1]["pool"].startswith("codeheap_") or s[1]["pool"] == "code_cache"}
    assert set(code_max) >= {"codeheap_non_nmethods", "codeheap_profiled_nmethods", "codeheap_non_profiled_nmethods"}
    assert all(v > 0 for v in code_max.values()), code_max
    assert value(ss, "spark_driver_jvm_memory_pool_used_bytes", pool="g1_old_gen", **lab) > 0
    assert value(ss, "spark_driver_jvm_memory_pool_used_bytes", pool="metaspace", **lab) > 0
    assert value(ss, "spark_driver_jvm_heap_used_bytes", **lab) > 0

    # executors: in local mode the driver runs the tasks
    assert value(ss, "spark_executors_active", **lab) >= 1
    assert value(ss, "spark_executor_completed_tasks_total", executor_id="driver", **lab) > 0
    # its totalDuration is the application's wall time (Spark 3.3+): not exported as task time
    assert find(ss, "spark_executor_run_seconds_total", executor_id="driver", **lab) == []
    assert value(ss, "spark_executor_failed_tasks_total", executor_id="driver", **lab) >= 1  # the failing job

    # the job kept running, the failed stage
    assert value(ss, "spark_jobs_active", **lab) >= 1
    assert value(ss, "spark_job_oldest_active_age_seconds", **lab) > 0
    assert value(ss, "spark_stages_active", **lab) >= 1
    assert value(ss, "spark_stages_failed", **lab) >= 1

    # the cleaner settings the application was started with, not Spark's defaults
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", **lab) == 180
    assert value(ss, "spark_cleaner_reference_tracking_blocking", **lab) == 0

    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 1
    assert value(ss, "spark_metrics_source_enabled", source="streaming", **lab) == 1
    assert {s[1]["queue"] for s in find(ss, "spark_listener_queue_events", **lab)} >= {"appStatus", "executorManagement"}

    # Prometheus' own linter accepts the exposition
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sources_off(spark_off):
    text = scrape_app(spark_off, recorded=("spark_executor_peak_heap_bytes", "spark_driver_jvm_heap_used_bytes"))
    ss = samples(text)
    lab = {"app_id": spark_off.app_id, "target": "drv"}
    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 0
    assert value(ss, "spark_metrics_source_enabled", source="streaming", **lab) == 0
    # no JvmSource pools, no streaming series; the driver's heap still comes from Spark's
    # ExecutorMetrics source, on by default, so the driver heap alerts work on a default Spark
    from_executor_metrics = ("spark_driver_jvm_heap_used_bytes", "spark_driver_jvm_nonheap_used_bytes")
    assert [s for s in ss if s[0].startswith(JVM_OR_STREAMING_PREFIXES) and s[0] not in from_executor_metrics] == []
    assert value(ss, "spark_driver_jvm_heap_used_bytes", **lab) > 0
    assert value(ss, "spark_driver_jvm_nonheap_used_bytes", **lab) > 0
    # unset cleaner settings: Spark's defaults
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", **lab) == 1800
    assert value(ss, "spark_cleaner_reference_tracking_blocking", **lab) == 1
    # what does not need those sources is still there
    for name in REQUIRED_APP + REQUIRED_EXECUTOR:
        assert find(ss, name, **lab), f"{name} missing"


def test_probe_of_a_real_driver(spark_off):
    """The same application through /probe (service discovery pattern)."""
    cfg = {"spark": [], "exporter": {"scrape_timeout": SCRAPE_TIMEOUT,
                                     "probe": {"allowed_targets": ["http://127.0.0.1:*"],
                                               "modules": {"spark": {"timeout": SCRAPE_TIMEOUT}}}}}
    with running_exporter(cfg) as (url, _):
        text = scrape(url, f"/probe?module=spark&target={spark_off.url}", client_timeout=SCRAPE_TIMEOUT + 30)
    assert value(text, "spark_executors_active", app_id=spark_off.app_id) >= 1



def test_history_server(spark_off):
    """A real history server showing the running "off" application: listed as
    running, its REST metrics reported, no driver series (the history server
    answers /metrics/json/ with its HTML home page), no error."""
    import time

    import requests

    with history_server(spark_off.args[0], spark_off.event_log) as hs:
        end = time.monotonic() + 120
        while not any(a["id"] == spark_off.app_id for a in
                      requests.get(hs + "/api/v1/applications", params={"status": "running"}, timeout=10).json()):
            assert time.monotonic() < end, "the history server does not list the running application"
            time.sleep(1)
        # the first request for an application makes the history server replay its event log
        cfg = {"exporter": {"scrape_timeout": 2 * SCRAPE_TIMEOUT},
               "spark": [{"url": hs, "name": "hs", "timeout": 2 * SCRAPE_TIMEOUT}]}
        with running_exporter(cfg) as (url, _):
            text = scrape(url, client_timeout=2 * SCRAPE_TIMEOUT + 30)
    ss = samples(text)
    assert value(ss, "sparkwatch_target_up", target="hs") == 1
    assert find(ss, "sparkwatch_target_scrape_errors_total", target="hs") == []
    lab = {"app_id": spark_off.app_id, "target": "hs"}
    assert value(ss, "spark_app_completed", **lab) == 0
    assert value(ss, "spark_app_uptime_seconds", **lab) > 0
    assert find(ss, "spark_jobs_active", **lab)
    assert value(ss, "spark_executors_active", **lab) >= 1
    assert value(ss, "spark_cleaner_periodic_gc_interval_seconds", **lab) == 1800
    assert value(ss, "spark_metrics_source_enabled", source="jvm", **lab) == 0
    assert [s for s in ss if s[0].startswith(("spark_driver_", "spark_listener_", "spark_dagscheduler_"))] == []
