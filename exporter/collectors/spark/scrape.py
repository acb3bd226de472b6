"""Scraping one Spark UI: a driver (port 4040), a history server (18080), or
a driver behind a proxy. The Spark collector scrapes its configured UI (or the
driver UIs a cluster manager names) with :func:`scrape_spark_ui`; the Livy
collector scrapes the UIs of the sessions it discovers with it.

Per application it reads, from the REST API under ``/api/v1``:

- ``applications?status=running`` (every application when ``include_completed``),
- ``applications/{id}/jobs?status=running``,
- ``applications/{id}/stages?status=active&status=failed``,
- ``applications/{id}/executors`` (active executors only: gone ones drop out),
- ``applications/{id}/environment`` (cached, see :mod:`.cache`),

and once per UI the driver's metrics servlet ``/metrics/json/`` (driver
JVM, Structured Streaming, listener bus and DAGScheduler gauges). A history
server has no such servlet for the applications it shows: a 404 there is
normal. Jobs and stages are counted, never labelled by id. Every answer is
read type-checked (:mod:`.model`).

After the application list, the servlet's and every application's requests
are made ahead of the application being processed (:class:`~sparkwatch.httppool.Prefetch`),
and the applications the previous scrape listed are requested together with
the list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ...collector import Deadline, MetricDef, MetricSet, TargetError
from ...httpclient import decode_json
from ...httppool import Prefetch, RequestPool
from .cache import EnvironmentCache, env_key
from .metrics import (APP_COMPLETED, APP_INFO, APP_STALE, APP_UPTIME, CLEANER_BLOCKING, CLEANER_INTERVAL,
                      CLEANER_TRACKING, DAG_JOBS_ACTIVE, DAG_JOBS_ALL, DAG_STAGES_FAILED, DAG_STAGES_RUNNING,
                      DAG_STAGES_WAITING, DRIVER_CPU, EX_ACTIVE_TASKS, EX_COMPLETED, EX_FAILED, EX_GC, EX_PEAK_HEAP,
                      EX_PEAK_OFFHEAP, EX_RUN, EX_STORAGE_MAX, EX_STORAGE_USED, EXECUTORS_ACTIVE, GC_COUNT, GC_TIME,
                      HEAP_COMMITTED, HEAP_MAX, HEAP_USED, JOB_OLDEST_AGE, JOBS_ACTIVE, L_POSTED, LQ_CAPACITY,
                      LQ_DROPPED, LQ_EVENTS, NONHEAP_USED, POOL_AFTER_GC, POOL_COMMITTED, POOL_MAX, POOL_USED,
                      SOURCE_ENABLED, ST_DURATION, ST_INPUT, ST_PROCESSED, ST_STATE_BYTES, ST_STATE_ROWS,
                      ST_WATERMARK, STAGES_ACTIVE, STAGES_FAILED)
from .model import AppAttempt, DriverMetrics, Environment, field, finite, normalise_name, number, objects, string, \
    timestamp

log = logging.getLogger("sparkwatch.spark")

#: an application that is not completed but whose event log has not been
#: written for this long is reported as stale (see :data:`~.metrics.APP_STALE`)
DEFAULT_STALE_AFTER = 86400.0
#: the driver's entry in /executors: "driver", "<driver>" before Spark 1.4 (labelled "driver")
DRIVER_IDS = ("driver", "<driver>")
DRIVER_LABEL = "driver"
#: requests to one UI in flight at once by default (the servlet and each application's
#: jobs, stages, executors and environment are fetched concurrently)
DEFAULT_UI_CONCURRENCY = 4
#: applications whose answers are fetched ahead of the one being processed, per worker
#: (bounds the decoded answers held at once)
PREFETCH_APPS_PER_WORKER = 4
#: errors that mean the whole target is gone or out of time, not just one application
_FATAL = ("timeout", "connection", "tls", "auth")

#: the requests made per application (and sent ahead of it): (path suffix, params, expected JSON type)
_JOBS = ("/jobs", {"status": "running"}, list)
_STAGES = ("/stages", {"status": ["active", "failed"]}, list)
_EXECUTORS = ("/executors", None, list)
_ENVIRONMENT = ("/environment", None, dict)  # only when the environment cache has no answer
_ALL_JOBS = ("/jobs", None, list)  # only for an application whose liveness is in doubt (AppAttempt.needs_signs_of_life)
_APP_REQUESTS = (_JOBS, _STAGES, _EXECUTORS)
_SERVLET = "/metrics/json/"
_SERVLET_STATUSES = (200, 404)


def _add(out: MetricSet, md, value, **labels) -> None:
    """``out.add`` with only finite values: whatever arithmetic made of a
    value (a huge time string in seconds, a huge capacity), inf, NaN and
    numbers beyond a float are absent, never an exception."""
    out.add(md, value if value is None or isinstance(value, bool) else finite(value), **labels)


def merge(out: MetricSet, part: MetricSet) -> None:
    """Add the samples and errors of ``part`` to ``out``."""
    for md, samples in part.samples.items():
        out.samples.setdefault(md, {}).update(samples)
    out.errors.extend(part.errors)


def _part_reason(e: TargetError) -> str:
    """The reason a part of a target (one application, the servlet) that failed is counted
    under: ``limit`` (an answer too large for the memory budget) stays visible as such."""
    return "limit" if e.reason == "limit" else "partial"


@dataclass
class UiScrape:
    """One scrape of one Spark UI: what reading each of its applications shares."""

    #: every request of the scrape goes through it
    http: Prefetch
    #: the UI root without a trailing slash
    base: str
    deadline: Deadline
    #: the scrape's wall-clock time (ages are measured to it)
    now: float
    env_cache: Optional[EnvironmentCache]
    stale_after: float
    #: applications whose requests are sent ahead of the one being read (0: none)
    ahead: int = 0
    #: the metrics servlet's answer, when it was readable
    driver: Optional[DriverMetrics] = None
    #: whether the servlet answered with metrics (not a 404 or an HTML page)
    servlet_ok: bool = False
    #: applications listed
    n_apps: int = 0
    #: attempts read per application (the newest first)
    max_attempts: int = 1

    @property
    def api(self) -> str:
        """The REST API root."""
        return self.base + "/api/v1"

    def json(self, url: str, request: tuple):
        """One of the per-application requests (``_JOBS``, ...) under ``url``."""
        suffix, params, expect = request
        return self.http.get_json(url + suffix, self.deadline, params=params, expect=expect)

    def cached_environment(self, att: AppAttempt) -> Optional[Environment]:
        """The application's cached environment, if any."""
        return self.env_cache.get(env_key(self.base, att)) if self.env_cache is not None else None

    def send_ahead(self, app) -> None:
        """Submit the requests :func:`_scrape_app` will make for ``app``. An entry that
        cannot name its requests is left alone: the scrape reports it."""
        try:
            att = AppAttempt(app)
            prefix = att.path(self.api)
        except Exception:  # not an object, no id, a field of the wrong type
            return
        needs_env = self.cached_environment(att) is None
        for suffix, params, expect in _APP_REQUESTS + ((_ENVIRONMENT,) if needs_env else ()):
            self.http.submit_json(prefix + suffix, self.deadline, params=params, expect=expect)


def scrape_spark_ui(http, base_url: str, out: MetricSet, deadline: Deadline, *,
                    include_completed: bool = False, max_applications: int = 50,
                    env_cache: Optional[EnvironmentCache] = None, now: Optional[float] = None,
                    stale_after: float = DEFAULT_STALE_AFTER, max_concurrency: int = DEFAULT_UI_CONCURRENCY,
                    thread_name: str = "scrape-spark-ui", pool: Optional[RequestPool] = None,
                    headers: Optional[Dict[str, str]] = None, max_attempts: int = 1) -> int:
    """Scrape one Spark UI (driver or history server) at ``base_url`` into ``out``.

    ``http`` is an :class:`~sparkwatch.httpclient.HttpClient` (or anything with its
    ``get(url, deadline, params, ok_statuses)`` and ``get_json(url, deadline,
    params, expect)``, safe to call from several threads); ``base_url`` is the UI
    root without a trailing slash, e.g. ``http://host:4040`` or a YARN proxy
    ``http://rm:8088/proxy/application_1_2``; ``headers`` go with every request.

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
    not completed is reported as stale (0: never). ``max_attempts``: attempts
    read per application, the newest first; the earlier ones (which have
    ended) only when ``include_completed``. Returns the number of
    applications reported.
    """
    own = None
    if max_concurrency > 1 and pool is None:
        pool = own = RequestPool(max_concurrency, thread_name)
    fetch = Prefetch(http, pool if max_concurrency > 1 else None, headers)
    ui = UiScrape(fetch, base_url.rstrip("/"), deadline, time.time() if now is None else now, env_cache,
                  stale_after, ahead=PREFETCH_APPS_PER_WORKER * max_concurrency if fetch.ahead else 0,
                  max_attempts=max_attempts if include_completed else 1)
    params: Dict[str, object] = {"limit": max_applications + 1}
    if not include_completed:
        params["status"] = "running"
    try:
        if ui.ahead and env_cache is not None:
            # the applications listed last time are most likely listed again (a driver's one
            # application, a cluster's long-running services): their requests go out with
            # the list's, and the answers of any that is no longer listed are dropped
            previous = env_cache.listing(ui.base)
            if previous:
                fetch.submit_get(ui.base + _SERVLET, deadline, ok_statuses=_SERVLET_STATUSES, then=_driver_metrics)
                for app in previous[:ui.ahead]:
                    ui.send_ahead(app)
        # the list in this thread, meanwhile
        apps = _list_apps(ui, params, max_applications, out)
        if not apps:
            return 0
        return _scrape_apps(ui, apps, out)
    finally:
        fetch.close()
        if own is not None:
            own.close()


def _list_apps(ui: UiScrape, params, max_applications: int, out: MetricSet) -> list:
    apps = ui.http.get_json(ui.api + "/applications", ui.deadline, params=params, expect=list)
    if len(apps) > max_applications:
        apps = apps[:max_applications]
        out.error("limit")
    if ui.env_cache is not None:
        ui.env_cache.remember_listing(ui.base, apps)
        if not apps:
            ui.env_cache.retain(ui.base, [])
    return apps


def _scrape_apps(ui: UiScrape, apps: list, out: MetricSet) -> int:
    """The servlet and the applications of one UI; the requests of the next
    ``ui.ahead`` applications are in flight."""
    ui.n_apps = len(apps)
    if ui.ahead:
        ui.http.submit_get(ui.base + _SERVLET, ui.deadline, ok_statuses=_SERVLET_STATUSES, then=_driver_metrics)
        for app in apps[:ui.ahead]:
            ui.send_ahead(app)
    _read_servlet(ui, out)

    reported = 0
    seen_keys = []
    for i, app in enumerate(apps):
        if ui.ahead and i + ui.ahead < len(apps):
            ui.send_ahead(apps[i + ui.ahead])
        part = MetricSet()
        try:
            for att in AppAttempt.all_of(app, i, ui.max_attempts):
                seen_keys.append(_scrape_app(ui, att, part))
        except TargetError as e:
            # a history server loads an application's UI on first access (and again when
            # the event log of a running one grows): one slow application is skipped as
            # long as the scrape deadline leaves time for the others
            if e.reason in _FATAL and not (e.reason == "timeout" and not ui.deadline.expired()):
                raise
            app_id = app.get("id") if isinstance(app, dict) else None
            log.info("%s: application %s skipped: %s", ui.base,
                     app_id if isinstance(app_id, str) and app_id else f"#{i}", e.message)
            out.error(_part_reason(e))
            continue
        merge(out, part)
        reported += 1
    if ui.env_cache is not None:
        ui.env_cache.retain(ui.base, seen_keys)
    return reported


def _driver_metrics(resp) -> Optional[DriverMetrics]:
    """The metrics servlet's answer read (in the thread that fetched it, while other
    requests are in flight), each driver's samples sorted out; None when the UI has no
    servlet."""
    ctype = resp.headers.get("Content-Type", "")
    # a history server has no servlet for its applications: it answers 404, or
    # 200 with its HTML home page; neither is an error
    if resp.status_code != 200 or ctype.lower().startswith("text/html"):
        return None
    driver = DriverMetrics(decode_json(resp.content, _SERVLET, ctype, expect=dict))
    driver.plans = {prefix: DriverPlan(m) for prefix, m in driver.by_prefix.items()}
    return driver


def _read_servlet(ui: UiScrape, out: MetricSet) -> None:
    """The metrics servlet, into ``ui.driver``; a servlet that cannot be read costs its
    series (``partial``), not the applications."""
    try:
        ui.driver = ui.http.get(ui.base + _SERVLET, ui.deadline, ok_statuses=_SERVLET_STATUSES, then=_driver_metrics)
        ui.servlet_ok = ui.driver is not None
    except TargetError as e:
        if e.reason in _FATAL:
            raise
        log.info("%s: metrics servlet unreadable: %s", ui.base, e.message)
        out.error(_part_reason(e))


def _scrape_app(ui: UiScrape, att: AppAttempt, out: MetricSet) -> tuple:
    """One application attempt into ``out``; returns its key in the environment cache."""
    labels = {"app_id": att.app_id, "app_name": att.name, "attempt_id": att.attempt_label}
    prefix = att.path(ui.api)
    prefix_in_servlet = ui.driver.prefix_for(att.app_id, ui.n_apps) if ui.driver is not None else None
    plan: Optional[DriverPlan] = ui.driver.plans[prefix_in_servlet] if prefix_in_servlet is not None else None
    where = f"application {att.app_id}"

    cache_key = env_key(ui.base, att)
    env = ui.cached_environment(att)
    if env is None:
        env = Environment.from_json(ui.json(prefix, _ENVIRONMENT), f"{where} environment")
        if ui.env_cache is not None:
            ui.env_cache.put(cache_key, env)

    # a stale application is measured to its last sign of life, not to now
    stale = att.stale(ui.now, ui.stale_after, plan is not None)
    as_of = att.last_updated if stale else ui.now
    jobs = ui.json(prefix, _JOBS)
    stages = ui.json(prefix, _STAGES)
    executors = ui.json(prefix, _EXECUTORS)
    n_jobs = _jobs(out, jobs, as_of, where, labels)
    n_stages = _stages(out, stages, where, labels)
    newest_executor = _executors(out, executors, where, labels, env.local_mode())
    if n_jobs == 0 and n_stages == 0 and att.needs_signs_of_life(ui.now, ui.stale_after, plan is not None):
        # lastUpdated is recent, but nothing runs: the newest thing the application did
        # (a job submitted or ended, an executor added) says whether it is alive
        signs = [t for t in (att.start, newest_executor, _newest_job_time(ui.json(prefix, _ALL_JOBS), where))
                 if t is not None]
        newest = max(signs)
        if ui.now - newest > ui.stale_after:
            stale, as_of = True, newest
    _add(out, APP_INFO, 1, spark_version=att.spark_version, spark_user=att.spark_user, **labels)
    _add(out, APP_COMPLETED, att.completed, **labels)
    _add(out, APP_STALE, stale, **labels)
    if att.completed:
        _add(out, APP_UPTIME, att.duration, **labels)
    elif att.start is not None:
        _add(out, APP_UPTIME, max(0.0, as_of - att.start), **labels)
    if stale:
        log.debug("%s: application %s is stale: last sign of life %.0fs ago", ui.base, att.app_id, ui.now - as_of)

    _add(out, CLEANER_INTERVAL, env.periodic_gc_seconds(), **labels)
    _add(out, CLEANER_BLOCKING, env.blocking(), **labels)
    _add(out, CLEANER_TRACKING, env.reference_tracking(), **labels)

    jvm_seen = streaming_seen = False
    if plan is not None:
        plan.emit(out, labels)
        jvm_seen, streaming_seen = plan.jvm, plan.streaming
        for q in plan.queues:
            if q:
                _add(out, LQ_CAPACITY, env.queue_capacity(q), queue=q, **labels)
    # jvm: what the driver exports when its servlet is readable, else what is configured
    jvm_on = jvm_seen if (ui.servlet_ok and plan is not None) else env.jvm_source()
    _add(out, SOURCE_ENABLED, jvm_on, source="jvm", **labels)
    _add(out, SOURCE_ENABLED, streaming_seen or env.streaming_metrics(), source="streaming", **labels)
    return cache_key


def _newest_job_time(jobs: list, where: str) -> Optional[float]:
    """The latest submission or completion time among ``jobs`` (None when there is none)."""
    times = []
    for i, j in objects(jobs, f"{where} jobs"):
        w = f"{where} jobs[{i}]"
        for key in ("submissionTime", "completionTime"):
            t = timestamp(j, "", key, w)
            if t is not None:
                times.append(t)
    return max(times) if times else None


def _jobs(out: MetricSet, jobs: list, as_of: float, where: str, labels: Dict[str, str]) -> int:
    n_jobs = 0
    submitted = []
    for i, j in objects(jobs, f"{where} jobs"):
        w = f"{where} jobs[{i}]"
        status = string(j, "status", w)
        if status is not None and status != "RUNNING":  # a server or proxy that ignored the filter
            continue
        n_jobs += 1
        t = timestamp(j, "", "submissionTime", w)
        if t is not None:
            submitted.append(t)
    _add(out, JOBS_ACTIVE, n_jobs, **labels)
    _add(out, JOB_OLDEST_AGE, max(0.0, as_of - min(submitted)) if submitted else 0.0, **labels)
    return n_jobs


def _stages(out: MetricSet, stages: list, where: str, labels: Dict[str, str]) -> int:
    """The stage counts; returns the number of active stages."""
    statuses = [string(st, "status", f"{where} stages[{i}]") for i, st in objects(stages, f"{where} stages")]
    _add(out, STAGES_ACTIVE, statuses.count("ACTIVE"), **labels)
    _add(out, STAGES_FAILED, statuses.count("FAILED"), **labels)
    return statuses.count("ACTIVE")


def _executors(out: MetricSet, executors: list, where: str, labels: Dict[str, str], local_mode: bool) -> Optional[float]:
    """The executors' series; returns the latest time an active executor was added (None if unknown)."""
    n_active = 0
    newest_added: Optional[float] = None
    for i, e in objects(executors, f"{where} executors"):
        w = f"{where} executors[{i}]"
        eid = string(e, "id", w)
        if field(e, "isActive", (bool,), w) is False or eid is None:
            continue
        # excluded for failures (isExcluded since 3.1, isBlacklisted before; 3.x sends both)
        excluded = field(e, "isExcluded", (bool,), w)
        if excluded is None:
            excluded = field(e, "isBlacklisted", (bool,), w)
        added = timestamp(e, "", "addTime", w)
        if added is not None and (newest_added is None or added > newest_added):
            newest_added = added
        cores = number(e, "totalCores", w) or 0
        tasks = (number(e, "totalTasks", w) or 0) + (number(e, "activeTasks", w) or 0)
        driver = eid in DRIVER_IDS
        # the driver runs tasks only in local mode, where it is the executor; Spark
        # before 2.0 did not record its cores there (nor does a history server replaying
        # such a log), whether or not it ran tasks
        can_run = not driver or cores > 0 or tasks > 0 or local_mode
        if can_run and not excluded:
            n_active += 1
        el = dict(labels, executor_id=DRIVER_LABEL if driver else eid)
        if not driver:
            # the driver's totalDuration is the application's wall time and its totalGCTime the
            # whole driver JVM's GC (Spark 3.3+, SPARK-37493), not task figures: its JVM has
            # spark_driver_jvm_gc_seconds_total and the application spark_app_uptime_seconds
            gc, run = number(e, "totalGCTime", w), number(e, "totalDuration", w)
            _add(out, EX_GC, gc / 1000.0 if gc is not None else None, **el)
            _add(out, EX_RUN, run / 1000.0 if run is not None else None, **el)
        peak = field(e, "peakMemoryMetrics", (dict,), w) or {}
        wp = w + " peakMemoryMetrics"
        # peaks start at 0 and stay there until a heartbeat reports them (a history
        # server shows all zeros when none was logged): no JVM peaks at 0 bytes
        for md, key in ((EX_PEAK_HEAP, "JVMHeapMemory"), (EX_PEAK_OFFHEAP, "JVMOffHeapMemory")):
            v = number(peak, key, wp)
            _add(out, md, v if v is not None and v > 0 else None, **el)
        _add(out, EX_STORAGE_USED, number(e, "memoryUsed", w), **el)
        _add(out, EX_STORAGE_MAX, number(e, "maxMemory", w), **el)
        _add(out, EX_FAILED, number(e, "failedTasks", w), **el)
        _add(out, EX_COMPLETED, number(e, "completedTasks", w), **el)
        _add(out, EX_ACTIVE_TASKS, number(e, "activeTasks", w), **el)
    _add(out, EXECUTORS_ACTIVE, n_active, **labels)
    return newest_added


# --------------------------------------------------------------------------
# The driver's servlet keys

STREAMING_FIELDS = {
    "inputRate-total": (ST_INPUT, 1.0),
    "processingRate-total": (ST_PROCESSED, 1.0),
    "latency": (ST_DURATION, 1e-3),
    "eventTime-watermark": (ST_WATERMARK, 1e-3),
    "states-rowsTotal": (ST_STATE_ROWS, 1.0),
    "states-usedBytes": (ST_STATE_BYTES, 1.0),
}
POOL_FIELDS = {"used": POOL_USED, "max": POOL_MAX, "committed": POOL_COMMITTED, "used-after-gc": POOL_AFTER_GC}
DAG_FIELDS = {
    "DAGScheduler.job.activeJobs": DAG_JOBS_ACTIVE,
    "DAGScheduler.job.allJobs": DAG_JOBS_ALL,
    "DAGScheduler.stage.runningStages": DAG_STAGES_RUNNING,
    "DAGScheduler.stage.waitingStages": DAG_STAGES_WAITING,
    "DAGScheduler.stage.failedStages": DAG_STAGES_FAILED,
}
_JVM_NOT_GC = {"heap", "non-heap", "total", "pools", "direct", "mapped"}


class DriverPlan:
    """One driver's servlet keys sorted out, without the labels of its application:
    the samples they make (``(metric, value, labels of its own)``, in the keys'
    order), whether the JvmSource and streaming metrics are on, and the listener bus
    queues it has."""

    __slots__ = ("samples", "jvm", "streaming", "queues")

    def __init__(self, m: Dict[str, float]):
        samples: List[Tuple[MetricDef, float, Dict[str, str]]] = []
        add = samples.append
        jvm = streaming = False
        for key, v in m.items():
            if key.startswith("jvm."):
                jvm = True
                rest = key[4:]
                if rest.startswith("pools."):
                    pool, _, fld = rest[6:].rpartition(".")
                    md = POOL_FIELDS.get(fld)
                    if md is not None and pool:
                        if fld == "max" and v < 0:  # undefined maximum
                            continue
                        add((md, v, {"pool": normalise_name(pool)}))
                elif rest == "heap.used":
                    add((HEAP_USED, v, {}))
                elif rest == "heap.committed":
                    add((HEAP_COMMITTED, v, {}))
                elif rest == "heap.max" and v >= 0:
                    add((HEAP_MAX, v, {}))
                elif rest == "non-heap.used":
                    add((NONHEAP_USED, v, {}))
                else:
                    name, _, fld = rest.rpartition(".")
                    if name and name not in _JVM_NOT_GC and "." not in name:
                        if fld == "count":
                            add((GC_COUNT, v, {"gc": normalise_name(name)}))
                        elif fld == "time":
                            add((GC_TIME, v / 1000.0, {"gc": normalise_name(name)}))
            elif key.startswith("spark.streaming."):
                rest = key[len("spark.streaming."):]
                query, _, fld = rest.rpartition(".")
                spec = STREAMING_FIELDS.get(fld)
                if spec is None or not query:
                    continue
                streaming = True
                md, scale = spec
                if md is ST_WATERMARK and v <= 0:  # no watermark defined
                    continue
                add((md, v * scale, {"query": query}))
            elif key.startswith("LiveListenerBus.queue."):
                queue, _, fld = key[len("LiveListenerBus.queue."):].rpartition(".")
                if fld == "size":
                    add((LQ_EVENTS, v, {"queue": queue}))
                elif fld == "numDroppedEvents":
                    add((LQ_DROPPED, v, {"queue": queue}))
            elif key == "LiveListenerBus.numEventsPosted":
                add((L_POSTED, v, {}))
            elif key == "JVMCPU.jvmCpuTime":
                add((DRIVER_CPU, v / 1e9, {}))
            elif key in DAG_FIELDS:
                add((DAG_FIELDS[key], v, {}))
        if not jvm:
            # no JvmSource: the ExecutorMetrics source (spark.metrics.executorMetricsSource.enabled,
            # on by default since 3.0) still has the driver's heap, so the heap alerts work on a default Spark
            # (0 until the driver's first heartbeat snapshot: not recorded, as with the executors' peaks)
            for key, md in (("ExecutorMetrics.JVMHeapMemory", HEAP_USED), ("ExecutorMetrics.JVMOffHeapMemory", NONHEAP_USED)):
                if m.get(key, 0) > 0:
                    add((md, m[key], {}))
        self.samples = samples
        self.jvm, self.streaming = jvm, streaming
        #: the listener bus queues whose capacity is reported
        self.queues = {k[len("LiveListenerBus.queue."):].rpartition(".")[0] for k in m
                       if k.startswith("LiveListenerBus.queue.")}

    def emit(self, out: MetricSet, labels: Dict[str, str]) -> None:
        """The samples, with the application's labels."""
        for md, v, own in self.samples:
            _add(out, md, v, **own, **labels)
