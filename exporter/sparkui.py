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

Every field is read type-checked (:func:`_field`): a field of the wrong JSON
type in one application's answers makes that application an
``invalid_response`` (skipped, ``partial``), never an exception of another
kind; numbers that are not finite (``1e400``, ``NaN``, a 400-digit integer)
are absent. What real servers were seen to send, and how each odd shape is
read, is in ``docs/spark-correctness.md``.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, wait
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
APP_STALE = gauge("spark_app_stale",
                  "1 if the application is not completed but its event log has not been updated for stale_after "
                  "seconds (history server: the driver most likely died without closing it); its uptime and job "
                  "ages are then measured to that last update instead of now. 0 otherwise.", APP_LABELS)
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

HEAP_USED = gauge("spark_driver_jvm_heap_used_bytes",
                  "Driver JVM heap in use (JvmSource; without it, the ExecutorMetrics source's JVMHeapMemory, "
                  "on by default since Spark 3.0).", APP_LABELS)
HEAP_COMMITTED = gauge("spark_driver_jvm_heap_committed_bytes", "Driver JVM heap committed (JvmSource).", APP_LABELS)
HEAP_MAX = gauge("spark_driver_jvm_heap_max_bytes", "Driver JVM maximum heap (JvmSource).", APP_LABELS)
NONHEAP_USED = gauge("spark_driver_jvm_nonheap_used_bytes",
                     "Driver JVM non-heap memory in use: code cache, metaspace, ... (JvmSource; without it, "
                     "the ExecutorMetrics source's JVMOffHeapMemory).", APP_LABELS)
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


def parse_spark_time(s) -> Optional[float]:
    """``2026-11-23T04:58:05.204GMT`` -> Unix seconds; None for anything else
    (not a string, empty, another format)."""
    if not isinstance(s, str) or not s:
        return None
    try:
        t = s[:-3] if s.endswith("GMT") else s
        dt = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f")
        return dt.replace(tzinfo=timezone.utc).timestamp()
    except (ValueError, OverflowError):
        return None


def _num(v) -> Optional[float]:
    """A JSON number as a finite float; None for anything else: other types,
    booleans, ``NaN``/``Infinity`` (which Python's json accepts), and integers
    too large for a float (``10**400``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _add(out: MetricSet, md, value, **labels) -> None:
    """``out.add`` with only finite values: whatever arithmetic made of a
    value (a huge time string in seconds, a huge capacity), inf, NaN and
    numbers beyond a float are absent, never an exception."""
    out.add(md, value if value is None or isinstance(value, bool) else _num(value), **labels)


# --------------------------------------------------------------------------
# Type-checked field access. Spark's REST API (Jackson, NON_ABSENT) omits
# fields it has no value for; null is read the same way. Any other value of a
# type sparkwatch does not expect is an invalid answer.

_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
NUMBER = (int, float)


def _json_type(v) -> str:
    return "null" if v is None else _JSON_TYPE.get(type(v), type(v).__name__)


def _invalid(where: str, what: str) -> TargetError:
    return TargetError("invalid_response", f"{where}: {what}")


def _field(obj: Dict[str, Any], key: str, types, where: str):
    """``obj[key]`` if it has one of ``types`` (a tuple of Python types; bool is
    never a number), None when absent or null; TargetError(invalid_response)
    for any other type. Numbers come back as finite floats or None."""
    v = obj.get(key)
    if v is None:
        return None
    is_number = isinstance(v, NUMBER) and not isinstance(v, bool)
    if isinstance(v, bool):
        ok = bool in types
    elif is_number:
        ok = int in types or float in types
    else:
        ok = isinstance(v, tuple(t for t in types if t not in (bool, int, float)))
    if not ok:
        names = sorted({_JSON_TYPE.get(t, t.__name__) for t in types})
        raise _invalid(where, f"{key} is a JSON {_json_type(v)}, expected {' or '.join(names)}")
    return _num(v) if is_number else v


def _number(obj: Dict[str, Any], key: str, where: str) -> Optional[float]:
    return _field(obj, key, NUMBER, where)


def _string(obj: Dict[str, Any], key: str, where: str) -> Optional[str]:
    return _field(obj, key, (str,), where)


def _time(obj: Dict[str, Any], epoch_key: str, text_key: str, where: str) -> Optional[float]:
    """A point in time in Unix seconds, from ``<x>Epoch`` (ms) or else from
    ``<x>`` (a ``...GMT`` string, or epoch ms in the pre-1.4 answers); None
    when unknown (absent, 0, -1, ``""``, unparsable)."""
    ms = _number(obj, epoch_key, where) if epoch_key else None
    if ms is not None and ms > 0:
        return ms / 1000.0
    v = _field(obj, text_key, (str, int, float), where)
    t = v / 1000.0 if isinstance(v, float) else parse_spark_time(v)
    return t if t is not None and t > 0 else None


def _get_json(http, url: str, deadline: Deadline, params=None, expect: type = list):
    """``http.get_json`` where JSON nested too deep for the decoder is an
    invalid answer too (Python's json raises RecursionError on it)."""
    try:
        return http.get_json(url, deadline, params=params, expect=expect)
    except RecursionError:
        raise TargetError("invalid_response", f"GET {url.split('?', 1)[0]}: JSON nested too deeply") from None


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
    def from_json(cls, data: Dict[str, Any], where: str = "environment") -> "Environment":
        """From the ``/environment`` answer; TargetError(invalid_response) when
        it is not an object or a property list is not ``[[key, value], ...]``
        of strings."""
        if not isinstance(data, dict):
            raise _invalid(where, f"a JSON {_json_type(data)}, expected object")

        def pairs(key):
            out = {}
            for i, kv in enumerate(_field(data, key, (list,), where) or []):
                if not (isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)):
                    raise _invalid(where, f"{key}[{i}] is not a [key, value] pair of strings")
                out[kv[0]] = kv[1]
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
        except ValueError:  # also an integer of more than 4300 digits
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
        """TargetError(invalid_response) when ``gauges`` or ``counters`` is not
        an object; single entries of another shape, or whose value is not a
        finite number (Dropwizard gauges may hold anything, ``"NaN"`` included),
        are left out."""
        self.by_prefix: Dict[str, Dict[str, float]] = {}
        for section, field in (("gauges", "value"), ("counters", "count")):
            for key, v in (_field(data, section, (dict,), "/metrics/json/") or {}).items():
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
                    _add(out, md, v, pool=normalise_name(pool), **labels)
            elif rest == "heap.used":
                _add(out, HEAP_USED, v, **labels)
            elif rest == "heap.committed":
                _add(out, HEAP_COMMITTED, v, **labels)
            elif rest == "heap.max" and v >= 0:
                _add(out, HEAP_MAX, v, **labels)
            elif rest == "non-heap.used":
                _add(out, NONHEAP_USED, v, **labels)
            else:
                name, _, field = rest.rpartition(".")
                if name and name not in _JVM_NOT_GC and "." not in name:
                    if field == "count":
                        _add(out, GC_COUNT, v, gc=normalise_name(name), **labels)
                    elif field == "time":
                        _add(out, GC_TIME, v / 1000.0, gc=normalise_name(name), **labels)
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
            _add(out, md, v * scale, query=query, **labels)
        elif key.startswith("LiveListenerBus.queue."):
            queue, _, field = key[len("LiveListenerBus.queue."):].rpartition(".")
            if field == "size":
                _add(out, LQ_EVENTS, v, queue=queue, **labels)
            elif field == "numDroppedEvents":
                _add(out, LQ_DROPPED, v, queue=queue, **labels)
        elif key == "LiveListenerBus.numEventsPosted":
            _add(out, L_POSTED, v, **labels)
        elif key == "JVMCPU.jvmCpuTime":
            _add(out, DRIVER_CPU, v / 1e9, **labels)
        elif key.startswith("DAGScheduler."):
            md = {
                "DAGScheduler.job.activeJobs": DAG_JOBS_ACTIVE,
                "DAGScheduler.job.allJobs": DAG_JOBS_ALL,
                "DAGScheduler.stage.runningStages": DAG_STAGES_RUNNING,
                "DAGScheduler.stage.waitingStages": DAG_STAGES_WAITING,
                "DAGScheduler.stage.failedStages": DAG_STAGES_FAILED,
            }.get(key)
            if md is not None:
                _add(out, md, v, **labels)
    if not jvm:
        # no JvmSource: the ExecutorMetrics source (spark.metrics.executorMetricsSource.enabled,
        # on by default since 3.0) still has the driver's heap, so the heap alerts work on a default Spark
        # (0 until the driver's first heartbeat snapshot: not recorded, as with the executors' peaks)
        for key, md in (("ExecutorMetrics.JVMHeapMemory", HEAP_USED), ("ExecutorMetrics.JVMOffHeapMemory", NONHEAP_USED)):
            if m.get(key, 0) > 0:
                out.add(md, m[key], **labels)
    return jvm, streaming


def merge(out: MetricSet, part: MetricSet) -> None:
    """Add the samples and errors of ``part`` to ``out``."""
    for md, samples in part.samples.items():
        out.samples.setdefault(md, {}).update(samples)
    out.errors.extend(part.errors)


# Errors that mean the whole target is gone or out of time, not just one application
_FATAL = ("timeout", "connection", "tls", "auth")


def _part_reason(e: TargetError) -> str:
    """The reason a part of a target (one application, the servlet) that failed is counted
    under: ``limit`` (an answer too large for the memory budget) stays visible as such."""
    return "limit" if e.reason == "limit" else "partial"

#: an application that is not completed but whose event log has not been
#: written for this long is reported as stale (see :data:`APP_STALE`)
DEFAULT_STALE_AFTER = 86400.0
#: the driver's entry in /executors: "driver", "<driver>" before Spark 2.0
DRIVER_IDS = ("driver", "<driver>")


class EnvironmentCache:
    """What is remembered of Spark UIs between scrapes: ``/environment`` answers by
    (base URL, app id, attempt), reused for ``ttl`` seconds, and each UI's last
    application list (whose applications' requests the next scrape starts
    together with the list). Bounded: expired answers are dropped, and only the
    lists of the :data:`MAX_LISTINGS` most recently scraped UIs are kept."""

    #: UIs whose last application list is remembered
    MAX_LISTINGS = 256

    def __init__(self, ttl: float = 300.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._items: Dict[Tuple[str, str, str], Tuple[float, Environment]] = {}
        self._listings: "OrderedDict[str, list]" = OrderedDict()
        self._lock = threading.Lock()  # the UIs of a cluster target are scraped concurrently

    def get(self, key) -> Optional[Environment]:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or self.ttl <= 0 or self.clock() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def put(self, key, env: Environment) -> None:
        now = self.clock()
        with self._lock:
            self._items[key] = (now, env)
            if len(self._items) > 64:  # UIs that were never retained (Livy sessions that ended)
                for k in [k for k, (t, _) in self._items.items() if self.ttl <= 0 or now - t >= self.ttl]:
                    del self._items[k]

    def listing(self, base: str) -> list:
        """The applications ``base`` listed last time (empty when unknown)."""
        with self._lock:
            return list(self._listings.get(base, ()))

    def remember_listing(self, base: str, apps: list) -> None:
        with self._lock:
            self._listings[base] = list(apps)
            self._listings.move_to_end(base)
            while len(self._listings) > self.MAX_LISTINGS:
                self._listings.popitem(last=False)

    def retain(self, base: str, keys) -> None:
        """Forget the applications of ``base`` that are no longer listed."""
        keep = set(keys)
        with self._lock:
            for k in [k for k in self._items if k[0] == base and k not in keep]:
                del self._items[k]

    def retain_bases(self, bases) -> None:
        """Forget every UI not in ``bases`` (applications a cluster no longer runs)."""
        keep = set(bases)
        with self._lock:
            for k in [k for k in self._items if k[0] not in keep]:
                del self._items[k]
            for b in [b for b in self._listings if b not in keep]:
                del self._listings[b]


#: requests to one UI in flight at once by default (the servlet and each application's
#: jobs, stages, executors and environment are fetched concurrently)
DEFAULT_UI_CONCURRENCY = 4
#: applications whose answers are fetched ahead of the one being processed, per worker
#: (bounds the decoded answers held at once)
PREFETCH_APPS_PER_WORKER = 4


def _params_key(params) -> tuple:
    if not params:
        return ()
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


class RequestPool:
    """Threads that make a target's requests ahead of time, kept between scrapes
    (starting a thread costs more than a request to a driver on the same host;
    threads per scrape made a scrape 1.2x the raw fetches instead of 1.1x).
    ``workers`` threads named ``thread_name_<i>``, all started at the first
    request (so that their number is flat from the first scrape on, not creeping
    up to its bound as concurrency peaks come), idle between scrapes, ended by
    :meth:`close`. A request submitted after ``close`` is made in the calling
    thread instead (``submit`` returns None)."""

    def __init__(self, workers: int, thread_name: str):
        self.workers = max(1, workers)
        self.thread_name = thread_name
        self._lock = threading.Lock()
        self._queue: Optional[queue.SimpleQueue] = None
        self._closed = False

    def submit(self, fn, *args) -> Optional[Future]:
        with self._lock:
            if self._closed:
                return None
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                for i in range(self.workers):
                    threading.Thread(target=self._work, args=(self._queue,), name=f"{self.thread_name}_{i}",
                                     daemon=True).start()
            f: Future = Future()
            self._queue.put((f, fn, args))
            return f

    @staticmethod
    def _work(q: "queue.SimpleQueue") -> None:
        while True:
            item = q.get()
            if item is None:
                return
            f, fn, args = item
            item = None
            if f.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - the caller gets it from the future
                    f.set_exception(e)
                else:
                    f.set_result(result)
                result = None
            # nothing of a request stays referenced by an idle thread
            f = fn = args = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            q, self._queue = self._queue, None
        if q is None:
            return
        while True:  # what has not started is cancelled
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(self.workers):
            q.put(None)


class Prefetch:
    """``http``'s ``get``/``get_json`` over requests submitted ahead of time to a
    :class:`RequestPool` (``pool``, or one of ``workers`` threads for this scrape
    alone): a request that was submitted returns its answer (or raises its
    :class:`TargetError`) once it is there; any other is made now, in the
    calling thread. :func:`_scrape_app` reads through it unchanged, in its own
    order, while the requests of the next applications are in flight.
    ``close()`` cancels what has not started and waits for what has (every
    request is bounded by the deadline), so that no request of a scrape
    outlives it."""

    def __init__(self, http, workers: int, thread_name: str, pool: Optional[RequestPool] = None):
        self.http = http
        self._own = pool is None
        self._pool = RequestPool(workers, thread_name) if pool is None else pool
        self._futures: Dict[tuple, Future] = {}
        #: what was submitted and not yet answered (an answer read is not kept here: the
        #: decoded answers of a whole scrape would otherwise live until it ends)
        self._submitted: set = set()

    def _submit(self, key: tuple, fn, *args) -> None:
        if key not in self._futures:
            f = self._pool.submit(fn, *args)
            if f is not None:
                self._futures[key] = f
                self._submitted.add(f)

    def submit_get(self, url: str, deadline: Deadline, params=None, ok_statuses=(200,)) -> None:
        self._submit(("get", url, _params_key(params), tuple(ok_statuses)),
                     self.http.get, url, deadline, params, ok_statuses)

    def submit_json(self, url: str, deadline: Deadline, params=None, expect: type = object) -> None:
        self._submit(("json", url, _params_key(params), expect),
                     self.http.get_json, url, deadline, params, expect)

    def _answer(self, key: tuple, fn, *args):
        f = self._futures.pop(key, None)
        if f is not None:
            self._submitted.discard(f)
            try:
                return f.result()  # each request ends by the deadline
            except CancelledError:  # the pool was closed (an evicted probe target) before it started
                pass
        return fn(*args)

    def get(self, url, deadline, params=None, ok_statuses=(200,)):
        return self._answer(("get", url, _params_key(params), tuple(ok_statuses)),
                            self.http.get, url, deadline, params, ok_statuses)

    def get_json(self, url, deadline, params=None, expect=object):
        return self._answer(("json", url, _params_key(params), expect),
                            self.http.get_json, url, deadline, params, expect)

    def close(self) -> None:
        for f in self._futures.values():
            f.cancel()
        self._futures.clear()
        if self._own:
            self._pool.close()
        # what had started ends by its deadline: wait for it, so that no request of this
        # scrape is still in flight when the scrape returns
        wait([f for f in self._submitted if not f.cancelled()])
        self._submitted.clear()


def _prefetch_app(pf: Prefetch, api: str, app, deadline: Deadline, env_cache: Optional[EnvironmentCache],
                  base: str) -> None:
    """Submit the requests :func:`_scrape_app` will make for ``app``. An entry that
    cannot name its requests is left alone: _scrape_app reports it."""
    try:
        att = AppAttempt(app)
        prefix = _app_prefix(api, att)
    except Exception:  # not an object, no id, a field of the wrong type
        return
    needs_env = env_cache is None or env_cache.get(_env_key(base, att)) is None
    for suffix, params, expect in _APP_REQUESTS + ((_ENVIRONMENT,) if needs_env else ()):
        pf.submit_json(prefix + suffix, deadline, params=params, expect=expect)


def scrape_spark_ui(http, base_url: str, out: MetricSet, deadline: Deadline, *,
                    include_completed: bool = False, max_applications: int = 50,
                    env_cache: Optional[EnvironmentCache] = None, now: Optional[float] = None,
                    stale_after: float = DEFAULT_STALE_AFTER, max_concurrency: int = DEFAULT_UI_CONCURRENCY,
                    thread_name: str = "scrape-spark-ui", pool: Optional[RequestPool] = None) -> int:
    """Scrape one Spark UI (driver or history server) at ``base_url`` into ``out``.

    ``http`` is an :class:`~sparkwatch.httpclient.HttpClient` (or anything with its
    ``get(url, deadline, params, ok_statuses)`` and ``get_json(url, deadline,
    params, expect)``, safe to call from several threads); ``base_url`` is the UI
    root without a trailing slash, e.g. ``http://host:4040`` or a YARN proxy
    ``http://rm:8088/proxy/application_1_2``.

    After the application list, the metrics servlet and every application's
    requests are made ahead of the application being processed by the
    threads of ``pool`` (kept by the caller between scrapes), or else by up to
    ``max_concurrency`` threads (named ``thread_name``) of this scrape's own;
    ``max_concurrency`` 1 makes them one after another in the calling thread.

    Raises :class:`TargetError` when the application list cannot be read (or
    is not a JSON array). An application whose own endpoints fail (it finished
    mid-scrape, 404) or answer with a field of the wrong type is skipped with
    ``out.error("partial")``; the others are still reported. ``stale_after``:
    seconds after its event log's last update that an application which has
    not completed is reported as stale (0: never). Returns the number of
    applications reported.
    """
    base = base_url.rstrip("/")
    api = base + "/api/v1"
    list_url = api + "/applications"
    params: Dict[str, Any] = {"limit": max_applications + 1}
    if not include_completed:
        params["status"] = "running"
    now = time.time() if now is None else now
    if max_concurrency <= 1:
        apps = _list_apps(http, list_url, params, max_applications, out, deadline, env_cache, base)
        if not apps:
            return 0
        return _scrape_apps(http, base, api, apps, out, deadline, now, env_cache, stale_after, None)
    pf = Prefetch(http, max_concurrency, thread_name, pool)
    ahead = PREFETCH_APPS_PER_WORKER * max_concurrency
    try:
        # the applications listed last time are most likely listed again (a driver's one
        # application, a cluster's long-running services): their requests go out with
        # the list's, and the answers of any that is no longer listed are dropped
        previous = env_cache.listing(base) if env_cache is not None else []
        if previous:
            pf.submit_get(base + "/metrics/json/", deadline, ok_statuses=(200, 404))
            for app in previous[:ahead]:
                _prefetch_app(pf, api, app, deadline, env_cache, base)
        # the list in this thread, meanwhile
        apps = _list_apps(http, list_url, params, max_applications, out, deadline, env_cache, base)
        if not apps:
            return 0
        return _scrape_apps(pf, base, api, apps, out, deadline, now, env_cache, stale_after, ahead)
    finally:
        pf.close()


def _list_apps(http, list_url: str, params, max_applications: int, out: MetricSet, deadline: Deadline,
               env_cache: Optional[EnvironmentCache], base: str) -> list:
    apps = _get_json(http, list_url, deadline, params=params, expect=list)
    if len(apps) > max_applications:
        apps = apps[:max_applications]
        out.error("limit")
    if env_cache is not None:
        env_cache.remember_listing(base, apps)
        if not apps:
            env_cache.retain(base, [])
    return apps


def _scrape_apps(http, base: str, api: str, apps: list, out: MetricSet, deadline: Deadline, now: float,
                 env_cache: Optional[EnvironmentCache], stale_after: float, ahead: Optional[int]) -> int:
    """The servlet and the applications of one UI; with a :class:`Prefetch` as
    ``http``, the requests of the next ``ahead`` applications are in flight."""
    if ahead is not None:
        http.submit_get(base + "/metrics/json/", deadline, ok_statuses=(200, 404))
        for app in apps[:ahead]:
            _prefetch_app(http, api, app, deadline, env_cache, base)

    driver: Optional[DriverMetrics] = None
    servlet_ok = False
    try:
        resp = http.get(base + "/metrics/json/", deadline, ok_statuses=(200, 404))
        ctype = resp.headers.get("Content-Type", "")
        # a history server has no servlet for its applications: it answers 404, or
        # 200 with its HTML home page; neither is an error
        if resp.status_code == 200 and not ctype.lower().startswith("text/html"):
            try:
                data = decode_json(resp.content, "/metrics/json/", ctype, expect=dict)
            except RecursionError:
                raise TargetError("invalid_response", "GET /metrics/json/: JSON nested too deeply") from None
            driver = DriverMetrics(data)
            servlet_ok = True
    except TargetError as e:
        if e.reason in _FATAL:
            raise
        log.info("%s: metrics servlet unreadable: %s", base, e.message)
        out.error(_part_reason(e))

    reported = 0
    seen_keys = []
    for i, app in enumerate(apps):
        if ahead is not None and i + ahead < len(apps):
            _prefetch_app(http, api, apps[i + ahead], deadline, env_cache, base)
        part = MetricSet()
        app_id = None
        try:
            if not isinstance(app, dict):
                raise _invalid(f"applications[{i}]", f"a JSON {_json_type(app)}, expected object")
            app_id = _string(app, "id", f"applications[{i}]")
            if not app_id:
                raise _invalid(f"applications[{i}]", "no id")
            key = _scrape_app(http, api, app, part, deadline, now, driver, servlet_ok, len(apps), env_cache, base,
                              stale_after)
            seen_keys.append(key)
        except TargetError as e:
            # a history server loads an application's UI on first access (and again when
            # the event log of a running one grows): one slow application is skipped as
            # long as the scrape deadline leaves time for the others
            if e.reason in _FATAL and not (e.reason == "timeout" and not deadline.expired()):
                raise
            log.info("%s: application %s skipped: %s", base, app_id if app_id else f"#{i}", e.message)
            out.error(_part_reason(e))
            continue
        merge(out, part)
        reported += 1
    if env_cache is not None:
        env_cache.retain(base, seen_keys)
    return reported


class AppAttempt:
    """What sparkwatch reads of one entry of ``/applications``: its latest
    attempt (Spark lists the latest first), or, in the pre-1.4 answer without
    ``attempts``, the entry itself. Times are Unix seconds, None when unknown.
    TargetError(invalid_response) on a field of the wrong type."""

    def __init__(self, app: Dict[str, Any]):
        self.app_id: str = app["id"]
        w = f"application {self.app_id}"
        self.name = _string(app, "name", w) or ""
        attempts = _field(app, "attempts", (list,), w)
        if attempts is None:  # before Spark 1.4: the fields are on the application
            att = app
        elif not attempts:
            att = {}
        else:
            att = attempts[0]
            if not isinstance(att, dict):
                raise _invalid(w, f"attempts[0] is a JSON {_json_type(att)}, expected object")
            w += " attempts[0]"
        self.attempt_id = _string(att, "attemptId", w)
        self.completed = bool(_field(att, "completed", (bool,), w))
        self.spark_version = _string(att, "appSparkVersion", w) or ""
        self.spark_user = _string(att, "sparkUser", w) or ""
        self.start = _time(att, "startTimeEpoch", "startTime", w)
        self.end = _time(att, "endTimeEpoch", "endTime", w)
        self.last_updated = _time(att, "lastUpdatedEpoch", "lastUpdated", w)
        duration = _number(att, "duration", w)
        if duration is None and self.start is not None and self.end is not None and self.end >= self.start:
            duration = (self.end - self.start) * 1000.0
        self.duration = duration / 1000.0 if duration is not None else None

    def stale(self, now: float, stale_after: float, driver_answers: bool) -> bool:
        """Not completed, yet its event log was last written more than
        ``stale_after`` seconds ago. Only a history server's lastUpdated says
        that (the modification time of the event log): a driver's own UI sets
        lastUpdated to the start time and leaves it there while it runs, so an
        attempt whose lastUpdated is its start time, or unknown, or whose
        driver answers the metrics servlet, is never stale."""
        if self.completed or stale_after <= 0 or driver_answers:
            return False
        if self.last_updated is None or self.start is None or abs(self.last_updated - self.start) < 1e-3:
            return False
        return now - self.last_updated > stale_after


def _path_segment(value: str, what: str) -> str:
    """``value`` quoted for a URL path; an id that is not valid Unicode (a lone
    surrogate from a JSON escape) cannot name anything: that application's answer is invalid."""
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:
        raise _invalid(what, "not valid Unicode") from None


def _app_prefix(api: str, att: AppAttempt) -> str:
    """The REST API path of an application's latest attempt."""
    prefix = f"{api}/applications/{_path_segment(att.app_id, 'application id')}"
    if att.attempt_id:
        prefix += "/" + _path_segment(att.attempt_id, f"application {att.app_id} attempt id")
    return prefix


#: the requests :func:`_scrape_app` makes per application, and :func:`_prefetch_app`
#: sends ahead of it: (path suffix, params, expected JSON type)
_JOBS = ("/jobs", {"status": "running"}, list)
_STAGES = ("/stages", {"status": ["active", "failed"]}, list)
_EXECUTORS = ("/executors", None, list)
_ENVIRONMENT = ("/environment", None, dict)  # only when the environment cache has no answer
_APP_REQUESTS = (_JOBS, _STAGES, _EXECUTORS)


def _app_json(http, prefix: str, request: tuple, deadline: Deadline):
    suffix, params, expect = request
    return _get_json(http, prefix + suffix, deadline, params=params, expect=expect)


def _env_key(base: str, att: AppAttempt) -> tuple:
    """An application's key in the :class:`EnvironmentCache`."""
    return (base, att.app_id, att.attempt_id or "")


def _scrape_app(http, api: str, app: Dict[str, Any], out: MetricSet, deadline: Deadline, now: float,
                driver: Optional[DriverMetrics], servlet_ok: bool, n_apps: int,
                env_cache: Optional[EnvironmentCache], base: str, stale_after: float = DEFAULT_STALE_AFTER):
    att = AppAttempt(app)
    app_id = att.app_id
    labels = {"app_id": app_id, "app_name": att.name}
    prefix = _app_prefix(api, att)
    m = driver.for_app(app_id, n_apps) if driver is not None else None

    # a stale application is measured to its last sign of life, not to now
    stale = att.stale(now, stale_after, m is not None)
    as_of = att.last_updated if stale else now
    _add(out, APP_INFO, 1, spark_version=att.spark_version, spark_user=att.spark_user, **labels)
    _add(out, APP_COMPLETED, att.completed, **labels)
    _add(out, APP_STALE, stale, **labels)
    if att.completed:
        _add(out, APP_UPTIME, att.duration, **labels)
    elif att.start is not None:
        _add(out, APP_UPTIME, max(0.0, as_of - att.start), **labels)
    if stale:
        log.debug("%s: application %s is stale: event log last updated %.0fs ago", base, app_id, now - as_of)

    jobs = _app_json(http, prefix, _JOBS, deadline)
    n_jobs = 0
    submitted = []
    for i, j in enumerate(jobs):
        w = f"application {app_id} jobs[{i}]"
        if not isinstance(j, dict):
            raise _invalid(w, f"a JSON {_json_type(j)}, expected object")
        status = _string(j, "status", w)
        if status is not None and status != "RUNNING":  # a server or proxy that ignored the filter
            continue
        n_jobs += 1
        t = _time(j, "", "submissionTime", w)
        if t is not None:
            submitted.append(t)
    _add(out, JOBS_ACTIVE, n_jobs, **labels)
    _add(out, JOB_OLDEST_AGE, max(0.0, as_of - min(submitted)) if submitted else 0.0, **labels)

    stages = _app_json(http, prefix, _STAGES, deadline)
    statuses = []
    for i, st in enumerate(stages):
        w = f"application {app_id} stages[{i}]"
        if not isinstance(st, dict):
            raise _invalid(w, f"a JSON {_json_type(st)}, expected object")
        statuses.append(_string(st, "status", w))
    _add(out, STAGES_ACTIVE, statuses.count("ACTIVE"), **labels)
    _add(out, STAGES_FAILED, statuses.count("FAILED"), **labels)

    executors = _app_json(http, prefix, _EXECUTORS, deadline)
    n_active = 0
    for i, e in enumerate(executors):
        w = f"application {app_id} executors[{i}]"
        if not isinstance(e, dict):
            raise _invalid(w, f"a JSON {_json_type(e)}, expected object")
        eid = _string(e, "id", w)
        if _field(e, "isActive", (bool,), w) is False or eid is None:
            continue
        # excluded for failures (isExcluded since 3.1, isBlacklisted before; 3.x sends both)
        excluded = _field(e, "isExcluded", (bool,), w)
        if excluded is None:
            excluded = _field(e, "isBlacklisted", (bool,), w)
        cores = _number(e, "totalCores", w) or 0
        tasks = (_number(e, "totalTasks", w) or 0) + (_number(e, "activeTasks", w) or 0)
        # the driver runs tasks only in local mode, where it is the executor; Spark
        # before 2.0 did not record its cores there, but it did record its tasks
        can_run = eid not in DRIVER_IDS or cores > 0 or tasks > 0
        if can_run and not excluded:
            n_active += 1
        el = dict(labels, executor_id=eid)
        gc, run = _number(e, "totalGCTime", w), _number(e, "totalDuration", w)
        _add(out, EX_GC, gc / 1000.0 if gc is not None else None, **el)
        _add(out, EX_RUN, run / 1000.0 if run is not None else None, **el)
        peak = _field(e, "peakMemoryMetrics", (dict,), w) or {}
        wp = w + " peakMemoryMetrics"
        # peaks start at 0 and stay there until a heartbeat reports them (a history
        # server shows all zeros when none was logged): no JVM peaks at 0 bytes
        for md, key in ((EX_PEAK_HEAP, "JVMHeapMemory"), (EX_PEAK_OFFHEAP, "JVMOffHeapMemory")):
            v = _number(peak, key, wp)
            _add(out, md, v if v is not None and v > 0 else None, **el)
        _add(out, EX_STORAGE_USED, _number(e, "memoryUsed", w), **el)
        _add(out, EX_STORAGE_MAX, _number(e, "maxMemory", w), **el)
        _add(out, EX_FAILED, _number(e, "failedTasks", w), **el)
        _add(out, EX_COMPLETED, _number(e, "completedTasks", w), **el)
        _add(out, EX_ACTIVE_TASKS, _number(e, "activeTasks", w), **el)
    _add(out, EXECUTORS_ACTIVE, n_active, **labels)

    cache_key = _env_key(base, att)
    env = env_cache.get(cache_key) if env_cache is not None else None
    if env is None:
        env = Environment.from_json(_app_json(http, prefix, _ENVIRONMENT, deadline),
                                    f"application {app_id} environment")
        if env_cache is not None:
            env_cache.put(cache_key, env)
    _add(out, CLEANER_INTERVAL, env.periodic_gc_seconds(), **labels)
    _add(out, CLEANER_BLOCKING, env.blocking(), **labels)
    _add(out, CLEANER_TRACKING, env.reference_tracking(), **labels)

    jvm_seen = streaming_seen = False
    if m is not None:
        jvm_seen, streaming_seen = emit_driver_metrics(out, m, labels)
        for q in {k[len("LiveListenerBus.queue."):].rpartition(".")[0] for k in m
                  if k.startswith("LiveListenerBus.queue.")}:
            if q:
                _add(out, LQ_CAPACITY, env.queue_capacity(q), queue=q, **labels)
    # jvm: what the driver exports when its servlet is readable, else what is configured
    jvm_on = jvm_seen if (servlet_ok and m is not None) else env.jvm_source()
    _add(out, SOURCE_ENABLED, jvm_on, source="jvm", **labels)
    _add(out, SOURCE_ENABLED, streaming_seen or env.streaming_metrics(), source="streaming", **labels)
    return cache_key
