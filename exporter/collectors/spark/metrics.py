"""The Spark collector's metrics: what a Spark UI yields (:data:`UI_METRICS`, which the
Livy collector emits too for the UIs of its sessions) and what a cluster manager
yields (:data:`CLUSTER_METRICS`). Each collector lists what it may emit from these
tuples: a metric declared here and in neither tuple is emitted by no one (the
engine refuses its samples).
"""

from __future__ import annotations

from ...collector import counter, gauge, info

#: labels of every series of an application (attempt_id: Spark's attempt id, empty when it has
#: none; one attempt per application unless a target asks for more, see docs/spark.md); of an
#: executor; of a streaming query
APP_LABELS = ("app_id", "app_name", "attempt_id")
EXECUTOR_LABELS = APP_LABELS + ("executor_id",)
QUERY_LABELS = APP_LABELS + ("query",)

APP_INFO = info("spark_app", "A Spark application the target shows (value 1), with its Spark version and user.",
                APP_LABELS + ("spark_version", "spark_user"))
APP_UPTIME = gauge("spark_app_uptime_seconds",
                   "Seconds since the application started (its duration once it has completed).", APP_LABELS)
APP_STALE = gauge("spark_app_stale",
                  "1 if the application is not completed but its event log has not been updated for stale_after "
                  "seconds, or (a log copied or touched since) it runs nothing and its jobs and executors show "
                  "nothing newer (history server: the driver most likely died without closing it); its uptime "
                  "and job ages are then measured to that last sign of life instead of now. 0 otherwise.",
                  APP_LABELS)
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
                "JVM garbage collection time of the executor's tasks. GC share = rate(this) / "
                "rate(spark_executor_run_seconds_total). Executors only: the driver's figure is its whole JVM's "
                "GC (spark_driver_jvm_gc_seconds_total).", EXECUTOR_LABELS)
EX_RUN = counter("spark_executor_run_seconds_total",
                 "Time the executor spent running tasks (sum over its task slots). Executors only: for the driver "
                 "Spark reports the application's wall time (spark_app_uptime_seconds), even in local mode.",
                 EXECUTOR_LABELS)
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
# A cluster manager (discover: standalone or yarn)

CLUSTER_APPS = gauge(
    "spark_cluster_applications",
    "Running applications the cluster manager lists (a spark target with discover: standalone or yarn).")
CLUSTER_APPS_SCRAPED = gauge(
    "spark_cluster_applications_scraped",
    "Of spark_cluster_applications, those whose driver UI was read in this scrape; the rest had no UI "
    "(spark.ui.enabled=false), did not answer in time, were beyond max_applications, or were refused "
    "(spark_cluster_rejected_uis).")
CLUSTER_REJECTED_UIS = gauge(
    "spark_cluster_rejected_uis",
    "Of spark_cluster_applications, those whose driver UI was not read because its URL is not allowed: "
    "not the manager's own proxy path for the application, nor (standalone) a UI on the master's host, "
    "nor matching discovered_ui_allowed.")


#: every metric a scrape of one Spark UI may emit (the Spark collector's, and the Livy
#: collector's for the UIs of its sessions)
UI_METRICS = (
    APP_INFO, APP_UPTIME, APP_STALE, APP_COMPLETED, JOBS_ACTIVE, JOB_OLDEST_AGE, STAGES_ACTIVE, STAGES_FAILED,
    EXECUTORS_ACTIVE, EX_GC, EX_RUN, EX_PEAK_HEAP, EX_PEAK_OFFHEAP, EX_STORAGE_USED, EX_STORAGE_MAX, EX_FAILED,
    EX_COMPLETED, EX_ACTIVE_TASKS,
    HEAP_USED, HEAP_COMMITTED, HEAP_MAX, NONHEAP_USED, POOL_USED, POOL_MAX, POOL_COMMITTED, POOL_AFTER_GC,
    GC_COUNT, GC_TIME, DRIVER_CPU,
    ST_INPUT, ST_PROCESSED, ST_DURATION, ST_WATERMARK, ST_STATE_ROWS, ST_STATE_BYTES,
    LQ_EVENTS, LQ_DROPPED, LQ_CAPACITY, L_POSTED,
    DAG_JOBS_ACTIVE, DAG_JOBS_ALL, DAG_STAGES_RUNNING, DAG_STAGES_WAITING, DAG_STAGES_FAILED,
    CLEANER_INTERVAL, CLEANER_BLOCKING, CLEANER_TRACKING, SOURCE_ENABLED,
)
#: what a target with discover (a standalone master, a YARN ResourceManager) emits besides
CLUSTER_METRICS = (CLUSTER_APPS, CLUSTER_APPS_SCRAPED, CLUSTER_REJECTED_UIS)
