"""Scraping one Spark UI: a driver (port 4040), a history server (18080), or
a driver behind a proxy. The Spark collector scrapes its configured UI with
it; the Livy collector scrapes the UIs of the sessions it discovers.

Per application it reads, from the REST API under ``/api/v1``:

- ``applications?status=running`` (every application when ``include_completed``),
- ``applications/{id}/jobs?status=running``,
- ``applications/{id}/stages?status=active&status=failed``,
- ``applications/{id}/executors`` (active executors only: gone ones drop out),
- ``applications/{id}/environment`` (cached: Spark properties do not change
  while an application runs, and the answer is ~100 KB of class path),

and once per UI the driver's metrics servlet ``/metrics/json/`` (driver
JVM, Structured Streaming, listener bus and DAGScheduler gauges). A history
server has no such servlet for the applications it shows: a 404 there is
normal. Jobs and stages are counted, never labelled by id.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple
from urllib.parse import quote

from .collector import Deadline, MetricSet, TargetError, counter, gauge, info
from .httpclient import decode_json

log = logging.getLogger("sparkwatch.spark")


# --------------------------------------------------------------------------
# The catalogue

#: labels of every series of an application; of an executor; of a streaming query
APP_LABELS = ("app_id", "app_name")
EXECUTOR_LABELS = APP_LABELS + ("executor_id",)
QUERY_LABELS = APP_LABELS + ("query",)

APP_INFO = info("spark_app", "A Spark application the target shows (value 1), with its Spark version and user.",
                APP_LABELS + ("spark_version", "spark_user"))
APP_UPTIME = gauge("spark_app_uptime_seconds",
                   "Seconds since the application started (its duration once it has completed).", APP_LABELS)
APP_COMPLETED = gauge("spark_app_completed",
                      "1 if the application has completed (history server with include_completed), else 0.", APP_LABELS)
JOBS_ACTIVE = gauge("spark_jobs_active", "Jobs of the application that are running now.", APP_LABELS)
JOB_OLDEST_AGE = gauge("spark_job_oldest_active_age_seconds",
                       "Age of the oldest running job of the application (0 when no job runs). "
                       "Rising without bound means jobs pile up and never finish.", APP_LABELS)
STAGES_ACTIVE = gauge("spark_stages_active", "Stages of the application that are running now.", APP_LABELS)
STAGES_FAILED = gauge("spark_stages_failed",
                      "Failed stage attempts among the stages the UI retains (spark.ui.retainedStages).", APP_LABELS)
EXECUTORS_ACTIVE = gauge("spark_executors_active",
                         "Active executors that can run tasks (in local mode the driver is the executor).", APP_LABELS)
EX_GC = counter("spark_executor_gc_seconds_total",
                "JVM garbage collection time of the executor's tasks. GC share = rate(this) / rate(spark_executor_run_seconds_total).", EXECUTOR_LABELS)
EX_RUN = counter("spark_executor_run_seconds_total", "Time the executor spent running tasks (sum over its task slots).", EXECUTOR_LABELS)
EX_PEAK_HEAP = gauge("spark_executor_peak_heap_bytes",
                     "Peak JVM heap used by the executor since it started (refreshed on heartbeat).", EXECUTOR_LABELS)
EX_PEAK_OFFHEAP = gauge("spark_executor_peak_offheap_bytes",
                        "Peak JVM non-heap memory (code cache, metaspace, ...) of the executor since it started.", EXECUTOR_LABELS)
EX_STORAGE_USED = gauge("spark_executor_storage_memory_used_bytes",
                        "Storage memory (cached blocks, broadcasts) the executor uses now.", EXECUTOR_LABELS)
EX_STORAGE_MAX = gauge("spark_executor_storage_memory_max_bytes", "Storage memory available to the executor.", EXECUTOR_LABELS)
EX_FAILED = counter("spark_executor_failed_tasks_total", "Tasks that failed on the executor.", EXECUTOR_LABELS)
EX_COMPLETED = counter("spark_executor_completed_tasks_total", "Tasks that completed on the executor.", EXECUTOR_LABELS)
EX_ACTIVE_TASKS = gauge("spark_executor_active_tasks", "Tasks running on the executor now.", EXECUTOR_LABELS)

HEAP_USED = gauge("spark_driver_jvm_heap_used_bytes", "Driver JVM heap in use (JvmSource).", APP_LABELS)
HEAP_COMMITTED = gauge("spark_driver_jvm_heap_committed_bytes", "Driver JVM heap committed (JvmSource).", APP_LABELS)
HEAP_MAX = gauge("spark_driver_jvm_heap_max_bytes", "Driver JVM maximum heap (JvmSource).", APP_LABELS)
NONHEAP_USED = gauge("spark_driver_jvm_nonheap_used_bytes",
                     "Driver JVM non-heap memory in use: code cache, metaspace, ... (JvmSource).", APP_LABELS)
POOL_USED = gauge("spark_driver_jvm_memory_pool_used_bytes",
                  "Driver JVM memory pool in use (JvmSource). pool: normalised pool name, e.g. "
                  "codeheap_non_profiled_nmethods, code_cache, g1_old_gen, metaspace.", APP_LABELS + ("pool",))
POOL_MAX = gauge("spark_driver_jvm_memory_pool_max_bytes",
                 "Driver JVM memory pool maximum size (JvmSource); absent for pools without a limit.", APP_LABELS + ("pool",))
POOL_COMMITTED = gauge("spark_driver_jvm_memory_pool_committed_bytes",
                       "Driver JVM memory pool committed (JvmSource).", APP_LABELS + ("pool",))
POOL_AFTER_GC = gauge("spark_driver_jvm_memory_pool_used_after_gc_bytes",
                      "Driver JVM memory pool in use right after the last GC (JvmSource, heap pools only): "
                      "the heap floor; rising for hours means a leak.", APP_LABELS + ("pool",))
GC_COUNT = counter("spark_driver_jvm_gc_collections_total",
                   "Driver JVM garbage collections, by normalised collector name (JvmSource).", APP_LABELS + ("gc",))
GC_TIME = counter("spark_driver_jvm_gc_seconds_total",
                  "Driver JVM time spent in garbage collection, by normalised collector name (JvmSource).", APP_LABELS + ("gc",))
DRIVER_CPU = counter("spark_driver_jvm_cpu_seconds_total", "CPU time used by the driver JVM (JVMCPU source).", APP_LABELS)

ST_INPUT = gauge("spark_streaming_input_rows_per_second",
                 "Structured Streaming: input rate of the last batch (spark.sql.streaming.metricsEnabled).", QUERY_LABELS)
ST_PROCESSED = gauge("spark_streaming_processed_rows_per_second",
                     "Structured Streaming: processing rate of the last batch; below the input rate means a growing backlog.", QUERY_LABELS)
ST_DURATION = gauge("spark_streaming_batch_duration_seconds",
                    "Structured Streaming: duration of the last batch (latency); above the trigger interval means falling behind.", QUERY_LABELS)
ST_WATERMARK = gauge("spark_streaming_watermark_timestamp_seconds",
                     "Structured Streaming: event-time watermark as a Unix time; absent when the query has none.", QUERY_LABELS)
ST_STATE_ROWS = gauge("spark_streaming_state_rows", "Structured Streaming: rows held in state stores, all operators.", QUERY_LABELS)
ST_STATE_BYTES = gauge("spark_streaming_state_memory_bytes",
                       "Structured Streaming: memory used by state stores, all operators.", QUERY_LABELS)

LQ_EVENTS = gauge("spark_listener_queue_events",
                  "Events waiting in a driver listener bus queue; near the capacity means events will be dropped.",
                  APP_LABELS + ("queue",))
LQ_DROPPED = counter("spark_listener_dropped_events_total",
                     "Events a driver listener bus queue dropped because it was full (the UI and cleaner fall behind).",
                     APP_LABELS + ("queue",))
LQ_CAPACITY = gauge("spark_listener_queue_capacity",
                    "Capacity of a listener bus queue (spark.scheduler.listenerbus.eventqueue[.<queue>].capacity).",
                    APP_LABELS + ("queue",))
L_POSTED = counter("spark_listener_events_posted_total", "Events posted to the driver listener bus.", APP_LABELS)

DAG_JOBS_ACTIVE = gauge("spark_dagscheduler_jobs_active", "Jobs the DAGScheduler is running now.", APP_LABELS)
DAG_JOBS_ALL = counter("spark_dagscheduler_jobs_total", "Jobs submitted to the DAGScheduler since the application started.", APP_LABELS)
DAG_STAGES_RUNNING = gauge("spark_dagscheduler_stages_running", "Stages the DAGScheduler is running now.", APP_LABELS)
DAG_STAGES_WAITING = gauge("spark_dagscheduler_stages_waiting",
                           "Stages waiting for their parents; a growing number means work piles up.", APP_LABELS)
DAG_STAGES_FAILED = gauge("spark_dagscheduler_stages_failed", "Failed stages waiting to be resubmitted.", APP_LABELS)

CLEANER_INTERVAL = gauge("spark_cleaner_periodic_gc_interval_seconds",
                         "spark.cleaner.periodicGC.interval (Spark's default 30min when unset): how often the driver "
                         "runs a GC so that the ContextCleaner finds unreferenced shuffles, RDDs and broadcasts.", APP_LABELS)
CLEANER_BLOCKING = gauge("spark_cleaner_reference_tracking_blocking",
                         "spark.cleaner.referenceTracking.blocking (1 = true, Spark's default): the cleaner thread "
                         "waits for each cleanup and can fall behind.", APP_LABELS)
CLEANER_TRACKING = gauge("spark_cleaner_reference_tracking_enabled",
                         "spark.cleaner.referenceTracking (1 = true, Spark's default): 0 means the ContextCleaner is off.", APP_LABELS)
SOURCE_ENABLED = gauge("spark_metrics_source_enabled",
                       "1 if a Spark metrics source sparkwatch needs is on, 0 if it is off and its series are absent. "
                       "source=streaming: spark.sql.streaming.metricsEnabled; source=jvm: the driver JvmSource.",
                       APP_LABELS + ("source",))

# --------------------------------------------------------------------------
# Parsing helpers

_TIME_SUFFIXES = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_TIME_RE = re.compile(r"(-?[0-9]+)([a-z]+)?")


def time_string_as_seconds(s: str) -> int:
    """Spark's ``JavaUtils.timeStringAsSeconds``: an integer with an optional unit
    suffix (us, ms, s, m, min, h, d), no unit meaning seconds; converted to whole
    seconds the way ``TimeUnit.convert`` does (truncated). ValueError if Spark would
    reject it too."""
    lower = str(s).lower().strip()
    m = _TIME_RE.fullmatch(lower)
    if not m:
        raise ValueError(f"failed to parse time string: {s!r}")
    val = int(m.group(1))
    suffix = m.group(2)
    if suffix is None:
        return val
    if suffix not in _TIME_SUFFIXES:
        raise ValueError(f"invalid suffix {suffix!r} in time string {s!r}")
    f = _TIME_SUFFIXES[suffix]
    if f >= 1:
        return val * int(f)
    per_second = int(round(1 / f))
    q = abs(val) // per_second  # TimeUnit.convert truncates toward zero
    return q if val >= 0 else -q


def spark_bool(s: str) -> bool:
    """Spark's boolean configuration values (Scala ``toBoolean``: true/false, any case)."""
    v = str(s).strip().lower()
    if v == "true":
        return True
    if v == "false":
        return False
    raise ValueError(f"not a boolean: {s!r}")


def normalise_name(name: str) -> str:
    """A JVM memory pool or collector name as a stable label value:
    ``CodeHeap-'non-nmethods'`` -> ``codeheap_non_nmethods``, ``G1-Old-Gen`` ->
    ``g1_old_gen``, ``Code-Cache`` (Java 8) and ``CodeCache`` (Java 9+ with
    ``-XX:-SegmentedCodeCache``) -> ``code_cache``, ``Metaspace`` -> ``metaspace``."""
    n = re.sub(r"[^a-z0-9]+", "_", name.lower().replace("'", "")).strip("_")
    return _NAME_ALIASES.get(n, n)


_NAME_ALIASES = {"codecache": "code_cache"}


def parse_spark_time(s: Optional[str]) -> Optional[float]:
    """``2026-11-23T04:53:40.232GMT`` -> Unix seconds."""
    if not s:
        return None
    try:
        t = s[:-3] if s.endswith("GMT") else s
        dt = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc).timestamp()


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


DEFAULT_PERIODIC_GC = "30min"
DEFAULT_BLOCKING = "true"
DEFAULT_TRACKING = "true"
DEFAULT_QUEUE_CAPACITY = 10000
JVM_SOURCE_CLASS = "org.apache.spark.metrics.source.JvmSource"


class Environment:
    """What sparkwatch uses of ``/environment``."""

    def __init__(self, props: Dict[str, str], metrics_props: Dict[str, str]):
        self.props = props
        self.metrics_props = metrics_props

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Environment":
        def pairs(key):
            out = {}
            for kv in data.get(key) or []:
                if isinstance(kv, (list, tuple)) and len(kv) == 2:
                    out[str(kv[0])] = str(kv[1])
            return out

        return cls(pairs("sparkProperties"), pairs("metricsProperties"))

    def periodic_gc_seconds(self) -> Optional[int]:
        try:
            return time_string_as_seconds(self.props.get("spark.cleaner.periodicGC.interval", DEFAULT_PERIODIC_GC))
        except ValueError:
            return None

    def _bool(self, key: str, default: str) -> Optional[bool]:
        try:
            return spark_bool(self.props.get(key, default))
        except ValueError:
            return None

    def blocking(self) -> Optional[bool]:
        return self._bool("spark.cleaner.referenceTracking.blocking", DEFAULT_BLOCKING)

    def reference_tracking(self) -> Optional[bool]:
        return self._bool("spark.cleaner.referenceTracking", DEFAULT_TRACKING)

    def streaming_metrics(self) -> bool:
        return bool(self._bool("spark.sql.streaming.metricsEnabled", "false"))

    def jvm_source(self) -> bool:
        """The JvmSource configured for the driver (or all instances), by a
        spark.metrics.conf.* property or in the metrics configuration Spark loaded."""
        candidates = [(k[len("spark.metrics.conf."):], v) for k, v in self.props.items()
                      if k.startswith("spark.metrics.conf.")]
        candidates += list(self.metrics_props.items())
        for k, v in candidates:
            parts = k.split(".")
            if (len(parts) == 4 and parts[0] in ("*", "driver") and parts[1] == "source"
                    and parts[3] == "class" and v.strip() == JVM_SOURCE_CLASS):
                return True
        return False

    def queue_capacity(self, queue: str) -> Optional[int]:
        v = self.props.get(f"spark.scheduler.listenerbus.eventqueue.{queue}.capacity",
                           self.props.get("spark.scheduler.listenerbus.eventqueue.capacity", str(DEFAULT_QUEUE_CAPACITY)))
        try:
            return int(v.strip())
        except ValueError:
            return None


STREAMING_FIELDS = {
    "inputRate-total": (ST_INPUT, 1.0),
    "processingRate-total": (ST_PROCESSED, 1.0),
    "latency": (ST_DURATION, 1e-3),
    "eventTime-watermark": (ST_WATERMARK, 1e-3),
    "states-rowsTotal": (ST_STATE_ROWS, 1.0),
    "states-usedBytes": (ST_STATE_BYTES, 1.0),
}
POOL_FIELDS = {"used": POOL_USED, "max": POOL_MAX, "committed": POOL_COMMITTED, "used-after-gc": POOL_AFTER_GC}
_JVM_NOT_GC = {"heap", "non-heap", "total", "pools", "direct", "mapped"}


class DriverMetrics:
    """The metrics servlet's answer, split by driver (key prefix before ``.driver.``)."""

    def __init__(self, data: Dict[str, Any]):
        self.by_prefix: Dict[str, Dict[str, float]] = {}
        for section, field in (("gauges", "value"), ("counters", "count")):
            for key, v in (data.get(section) or {}).items():
                if not isinstance(v, dict):
                    continue
                i = key.find(".driver.")
                if i <= 0:
                    continue
                val = _num(v.get(field))
                if val is None:
                    continue
                self.by_prefix.setdefault(key[:i], {})[key[i + len(".driver."):]] = val

    def for_app(self, app_id: str, n_apps: int) -> Optional[Dict[str, float]]:
        if app_id in self.by_prefix:
            return self.by_prefix[app_id]
        # spark.metrics.namespace replaces the app id: only unambiguous on a driver UI
        if n_apps == 1 and len(self.by_prefix) == 1:
            return next(iter(self.by_prefix.values()))
        return None


def emit_driver_metrics(out: MetricSet, m: Dict[str, float], labels: Dict[str, str]) -> Tuple[bool, bool]:
    """Samples from one driver's servlet keys. Returns (jvm seen, streaming seen)."""
    jvm = streaming = False
    for key, v in m.items():
        if key.startswith("jvm."):
            jvm = True
            rest = key[4:]
            if rest.startswith("pools."):
                pool, _, field = rest[6:].rpartition(".")
                md = POOL_FIELDS.get(field)
                if md is not None and pool:
                    if field == "max" and v < 0:  # undefined maximum
                        continue
                    out.add(md, v, pool=normalise_name(pool), **labels)
            elif rest == "heap.used":
                out.add(HEAP_USED, v, **labels)
            elif rest == "heap.committed":
                out.add(HEAP_COMMITTED, v, **labels)
            elif rest == "heap.max" and v >= 0:
                out.add(HEAP_MAX, v, **labels)
            elif rest == "non-heap.used":
                out.add(NONHEAP_USED, v, **labels)
            else:
                name, _, field = rest.rpartition(".")
                if name and name not in _JVM_NOT_GC and "." not in name:
                    if field == "count":
                        out.add(GC_COUNT, v, gc=normalise_name(name), **labels)
                    elif field == "time":
                        out.add(GC_TIME, v / 1000.0, gc=normalise_name(name), **labels)
        elif key.startswith("spark.streaming."):
            rest = key[len("spark.streaming."):]
            query, _, field = rest.rpartition(".")
            spec = STREAMING_FIELDS.get(field)
            if spec is None or not query:
                continue
            streaming = True
            md, scale = spec
            if md is ST_WATERMARK and v <= 0:  # no watermark defined
                continue
            out.add(md, v * scale, query=query, **labels)
        elif key.startswith("LiveListenerBus.queue."):
            queue, _, field = key[len("LiveListenerBus.queue."):].rpartition(".")
            if field == "size":
                out.add(LQ_EVENTS, v, queue=queue, **labels)
            elif field == "numDroppedEvents":
                out.add(LQ_DROPPED, v, queue=queue, **labels)
        elif key == "LiveListenerBus.numEventsPosted":
            out.add(L_POSTED, v, **labels)
        elif key == "JVMCPU.jvmCpuTime":
            out.add(DRIVER_CPU, v / 1e9, **labels)
        elif key.startswith("DAGScheduler."):
            md = {
                "DAGScheduler.job.activeJobs": DAG_JOBS_ACTIVE,
                "DAGScheduler.job.allJobs": DAG_JOBS_ALL,
                "DAGScheduler.stage.runningStages": DAG_STAGES_RUNNING,
                "DAGScheduler.stage.waitingStages": DAG_STAGES_WAITING,
                "DAGScheduler.stage.failedStages": DAG_STAGES_FAILED,
            }.get(key)
            if md is not None:
                out.add(md, v, **labels)
    return jvm, streaming


def _merge(out: MetricSet, part: MetricSet) -> None:
    for md, samples in part.samples.items():
        out.samples.setdefault(md, {}).update(samples)
    out.errors.extend(part.errors)


# Errors that mean the whole target is gone or out of time, not just one application
_FATAL = ("timeout", "connection", "tls", "auth")


class EnvironmentCache:
    """``/environment`` answers by (base URL, app id, attempt), reused for ``ttl`` seconds."""

    def __init__(self, ttl: float = 300.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._items: Dict[Tuple[str, str, str], Tuple[float, Environment]] = {}

    def get(self, key) -> Optional[Environment]:
        hit = self._items.get(key)
        if hit is None or self.ttl <= 0 or self.clock() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def put(self, key, env: Environment) -> None:
        self._items[key] = (self.clock(), env)

    def retain(self, base: str, keys) -> None:
        """Forget the applications of ``base`` that are no longer listed."""
        keep = set(keys)
        for k in list(self._items):
            if k[0] == base and k not in keep:
                del self._items[k]


def scrape_spark_ui(http, base_url: str, out: MetricSet, deadline: Deadline, *,
                    include_completed: bool = False, max_applications: int = 50,
                    env_cache: Optional[EnvironmentCache] = None, now: Optional[float] = None) -> int:
    """Scrape one Spark UI (driver or history server) at ``base_url`` into ``out``.

    ``http`` is an :class:`~exporter.httpclient.HttpClient` (or anything with its
    ``get(url, deadline, params, ok_statuses)`` and ``get_json(url, deadline,
    params, expect)``); ``base_url`` is the UI root without a trailing slash,
    e.g. ``http://host:4040`` or a YARN proxy ``http://rm:8088/proxy/application_1_2``.

    Raises :class:`TargetError` when the application list cannot be read. An
    application whose own endpoints fail (it finished mid-scrape, 404) is
    skipped with ``out.error("partial")``; the others are still reported.
    Returns the number of applications reported.
    """
    base = base_url.rstrip("/")
    api = base + "/api/v1"
    params: Dict[str, Any] = {"limit": max_applications + 1}
    if not include_completed:
        params["status"] = "running"
    apps = http.get_json(api + "/applications", deadline, params=params, expect=list)
    if len(apps) > max_applications:
        apps = apps[:max_applications]
        out.error("limit")
    now = time.time() if now is None else now

    driver: Optional[DriverMetrics] = None
    servlet_ok = False
    if apps:
        try:
            resp = http.get(base + "/metrics/json/", deadline, ok_statuses=(200, 404))
            ctype = resp.headers.get("Content-Type", "")
            # a history server has no servlet for its applications: it answers 404, or
            # 200 with its HTML home page; neither is an error
            if resp.status_code == 200 and not ctype.lower().startswith("text/html"):
                driver = DriverMetrics(decode_json(resp.content, "/metrics/json/", ctype, expect=dict))
                servlet_ok = True
        except TargetError as e:
            if e.reason in _FATAL:
                raise
            log.info("%s: metrics servlet unreadable: %s", base, e.message)
            out.error("partial")

    reported = 0
    seen_keys = []
    for app in apps:
        if not isinstance(app, dict) or not app.get("id"):
            continue
        part = MetricSet()
        try:
            key = _scrape_app(http, api, app, part, deadline, now, driver, servlet_ok, len(apps), env_cache, base)
            seen_keys.append(key)
        except TargetError as e:
            # a history server loads an application's UI on first access (and again when
            # the event log of a running one grows): one slow application is skipped as
            # long as the scrape deadline leaves time for the others
            if e.reason in _FATAL and not (e.reason == "timeout" and not deadline.expired()):
                raise
            log.info("%s: application %s skipped: %s", base, app.get("id"), e.message)
            out.error("partial")
            continue
        _merge(out, part)
        reported += 1
    if env_cache is not None:
        env_cache.retain(base, seen_keys)
    return reported


def _scrape_app(http, api: str, app: Dict[str, Any], out: MetricSet, deadline: Deadline, now: float,
                driver: Optional[DriverMetrics], servlet_ok: bool, n_apps: int,
                env_cache: Optional[EnvironmentCache], base: str):
    app_id = str(app["id"])
    labels = {"app_id": app_id, "app_name": str(app.get("name") or "")}
    attempts = app.get("attempts") or [{}]
    att = attempts[0] if isinstance(attempts[0], dict) else {}
    attempt_id = att.get("attemptId")
    prefix = f"{api}/applications/{quote(app_id, safe='')}"
    if attempt_id:
        prefix += "/" + quote(str(attempt_id), safe="")
    completed = bool(att.get("completed", False))

    out.add(APP_INFO, 1, spark_version=str(att.get("appSparkVersion") or ""),
            spark_user=str(att.get("sparkUser") or ""), **labels)
    out.add(APP_COMPLETED, completed, **labels)
    start = _num(att.get("startTimeEpoch"))
    if start is None:
        start = parse_spark_time(att.get("startTime"))
    else:
        start /= 1000.0
    if completed:
        d = _num(att.get("duration"))
        out.add(APP_UPTIME, d / 1000.0 if d is not None else None, **labels)
    elif start is not None and start > 0:
        out.add(APP_UPTIME, max(0.0, now - start), **labels)

    jobs = http.get_json(prefix + "/jobs", deadline, params={"status": "running"}, expect=list)
    out.add(JOBS_ACTIVE, len(jobs), **labels)
    submitted = [t for t in (parse_spark_time(j.get("submissionTime")) for j in jobs if isinstance(j, dict)) if t]
    out.add(JOB_OLDEST_AGE, max(0.0, now - min(submitted)) if submitted else 0.0, **labels)

    stages = http.get_json(prefix + "/stages", deadline, params={"status": ["active", "failed"]}, expect=list)
    statuses = [s.get("status") for s in stages if isinstance(s, dict)]
    out.add(STAGES_ACTIVE, statuses.count("ACTIVE"), **labels)
    out.add(STAGES_FAILED, statuses.count("FAILED"), **labels)

    executors = http.get_json(prefix + "/executors", deadline, expect=list)
    n_active = 0
    for e in executors:
        if not isinstance(e, dict) or e.get("isActive") is False or e.get("id") is None:
            continue
        eid = str(e["id"])
        if eid != "driver" or (_num(e.get("totalCores")) or 0) > 0:
            n_active += 1
        el = dict(labels, executor_id=eid)
        gc, run = _num(e.get("totalGCTime")), _num(e.get("totalDuration"))
        out.add(EX_GC, gc / 1000.0 if gc is not None else None, **el)
        out.add(EX_RUN, run / 1000.0 if run is not None else None, **el)
        peak = e.get("peakMemoryMetrics") or {}
        out.add(EX_PEAK_HEAP, _num(peak.get("JVMHeapMemory")), **el)
        out.add(EX_PEAK_OFFHEAP, _num(peak.get("JVMOffHeapMemory")), **el)
        out.add(EX_STORAGE_USED, _num(e.get("memoryUsed")), **el)
        out.add(EX_STORAGE_MAX, _num(e.get("maxMemory")), **el)
        out.add(EX_FAILED, _num(e.get("failedTasks")), **el)
        out.add(EX_COMPLETED, _num(e.get("completedTasks")), **el)
        out.add(EX_ACTIVE_TASKS, _num(e.get("activeTasks")), **el)
    out.add(EXECUTORS_ACTIVE, n_active, **labels)

    cache_key = (base, app_id, str(attempt_id or ""))
    env = env_cache.get(cache_key) if env_cache is not None else None
    if env is None:
        env = Environment.from_json(http.get_json(prefix + "/environment", deadline, expect=dict))
        if env_cache is not None:
            env_cache.put(cache_key, env)
    out.add(CLEANER_INTERVAL, env.periodic_gc_seconds(), **labels)
    out.add(CLEANER_BLOCKING, env.blocking(), **labels)
    out.add(CLEANER_TRACKING, env.reference_tracking(), **labels)

    m = driver.for_app(app_id, n_apps) if driver is not None else None
    jvm_seen = streaming_seen = False
    if m is not None:
        jvm_seen, streaming_seen = emit_driver_metrics(out, m, labels)
        for q in {k[len("LiveListenerBus.queue."):].rpartition(".")[0] for k in m
                  if k.startswith("LiveListenerBus.queue.")}:
            if q:
                out.add(LQ_CAPACITY, env.queue_capacity(q), queue=q, **labels)
    # jvm: what the driver exports when its servlet is readable, else what is configured
    jvm_on = jvm_seen if (servlet_ok and m is not None) else env.jvm_source()
    out.add(SOURCE_ENABLED, jvm_on, source="jvm", **labels)
    out.add(SOURCE_ENABLED, streaming_seen or env.streaming_metrics(), source="streaming", **labels)
    return cache_key
