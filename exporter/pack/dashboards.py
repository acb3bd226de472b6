"""Grafana dashboards, generated from the panel definitions below.

Every panel's queries are plain PromQL over the exporter's metrics; the
generator injects ``job=~"$job", instance=~"$instance"`` (plus the rules
config's selectors) into every selector, exactly as the rules get theirs.

The JSON satisfies Grafana's published dashboard types (@grafana/schema, with
each panel's options typed by its plugin; tests/test_dashboards.py checks): the
options a plugin's types require are written, with Grafana's defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .promql import PREFIXES, inject, join_matchers
from .rulesconfig import RulesConfig
from .signatures import SIGNATURES

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_MATCHERS = 'job=~"$job", instance=~"$instance"'
RATE_INTERVAL = "$__rate_interval"


@dataclass
class Panel:
    """One panel: its queries as (PromQL, legend), its Grafana unit and its
    description (the panel's tooltip).

    Queries name the exporter's metrics without ``job``/``instance`` (the
    generator injects the dashboard's variables and the rules configuration's
    selectors into every selector) and use ``$__rate_interval`` in every rate;
    ``tests/test_dashboards.py`` checks both, and that every metric is exported.
    ``width`` is in Grafana's 24 columns; a row wraps when it is full.
    """

    title: str
    targets: List[Tuple[str, str]]  # (expr, legend)
    unit: str
    description: str = ""
    kind: str = "timeseries"  # timeseries | stat | table
    stack: bool = False
    width: int = 12


@dataclass
class Row:
    """A titled row of panels in a dashboard, laid out left to right."""

    title: str
    panels: List[Panel]


@dataclass
class Dashboard:
    """One generated dashboard: ``uid`` is its Grafana uid and its file name
    (``dashboards/<uid>.json``), so it must never change once shipped (links and
    bookmarks use it)."""

    uid: str
    title: str
    description: str
    rows: List[Row] = field(default_factory=list)

    @property
    def filename(self) -> str:
        """The file the dashboard is written to, below ``dashboards/``."""
        return f"{self.uid}.json"


ROWS_PER_S = "suffix: rows/s"

# --------------------------------------------------------------------------
# Panels shared between the overview and the detail dashboards

P_TARGETS_UP = Panel("Targets up", [("min by (kind, target) (sparkwatch_target_up)", "{{kind}} {{target}}")],
                     "bool_on_off", "1 when the exporter could read the target in its last scrape (S4: a driver "
                     "that died shows 0 here first).", kind="stat", width=12)
P_FIRING = Panel("Firing sparkwatch alerts",
                 [('sum by (signature, alertname, severity) (ALERTS{alertstate="firing", signature=~".+", '
                   'job=~"$job"})', "{{signature}} {{alertname}} ({{severity}})")],
                 "short", "Alerts of this pack firing now, by signature (S1-S5, targets).", kind="table", width=12)
P_LIVY_SESSIONS = Panel("Livy sessions by state",
                        [("sum by (instance, target, state) (livy_sessions)", "{{target}} {{state}}")], "short",
                        "S1: finished states (success, dead, killed, error) growing without bound is the pile-up; "
                        "many running sessions is load.", stack=True)
P_LIVY_OLDEST = Panel("Oldest finished session (seen by the exporter)",
                      [("max by (instance, target, kind) (livy_finished_session_oldest_age_seconds)",
                        "{{target}} {{kind}}")], "s",
                      "S1: time since the exporter first saw the oldest finished session; above Livy's "
                      "retention means finished sessions are never removed.")
P_RECOVERY = Panel("Livy restart risk: stored sessions vs thread headroom",
                   [("sum by (process) (livy_recovery_sessions)", "sessions a restart recovers ({{process}})"),
                    ("min by (process) (jvm_process_thread_headroom) and on (process) "
                     "sum by (process) (livy_recovery_sessions)", "threads it can still start ({{process}})")],
                   "short", "S2: when the stored sessions approach the headroom, a Livy restart dies with "
                   "'unable to create new native thread'.")
P_HEAP_FLOOR = Panel("Heap floor (lowest heap over 1h)",
                     [("min_over_time(spark_driver_jvm_heap_used_bytes[1h])", "driver {{app_name}}"),
                      ('min_over_time(jvm_memory_space_used_bytes{space="old"}[1h])', "old gen {{process}} {{pid}}")],
                     "bytes", "S3: a floor that rises for hours while state rows stay flat is a leak.")
P_STATE_ROWS = Panel("Streaming state rows",
                     [("sum by (app_name, query) (spark_streaming_state_rows)", "{{app_name}} {{query}}")], "short",
                     "S3: flat state with a rising heap floor rules the state out.")
P_GC_SHARE = Panel("GC time share",
                   [(f"sum by (process, pid) (rate(jvm_gc_seconds_total[{RATE_INTERVAL}]))", "{{process}} {{pid}}"),
                    (f"sum by (app_name) (rate(spark_driver_jvm_gc_seconds_total[{RATE_INTERVAL}]))",
                     "driver {{app_name}}")],
                   "percentunit", "S3: share of wall-clock time spent collecting garbage.")
P_STREAM_RATES = Panel("Streaming input vs processing rate",
                       [("sum by (app_name, query) (spark_streaming_input_rows_per_second)", "in {{query}}"),
                        ("sum by (app_name, query) (spark_streaming_processed_rows_per_second)", "processed {{query}}")],
                       ROWS_PER_S, "S4: processing below input means the query falls behind.")
P_BATCH = Panel("Streaming batch duration",
                [("max by (app_name, query) (spark_streaming_batch_duration_seconds)", "{{app_name}} {{query}}")], "s",
                "S4: batches longer than the trigger interval delay every next batch.")
P_CLASSES = Panel("Loaded classes", [("jvm_classes_currently_loaded", "{{process}} {{pid}}")], "short",
                  "S5: loaded minus unloaded; rising without bound precedes a full code cache.")
P_CODECACHE = Panel("Code cache used / size, per heap",
                    [("jvm_codecache_used_bytes / jvm_codecache_max_bytes", "{{process}} {{pid}} {{heap}}"),
                     ('spark_driver_jvm_memory_pool_used_bytes{pool=~"codeheap_.*|code_?cache"} / '
                      'spark_driver_jvm_memory_pool_max_bytes{pool=~"codeheap_.*|code_?cache"}',
                      "driver {{app_name}} {{pool}}")],
                    "percentunit", "S5: when a heap is full the JIT is disabled (jvm: needs attach: true).")
P_JOBS = Panel("Active jobs", [("sum by (app_name) (spark_jobs_active)", "{{app_name}}")], "short",
               "S5: jobs piling up.")
P_OLDEST_JOB = Panel("Oldest running job", [("max by (app_name) (spark_job_oldest_active_age_seconds)", "{{app_name}}")],
                     "s", "S5: one job running far too long.")


def _overview() -> Dashboard:
    d = Dashboard("sparkwatch-overview", "sparkwatch / Overview",
                  "Every failure signature (S1-S5) at a glance, and what is firing.")
    firing = [Panel(f"{sig} alerts firing" if sig != "targets" else "Target alerts firing",
                    [(f'sum(ALERTS{{alertstate="firing", signature="{sig}", job=~"$job"}}) or vector(0)', sig)],
                    "short", f"{SIGNATURES[sig].title}: alerts of this pack firing now.", kind="stat", width=4)
              for sig in ("S1", "S2", "S3", "S4", "S5", "targets")]
    d.rows.append(Row("Now", firing + [P_FIRING, P_TARGETS_UP]))
    d.rows.append(Row(f"S1 {SIGNATURES['S1'].title}", [P_LIVY_SESSIONS, P_LIVY_OLDEST]))
    d.rows.append(Row(f"S2 {SIGNATURES['S2'].title}", [P_RECOVERY, Panel(
        "Thread headroom of every JVM", [("min by (process, pid) (jvm_process_thread_headroom)", "{{process}} {{pid}}")],
        "short", "S2/S3: threads each JVM can still start before RLIMIT_NPROC, pids.max or threads-max.")]))
    d.rows.append(Row(f"S3 {SIGNATURES['S3'].title}", [P_HEAP_FLOOR, P_STATE_ROWS, P_GC_SHARE]))
    d.rows.append(Row(f"S4 {SIGNATURES['S4'].title}", [P_STREAM_RATES, P_BATCH]))
    d.rows.append(Row(f"S5 {SIGNATURES['S5'].title}", [P_CLASSES, P_CODECACHE, P_JOBS, P_OLDEST_JOB]))
    return d


def _spark() -> Dashboard:
    d = Dashboard("sparkwatch-spark", "sparkwatch / Spark applications and streaming",
                  "Spark applications, executors, driver JVM and Structured Streaming queries.")
    d.rows.append(Row("Applications", [
        Panel("Application uptime", [("spark_app_uptime_seconds", "{{app_name}} {{app_id}}")], "s"),
        Panel("Executors active", [("spark_executors_active", "{{app_name}}")], "short"),
        P_JOBS, P_OLDEST_JOB,
        Panel("Stages active and failed", [("spark_stages_active", "active {{app_name}}"),
                                           ("spark_stages_failed", "failed {{app_name}}")], "short"),
        Panel("Failed tasks per second",
              [(f"sum by (app_name) (rate(spark_executor_failed_tasks_total[{RATE_INTERVAL}]))", "{{app_name}}")],
              "cps"),
    ]))
    d.rows.append(Row("Executors", [
        Panel("GC share of task time, per executor",
              [(f"sum by (app_name, executor_id) (rate(spark_executor_gc_seconds_total[{RATE_INTERVAL}])) / "
                f"sum by (app_name, executor_id) (rate(spark_executor_run_seconds_total[{RATE_INTERVAL}]))",
                "{{app_name}} {{executor_id}}")], "percentunit",
              "S3: share of task time spent in GC. Empty while no task completes."),
        Panel("Peak heap, per executor", [("spark_executor_peak_heap_bytes", "{{app_name}} {{executor_id}}")], "bytes"),
        Panel("Storage memory used", [("spark_executor_storage_memory_used_bytes", "{{app_name}} {{executor_id}}")],
              "bytes"),
    ]))
    d.rows.append(Row("Driver JVM (JvmSource)", [
        Panel("Driver heap used and max", [("spark_driver_jvm_heap_used_bytes", "used {{app_name}}"),
                                           ("spark_driver_jvm_heap_max_bytes", "max {{app_name}}")], "bytes"),
        Panel("Driver memory pools after GC (heap floor)",
              [("spark_driver_jvm_memory_pool_used_after_gc_bytes", "{{app_name}} {{pool}}")], "bytes",
              "S3: the heap left after collections; rising for hours is a leak."),
        P_HEAP_FLOOR, P_CODECACHE,
    ]))
    d.rows.append(Row("Structured Streaming", [
        P_STREAM_RATES, P_BATCH, P_STATE_ROWS,
        Panel("State memory", [("spark_streaming_state_memory_bytes", "{{app_name}} {{query}}")], "bytes"),
        Panel("Watermark delay", [("time() - spark_streaming_watermark_timestamp_seconds", "{{app_name}} {{query}}")],
              "s", "S4: a delay that keeps growing means the watermark stopped advancing."),
    ]))
    d.rows.append(Row("Listener bus, cleaner and metrics sources", [
        Panel("Listener queue events", [("spark_listener_queue_events", "{{app_name}} {{queue}}"),
                                        ("spark_listener_queue_capacity", "capacity {{queue}}")], "short"),
        Panel("Listener events dropped",
              [(f"sum by (app_name, queue) (increase(spark_listener_dropped_events_total[{RATE_INTERVAL}]))",
                "{{app_name}} {{queue}}")], "short"),
        Panel("Cleaner periodic GC interval", [("spark_cleaner_periodic_gc_interval_seconds", "{{app_name}}")], "s",
              "S5: the war story's fix went from 30min to 3min.", kind="stat"),
        Panel("Cleaner reference tracking blocking", [("spark_cleaner_reference_tracking_blocking", "{{app_name}}")],
              "bool_yes_no", "S5: the war story's fix made it non-blocking.", kind="stat"),
        Panel("Metrics sources on", [("spark_metrics_source_enabled", "{{app_name}} {{source}}")], "bool_on_off",
              "Streaming metrics and the JvmSource must be on for S3, S4 and S5.", kind="stat"),
    ]))
    return d


def _jvm() -> Dashboard:
    d = Dashboard("sparkwatch-jvm", "sparkwatch / JVM internals",
                  "Classes, code cache and JIT, threads against their limits, file descriptors, heap spaces, GC.")
    d.rows.append(Row("Classes and code cache", [
        P_CLASSES,
        Panel("Classes loaded and unloaded per second",
              [(f"rate(jvm_classes_loaded_total[{RATE_INTERVAL}])", "loaded {{process}} {{pid}}"),
               (f"rate(jvm_classes_unloaded_total[{RATE_INTERVAL}])", "unloaded {{process}} {{pid}}")], "cps"),
        Panel("Code cache used, per heap", [("jvm_codecache_used_bytes", "used {{process}} {{heap}}"),
                                            ("jvm_codecache_max_bytes", "size {{process}} {{heap}}")], "bytes",
              "Needs attach: true."),
        P_CODECACHE,
        Panel("JIT compilation enabled", [("jvm_jit_compilation_enabled", "{{process}} {{pid}}")], "bool_on_off",
              "0 once the code cache was full: the JVM runs interpreted.", kind="stat"),
        Panel("Compiled code", [("jvm_compiled_code_bytes", "{{process}} {{pid}}")], "bytes"),
    ]))
    d.rows.append(Row("Threads against their limits", [
        Panel("JVM threads", [("jvm_threads_live", "live {{process}} {{pid}}"),
                              ("jvm_threads_daemon", "daemon {{process}} {{pid}}")], "short"),
        Panel("Process threads and thread limit", [("jvm_process_threads", "threads {{process}} {{pid}}"),
                                                   ("jvm_process_user_threads", "user's threads {{process}}"),
                                                   ("jvm_process_thread_limit", "limit {{process}}")], "short"),
        Panel("Thread headroom", [("jvm_process_thread_headroom", "{{process}} {{pid}}")], "short",
              "Threads the process can still start before its tightest limit."),
        Panel("Host threads and threads-max", [("max by (instance) (jvm_host_threads)", "threads {{instance}}"),
                                               ("max by (instance) (jvm_host_threads_max)", "threads-max {{instance}}")],
              "short"),
        Panel("cgroup pids and pids.max", [("jvm_process_cgroup_pids", "pids {{process}}"),
                                           ("jvm_process_cgroup_pids_max", "pids.max {{process}}")], "short"),
    ]))
    d.rows.append(Row("File descriptors and connections", [
        Panel("Open file descriptors and limit", [("jvm_process_open_fds", "open {{process}} {{pid}}"),
                                                  ("jvm_process_max_fds", "max {{process}} {{pid}}")], "short"),
        Panel("TCP connections by state", [("sum by (process, pid, state) (jvm_process_tcp_connections)",
                                            "{{process}} {{pid}} {{state}}")], "short"),
    ]))
    d.rows.append(Row("Memory and GC", [
        Panel("Memory spaces used", [("jvm_memory_space_used_bytes", "{{process}} {{pid}} {{space}}")], "bytes",
              stack=False),
        Panel("Old generation used and max", [('jvm_memory_space_used_bytes{space="old"}', "used {{process}} {{pid}}"),
                                              ('jvm_memory_space_max_bytes{space="old"}', "max {{process}} {{pid}}")],
              "bytes"),
        Panel("Resident memory", [("jvm_process_resident_memory_bytes", "{{process}} {{pid}}")], "bytes"),
        P_GC_SHARE,
        Panel("Collections per second", [(f"rate(jvm_gc_collections_total[{RATE_INTERVAL}])",
                                          "{{process}} {{pid}} {{collector}}")], "cps"),
    ]))
    return d


def _livy_zk() -> Dashboard:
    d = Dashboard("sparkwatch-livy-zookeeper", "sparkwatch / Livy and ZooKeeper",
                  "Livy sessions (S1) and the recovery store in ZooKeeper against the Livy JVM's thread headroom (S2).")
    d.rows.append(Row("Livy sessions (S1)", [
        P_LIVY_SESSIONS,
        Panel("Sessions Livy reports holding", [("livy_sessions_reported", "{{target}} {{kind}}")], "short"),
        P_LIVY_OLDEST,
        Panel("Finished sessions older than the retention",
              [("livy_finished_sessions_older_than_retention", "{{target}} {{kind}}")], "short"),
    ]))
    d.rows.append(Row("Livy restart risk (S2)", [
        P_RECOVERY,
        Panel("Stored sessions by kind", [("livy_recovery_sessions", "{{target}} {{kind}}")], "short"),
        Panel("Livy threads", [("livy_threads", "threads {{target}}"),
                               ("livy_yarn_app_monitor_threads", "yarnAppMonitorThread {{target}}")], "short"),
    ]))
    d.rows.append(Row("ZooKeeper", [
        Panel("Children of watched znodes", [("zookeeper_znode_children", "{{target}} {{path}}")], "short"),
        Panel("Watched znodes exist", [("zookeeper_znode_exists", "{{target}} {{path}}")], "bool_yes_no", kind="stat"),
        Panel("znodes and outstanding requests (mntr)", [("zookeeper_znodes", "znodes {{target}}"),
                                                         ("zookeeper_outstanding_requests", "outstanding {{target}}")],
              "short", "Needs the mntr four-letter command allowed."),
        Panel("Request latency (mntr)", [("zookeeper_latency_avg_seconds", "avg {{target}}"),
                                         ("zookeeper_latency_max_seconds", "max {{target}}")], "s"),
    ]))
    d.rows.append(Row("Targets", [
        Panel("Livy and ZooKeeper targets up", [('sparkwatch_target_up{kind=~"livy|zookeeper"}', "{{kind}} {{target}}")],
              "bool_on_off", kind="stat"),
        Panel("Scrape duration", [('sparkwatch_target_scrape_duration_seconds{kind=~"livy|zookeeper"}',
                                   "{{kind}} {{target}}")], "s"),
    ]))
    return d


def dashboards() -> List[Dashboard]:
    """Every dashboard of the pack, the overview first (built afresh at each call)."""
    return [_overview(), _spark(), _jvm(), _livy_zk()]


# --------------------------------------------------------------------------
# JSON


def panel_exprs(cfg: Optional[RulesConfig] = None) -> List[Tuple[str, str, str]]:
    """(dashboard uid, panel title, expr as it appears in the JSON) for every query."""
    out = []
    for d in dashboards():
        for r in d.rows:
            for p in r.panels:
                for expr, _ in p.targets:
                    out.append((d.uid, p.title, _expr(expr, cfg)))
    return out


def _expr(expr: str, cfg: Optional[RulesConfig]) -> str:
    cfg = cfg or RulesConfig()
    matchers = {p: join_matchers(GRAFANA_MATCHERS, cfg.selector, getattr(cfg.selectors, p)) for p in PREFIXES}
    return inject(expr, matchers)


def _variables() -> List[Dict[str, Any]]:
    def query_var(name, label, query):
        return {
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": f"{name}-var"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1, "hide": 0, "regex": "", "options": [],
        }

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "hide": 0, "refresh": 1, "regex": "", "options": []},
        query_var("job", "Job", "label_values(sparkwatch_target_up, job)"),
        query_var("instance", "Instance", 'label_values(sparkwatch_target_up{job=~"$job"}, instance)'),
    ]


def _panel_json(p: Panel, pid: int, x: int, y: int, cfg: Optional[RulesConfig]) -> Dict[str, Any]:
    targets = []
    for i, (expr, legend) in enumerate(p.targets):
        t = {"datasource": DATASOURCE, "expr": _expr(expr, cfg), "legendFormat": legend, "refId": chr(ord("A") + i)}
        if p.kind == "table":
            t.update({"instant": True, "format": "table"})
        targets.append(t)
    defaults: Dict[str, Any] = {"unit": p.unit}
    options: Dict[str, Any]
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if p.stack else 0,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if p.stack else "none", "group": "A"}}
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "value", "graphMode": "none", "textMode": "auto", "orientation": "auto",
                   "justifyMode": "auto", "percentChangeColorMode": "standard", "showPercentChange": False,
                   "wideLayout": True}
    else:
        options = {"showHeader": True, "frameIndex": 0}
    out = {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description, "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options, "targets": targets,
    }
    if p.kind == "table":
        out["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return out


def dashboard_json(d: Dashboard, cfg: Optional[RulesConfig] = None) -> Dict[str, Any]:
    """The Grafana JSON model of ``d``, with the selectors of ``cfg`` (None: the
    defaults) injected into every query."""
    panels: List[Dict[str, Any]] = []
    pid, y = 1, 0
    for row in d.rows:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x = 0
        for p in row.panels:
            if x + p.width > 24:
                x = 0
                y += 8
            panels.append(_panel_json(p, pid, x, y, cfg))
            pid += 1
            x += p.width
        y += 8
    return {
        "uid": d.uid, "title": d.title, "description": d.description,
        "tags": ["sparkwatch", "spark"], "timezone": "browser", "editable": True,
        "schemaVersion": 39, "version": 1, "graphTooltip": 1,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "templating": {"list": _variables()},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "name": "Annotations & Alerts", "type": "dashboard",
                                  "iconColor": "rgba(0, 211, 255, 1)"}]},
        "links": [{"title": "sparkwatch", "type": "dashboards", "tags": ["sparkwatch"], "asDropdown": True,
                   "includeVars": True, "keepTime": True, "icon": "external link", "tooltip": "",
                   "targetBlank": False}],
        "panels": panels,
    }


def dashboard_files(cfg: Optional[RulesConfig] = None) -> Dict[str, str]:
    """File name -> JSON text of every dashboard: what ``sparkwatch dashboards`` and
    the pack generator write."""
    return {d.filename: json.dumps(dashboard_json(d, cfg), indent=2, sort_keys=False) + "\n" for d in dashboards()}
