"""S5, loaded classes and the JIT code cache: classes that are never unloaded,
the code cache filling up and the JIT switched off, jobs piling up, the
listener bus and the cleaner settings of a long-running application (S5's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, NUMBER, REGEX, Alert, Evidence, Param, Replay, at, saw, series, values
from ..expressions import (
    APP_JOIN_LABELS,
    APP_SERIES_LABELS,
    JVM_SERIES_LABELS,
    driver_pools_as_jvm_series,
    floor_evidence,
    predicted_exhaustion,
    rising_floor,
)

CODE_POOLS = Param("codeheap_.*|code_?cache", REGEX,
                   "Spark JvmSource memory pools (pool label) that are code cache heaps")
CODE_POOL_USED = 'spark_driver_jvm_memory_pool_used_bytes{pool=~"$code_pools"}'
CODE_POOL_MAX = 'spark_driver_jvm_memory_pool_max_bytes{pool=~"$code_pools"}'

#: a code cache heap: a JVM's (jvm collector), or a pool of a driver's (relabelled like it)
CODE_HEAP_ON = JVM_SERIES_LABELS + ", heap"

MB = 1024 * 1024
#: the long-running service of S5's war story
SERVICE = dict(target="app", app_id="app-1", app_name="sparkmachine")


def loaded_classes() -> str:
    return series("jvm_classes_currently_loaded", target="local", process="SparkSubmit")


def codecache_used(heap: str = "CodeCache") -> str:
    return series("jvm_codecache_used_bytes", target="local", process="SparkSubmit", heap=heap)


def codecache_max(heap: str = "CodeCache") -> str:
    return series("jvm_codecache_max_bytes", target="local", process="SparkSubmit", heap=heap)


def jit_enabled() -> str:
    return series("jvm_jit_compilation_enabled", target="local", process="SparkSubmit")


def driver_code_pool(figure: str) -> str:
    """The driver's JvmSource pool series of a code heap; figure: used or max."""
    return series(f"spark_driver_jvm_memory_pool_{figure}_bytes", target="app", app_id="app-1",
                  app_name="rules", pool="codeheap_non_profiled_nmethods")


def active_jobs() -> str:
    return series("spark_jobs_active", **SERVICE)


def oldest_job_age() -> str:
    return series("spark_job_oldest_active_age_seconds", **SERVICE)


def dropped_events() -> str:
    return series("spark_listener_dropped_events_total", queue="appStatus", **SERVICE)


def periodic_gc_interval() -> str:
    return series("spark_cleaner_periodic_gc_interval_seconds", **SERVICE)


def reference_tracking_blocking() -> str:
    return series("spark_cleaner_reference_tracking_blocking", **SERVICE)


def app_uptime() -> str:
    return series("spark_app_uptime_seconds", **SERVICE)


def driver_nonheap() -> str:
    return series("spark_driver_jvm_nonheap_used_bytes", **SERVICE)


#: a healthy driver's non-heap memory (metaspace, code cache): 100 MB to 300 MB in its first hour, then a
#: 40 MB sawtooth (classes of evicted generated code unloaded at every periodic GC, every 30 minutes)
#: and the JIT still compiling a little (2 MB an hour), for 31 hours
HEALTHY_NONHEAP = saw(0, 40 * MB, 30, 1900, base=lambda t: 100 * MB + 200 * MB * min(t, 60) / 60 + 2 * MB * t / 60)
#: S5's war story: classes never unloaded, their metaspace and compiled code (0.4 MB a minute) over a small
#: sawtooth, for 16 hours
LEAKING_NONHEAP = saw(0, 10 * MB, 30, 960, base=lambda t: 300 * MB + 0.4 * MB * t)


#: active jobs: a few at any time for two hours, then rising by one every two minutes
PILING_JOBS = [(0 if t < 120 else (t - 120) // 2) + t % 5 for t in range(301)]

JVM_LOADED_CLASSES_RISING = Alert(
    name="JvmLoadedClassesRising", signature="S5", severity="warning", problem="classes", component="jvm",
    summary="A JVM's loaded classes keep rising: classes are not unloaded.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): its "
                "lowest loaded-class count over $floor_window rose by more than $min_increase in "
                "$trend_window, steadily (in both halves of it).",
    expr=rising_floor("jvm_classes_currently_loaded", "$min_increase"),
    for_="1h",
    params={"floor_window": Param("1h", DURATION, "the floor is the minimum over this window"),
            "trend_window": Param("6h", DURATION, "compared with the floor this long ago"),
            "min_increase": Param(10000, NUMBER, "classes")},
    meaning="Generated code (Spark's codegen, compiled rules) loads classes all the time; they are "
            "unloaded when nothing references them. A floor that keeps rising means something holds "
            "them: in S5's war story, Spark's ContextCleaner fell behind and millions of pending cleanup "
            "references kept broadcasts, and their classes, alive. Next comes the full code cache.",
    confirm=["`jcmd PID VM.classloader_stats` or `jcmd PID GC.class_histogram | head`: "
             "`CleanupTaskWeakReference`/`CleanAccum` counts in the millions point at the cleaner.",
             "The application's cleaner settings (SparkCleanerSettingsRisky) and active jobs."],
    action="Shorten `spark.cleaner.periodicGC.interval` and set "
           "`spark.cleaner.referenceTracking.blocking=false`; restart the driver to recover now.",
    story=Replay("50 classes a minute never unloaded (S5's war story)", [(loaded_classes(), "20000+50x540")],
                 quiet=["350m"], fires="430m", labels=[at(target="local", process="SparkSubmit")]),
    healthy=[Replay("busy codegen: 5,000 classes loaded and unloaded every 10 minutes",
                    [(loaded_classes(), values(saw(30000, 35000, 10, 540)))], quiet=["7h", "9h"]),
             Replay("warm-up: 25,000 classes loaded in the first hour, then flat",
                    [(loaded_classes(), "2000+400x60 26000x480")], quiet=["6h30m", "7h", "8h"])],
    evidence=floor_evidence("jvm_classes_currently_loaded", JVM_SERIES_LABELS),
)

JVM_CODE_CACHE_PREDICTED_FULL = Alert(
    name="JvmCodeCachePredictedFull", signature="S5", severity="warning", problem="codecache",
    component="jvm",
    summary="A JVM's JIT code cache is filling up; compilation will be disabled.",
    description="Code cache heap {{ $labels.heap }} of JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) is more "
                "than $min_ratio_pct% used and, at the trend of the last $window, full within $horizon.",
    expr=f"""
{predicted_exhaustion("jvm_codecache_used_bytes", "jvm_codecache_max_bytes", ">=")}
and jvm_codecache_used_bytes / jvm_codecache_max_bytes > $min_ratio
or
""" + driver_pools_as_jvm_series(f"""
{predicted_exhaustion(CODE_POOL_USED, CODE_POOL_MAX, ">=", line_break=True)}
and {CODE_POOL_USED}
/ {CODE_POOL_MAX}
> $min_ratio
""", "heap"),
    for_="15m",
    params={"window": Param("1h", DURATION, "the trend is fitted over this window"),
            "horizon": Param("6h", DURATION, "how far ahead"),
            "min_ratio": Param(0.5, NUMBER, "share used before the trend counts"),
            "code_pools": CODE_POOLS},
    meaning="The JIT compiles hot methods into the code cache (`-XX:ReservedCodeCacheSize`, per heap when "
            "segmented). When a heap has no contiguous space left, HotSpot prints `CodeCache is full. "
            "Compiler has been disabled` and runs interpreted from then on: everything slows down "
            "(S5's war story). Read from the attach mechanism (jvm collector, opt-in) or from Spark's "
            "JvmSource pools of the driver.",
    confirm=["`jcmd PID Compiler.codecache`: used against size per heap, `full_count`.",
             "Loaded classes rising too (JvmLoadedClassesRising): the generated code is never freed."],
    action="Find why compiled code keeps growing (S5: classes that are never unloaded); "
           "a larger `-XX:ReservedCodeCacheSize` is a stopgap.",
    story=Replay("the code cache grows 0.5 MB a minute towards 240 MB",
                 [(codecache_used(), f"{100 * MB}+{MB // 2}x300"), (codecache_max(), f"{240 * MB}x300")],
                 quiet=["30m"], fires="60m",
                 failure="280m", failure_is="the code cache is full: compilation disabled",
        labels=[at(target="local", process="SparkSubmit", heap="CodeCache")]),
    healthy=[Replay("a warmed-up JVM: half of the code cache, steady",
                    [(codecache_used(), f"{120 * MB}x300"), (codecache_max(), f"{240 * MB}x300"),
                     (codecache_used("non-nmethods"), f"{4 * MB}x300"), (codecache_max("non-nmethods"), f"{6 * MB}x300")],
                    quiet=["2h", "5h"])],
    evidence={"used": Evidence("jvm_codecache_used_bytes\nor\n" + driver_pools_as_jvm_series(CODE_POOL_USED, "heap"),
                               CODE_HEAP_ON),
              "max": Evidence("jvm_codecache_max_bytes\nor\n" + driver_pools_as_jvm_series(CODE_POOL_MAX, "heap"),
                              CODE_HEAP_ON)},
)

JVM_CODE_CACHE_NEARLY_FULL = Alert(
    name="JvmCodeCacheNearlyFull", signature="S5", severity="critical", problem="codecache",
    component="jvm",
    summary="A JVM's JIT code cache is nearly full; compilation is about to be disabled.",
    description="Code cache heap {{ $labels.heap }} of JVM {{ $labels.process }} on {{ $labels.instance }} (target "
                "{{ $labels.target }}) is more than $ratio_pct% used, or more than $min_ratio_pct% used and, at the "
                "trend of the last $window, full within $horizon.",
    expr=f"""
jvm_codecache_used_bytes / jvm_codecache_max_bytes > $ratio
or
{predicted_exhaustion("jvm_codecache_used_bytes", "jvm_codecache_max_bytes", ">=")}
and jvm_codecache_used_bytes / jvm_codecache_max_bytes > $min_ratio
or
""" + driver_pools_as_jvm_series(f"""
{CODE_POOL_USED}
/ {CODE_POOL_MAX}
> $ratio
or
{predicted_exhaustion(CODE_POOL_USED, CODE_POOL_MAX, ">=", line_break=True)}
and {CODE_POOL_USED}
/ {CODE_POOL_MAX}
> $min_ratio
""", "heap"),
    for_="10m",
    params={"ratio": Param(0.95, NUMBER, "share of the code cache heap used that pages whatever the trend"),
            "min_ratio": Param(0.75, NUMBER, "share used from which the trend pages"),
            "window": Param("30m", DURATION, "the trend is fitted over this window"),
            "horizon": Param("3h", DURATION, "how far ahead: the time left to plan a restart"),
            "code_pools": CODE_POOLS},
    meaning="The page of S5: the JIT will be switched off within hours. JvmCodeCachePredictedFull opens a "
            "ticket when the trend of the last hour fills the code cache within 6 hours; this alert pages "
            "when, three quarters full, the recent trend fills it within 3 hours, or when it is 95% full "
            "whatever the trend. The last quarter of a code cache can go in two hours (in the lab's S5 it went "
            "from 75% to full in less than three compressed hours): a page at 95% alone came minutes, not "
            "hours, before compilation stopped.",
    confirm=["`jcmd PID Compiler.codecache`: used against size, `full_count`.",
             "The trend on the JVM dashboard (code cache panel)."],
    action="Plan a restart of the JVM (it resets the code cache) in a quiet moment before the JIT is "
           "disabled; then fix the growth.",
    story=Replay("the code cache grows 0.5 MB a minute towards 240 MB (read by attach, and from the "
                 "driver's JvmSource pool)",
                 [(codecache_used(), f"{100 * MB}+{MB // 2}x300"), (codecache_max(), f"{240 * MB}x300"),
                  (driver_code_pool("used"), f"{100 * MB}+{MB // 2}x300"), (driver_code_pool("max"), f"{240 * MB}x300")],
                 quiet=["165m"], fires="180m",
                 failure="280m", failure_is="the code cache is full: compilation disabled",
        labels=[at(target="local", process="SparkSubmit", heap="CodeCache"),
                         at(target="app", app_id="app-1", app_name="rules", pool="codeheap_non_profiled_nmethods",
                            heap="codeheap_non_profiled_nmethods", process="driver")]),
    healthy=[Replay("a busy JVM at 80% of its code cache",
                    [(codecache_used(), f"{192 * MB}x300"), (codecache_max(), f"{240 * MB}x300")], quiet=["1h", "5h"]),
             Replay("a JVM at 80% that still compiles a little (1 MB an hour): full in two days",
                    [(codecache_used(), f"{192 * MB}+{MB // 60}x300"), (codecache_max(), f"{240 * MB}x300")],
                    quiet=["1h", "5h"]),
             Replay("a JVM that fills half its code cache in its first hour, then stays",
                    [(codecache_used(), f"{10 * MB}+{2 * MB}x60 {130 * MB}x240"), (codecache_max(), f"{240 * MB}x300")],
                    quiet=["30m", "1h", "2h"])],
)

JVM_JIT_COMPILATION_DISABLED = Alert(
    name="JvmJitCompilationDisabled", signature="S5", severity="critical", problem="codecache",
    component="jvm",
    summary="A JVM's JIT compiler is disabled: it runs interpreted and slows down.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) reports "
                "\"compilation: disabled\": its code cache is full.",
    expr="jvm_jit_compilation_enabled == 0",
    for_="1m",
    params={},
    meaning="HotSpot disables the JIT when the code cache has no contiguous space left. It does not "
            "turn it back on; the JVM stays slow until it is restarted (S5's war story).",
    confirm=["`jcmd PID Compiler.codecache` ends with `compilation: disabled (not enough contiguous free "
             "space left)`; the JVM's stdout has `CodeCache is full`."],
    action="Restart the JVM in a controlled way; then fix the growth (S5).",
    story=Replay("compilation disabled after the code cache filled",
                 [(jit_enabled(), "1x30 0x30")], quiet=["30m"], fires="35m",
                 labels=[at(target="local", process="SparkSubmit")]),
    healthy=[Replay("compilation enabled", [(jit_enabled(), "1x60")], quiet=["30m", "1h"])],
)

SPARK_JOBS_PILING_UP = Alert(
    name="SparkJobsPilingUp", signature="S5", severity="warning", problem="jobs", component="spark",
    summary="A Spark application's active jobs keep piling up.",
    description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}) "
                "has had more than $max_jobs active jobs at every moment of the last $window, more than "
                "in the window before.",
    expr="""
min_over_time(spark_jobs_active[$window]) > $max_jobs
and
min_over_time(spark_jobs_active[$window]) > min_over_time(spark_jobs_active[$window] offset $window)
""",
    for_="30m",
    params={"max_jobs": Param(20, NUMBER, "active jobs"), "window": Param("30m", DURATION, "the floor window")},
    meaning="A service that runs many small jobs has a changing number of active jobs, but the fewest "
            "active jobs over half an hour does not keep rising. When it does, jobs finish slower than "
            "they arrive: in S5's war story the driver was slowed by the ContextCleaner backlog and a "
            "disabled JIT.",
    confirm=["Jobs tab of the Spark UI: active jobs and their durations.",
             "Driver JVM: loaded classes, code cache, GC time (JVM dashboard)."],
    action="Look for the S5 signals (classes, code cache, cleaner settings) and for a stage that blocks.",
    story=Replay("jobs start piling up after two hours (S5's war story)", [(active_jobs(), values(PILING_JOBS))],
                 quiet=["3h"], fires="230m", labels=[at(**SERVICE)]),
    healthy=[Replay("a busy service: 30 to 40 jobs active all the time",
                    [(active_jobs(), values(saw(30, 40, 7, 300)))], quiet=["2h", "5h"])],
)

SPARK_JOB_RUNNING_TOO_LONG = Alert(
    name="SparkJobRunningTooLong", signature="S5", severity="warning", problem="jobs", component="spark",
    summary="A Spark job has been running far longer than jobs of this application should.",
    description="The oldest active job of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                "{{ $labels.target }}) has been running for more than $max_age.",
    expr="max by (job, instance, target, app_id, app_name) (spark_job_oldest_active_age_seconds) > $max_age_s",
    for_="5m",
    params={"max_age": Param("1h", DURATION, "longest expected job (set per application with the selector); "
                                              "compared with real job durations, so not scaled by time_scale",
                             scales=False)},
    meaning="Seed 004's team first noticed \"one or two Spark jobs that were running for quite a long "
            "time\" whenever the service slowed down. A job far over its usual duration is stuck or "
            "starved.",
    confirm=["Jobs tab: the job, its stages and their tasks.", "Thread dump of the executor that runs the "
                                                                "slow task."],
    action="Kill the job if it is stuck (`Kill` link in the UI); check S5 signals if every job is slow.",
    story=Replay("short jobs, then one that never ends",
                 [(oldest_job_age(), values(saw(0, 60, 5, 60)) + " 0+60x120")],
                 quiet=["115m"], fires="130m", labels=[at(**SERVICE)]),
    healthy=[Replay("a busy service: jobs of up to two minutes", [(oldest_job_age(), values(saw(0, 120, 3, 180)))],
                    quiet=["1h", "3h"])],
)

SPARK_LISTENER_EVENTS_DROPPED = Alert(
    name="SparkListenerEventsDropped", signature="S5", severity="warning", problem="listener",
    component="spark",
    summary="Spark's listener bus dropped events: the UI, metrics and cleanup fall behind.",
    description="Queue {{ $labels.queue }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                "{{ $labels.target }}) dropped events in the last $window.",
    expr="sum by (job, instance, target, app_id, app_name, queue) "
         "(increase(spark_listener_dropped_events_total[$window])) > 0",
    for_="0m",
    params={"window": Param("10m", DURATION, "window for the increase")},
    meaning="Listeners run on queues of `spark.scheduler.listenerbus.eventqueue.capacity` (10,000) events; "
            "a listener slower than the event rate fills its queue and Spark drops events. The UI "
            "then shows jobs that never end and the figures this exporter reads go wrong.",
    confirm=["Driver log: `Dropping event from queue`.", "`spark_listener_queue_events` by queue."],
    action="Raise `spark.scheduler.listenerbus.eventqueue.<queue>.capacity`, remove slow listeners, "
           "and reduce the number of tiny jobs/tasks.",
    story=Replay("the appStatus queue overflows after an hour",
                 [(dropped_events(), "0x60 0+100x60")], quiet=["60m"], fires="65m",
                 labels=[at(queue="appStatus", **SERVICE)]),
    healthy=[Replay("no events dropped", [(dropped_events(), "0x120")], quiet=["1h", "2h"])],
)

SPARK_LISTENER_QUEUE_FILLING = Alert(
    name="SparkListenerQueueFilling", signature="S5", severity="warning", problem="listener",
    component="spark",
    summary="A Spark listener bus queue stays nearly full: events will be dropped.",
    description="Queue {{ $labels.queue }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                "{{ $labels.target }}) has held more than $ratio_pct% of its capacity for the whole of the "
                "last $window.",
    expr="""
min_over_time(spark_listener_queue_events[$window])
/ on (job, instance, target, app_id, app_name, queue)
spark_listener_queue_capacity
> $ratio
""",
    for_="5m",
    params={"ratio": Param(0.8, NUMBER, "share of the queue's capacity"),
            "window": Param("10m", DURATION, "the queue never emptied below the ratio in this window")},
    meaning="A listener that cannot keep up leaves its queue full; once it is full Spark drops events "
            "(SparkListenerEventsDropped). A queue that stays above 80% for ten minutes is the step "
            "before: the driver is overloaded with events (many tiny jobs and tasks, S5's war story) or a "
            "listener is slow.",
    confirm=["`spark_listener_queue_events` by queue on the Spark dashboard.",
             "Driver thread dump: what the `spark-listener-group-<queue>` thread is doing."],
    action="Remove or speed up the slow listener; raise the queue's capacity "
           "(`spark.scheduler.listenerbus.eventqueue.<queue>.capacity`) as a stopgap.",
    story=Replay("the appStatus queue stays nearly full for an hour, then overflows",
                 [(series("spark_listener_queue_events", queue="appStatus", **SERVICE),
                   values(saw(0, 2000, 5, 60)) + " " + values(saw(8500, 9500, 5, 59)) + " 10000x40"),
                  (series("spark_listener_queue_capacity", queue="appStatus", **SERVICE), "10000x160")],
                 quiet=["65m"], fires="80m", failure="121m",
                 failure_is="the queue is full: events are dropped",
                 labels=[at(queue="appStatus", **SERVICE)]),
    healthy=[Replay("a busy queue: bursts to 9,000 events drained every few minutes",
                    [(series("spark_listener_queue_events", queue="appStatus", **SERVICE),
                      values(saw(0, 9000, 4, 160))),
                     (series("spark_listener_queue_capacity", queue="appStatus", **SERVICE), "10000x160")],
                    quiet=["1h", "2h"])],
)

SPARK_CLEANER_SETTINGS_RISKY = Alert(
    name="SparkCleanerSettingsRisky", signature="S5", severity="warning", problem="cleaner",
    component="spark",
    summary="A Spark application with the cleaner settings of S5's war story keeps classes and compiled "
            "code it should free.",
    description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}) "
                "runs with spark.cleaner.periodicGC.interval above $max_periodic_gc_interval or "
                "spark.cleaner.referenceTracking.blocking=true, and the lowest non-heap memory of its driver "
                "(classes, compiled code) over $floor_window rose by more than $min_growth_pct% in "
                "$trend_window, steadily (in both halves of it).",
    expr=f"""
count by ({APP_SERIES_LABELS}) (
  spark_cleaner_periodic_gc_interval_seconds > $max_periodic_gc_interval_s
  or
  spark_cleaner_reference_tracking_blocking == 1
)
and on (job, instance, target, app_id)
(
{rising_floor("spark_driver_jvm_nonheap_used_bytes", "$min_growth", relative=True)}
)
""",
    for_="1h",
    params={"max_periodic_gc_interval": Param("10m", DURATION, "longest safe periodic GC interval (not scaled by time_scale)",
                                              scales=False),
            "floor_window": Param("1h", DURATION, "the non-heap floor is the minimum over this window"),
            "trend_window": Param("6h", DURATION, "the floor now is compared with the floor this long ago"),
            "min_growth": Param(0.2, NUMBER, "relative rise of the driver's non-heap floor (0.2 = 20%)")},
    meaning="Spark's ContextCleaner frees broadcasts, shuffles and accumulators once the driver's GC "
            "has collected their handles. With the defaults (periodic GC every 30 minutes, blocking "
            "cleanup) a driver that creates many short-lived objects can fall behind; in S5's war story that "
            "kept millions of cleanup references, and the classes and compiled code they reach, alive until "
            "the code cache filled. The settings alone are no symptom: most long-running services run on "
            "Spark's defaults and their cleaner keeps up. The alert fires when the settings come with the "
            "symptom: the floor of the driver's non-heap memory (`spark_driver_jvm_nonheap_used_bytes`: "
            "metaspace, where classes live, and the code cache; its lowest value over $floor_window, after "
            "the periodic GCs that unload classes) rising steadily for $trend_window. A warm-up that rises "
            "once and stays does not count. `sparkwatch doctor` names the settings of every application "
            "(info) without the symptom.",
    confirm=["Environment tab of the Spark UI: `spark.cleaner.periodicGC.interval`, "
             "`spark.cleaner.referenceTracking.blocking`.",
             "The driver's non-heap floor in Prometheus, "
             "`min_over_time(spark_driver_jvm_nonheap_used_bytes{app_id=\"APP\"}[1h])`: it "
             "rises from one periodic GC to the next (`sparkwatch doctor --prometheus` prints it).",
             "`jcmd PID GC.class_histogram | head`: `CleanupTaskWeakReference`/`CleanAccum` counts in the "
             "millions are the cleaner's backlog; loaded classes rising (JvmLoadedClassesRising) where the "
             "jvm collector runs on the driver's host."],
    action="Set `spark.cleaner.periodicGC.interval=3min` and `spark.cleaner.referenceTracking.blocking=false` "
           "and restart the driver at a quiet moment (the restart also frees what the backlog holds).",
    story=Replay("S5's war story: a service on the defaults (30min, blocking) whose driver never unloads the "
                 "classes of its generated code: non-heap memory +0.4 MB a minute",
                 [(periodic_gc_interval(), "1800x960"), (reference_tracking_blocking(), "1x960"),
                  (app_uptime(), "0+60x960"), (driver_nonheap(), values(LEAKING_NONHEAP))],
                 quiet=["350m"], fires="430m", failure="900m",
                 failure_is="the code cache is full: compilation disabled",
                 labels=[at(**SERVICE)]),
    healthy=[
        Replay("a healthy long-running service on Spark's default cleaner settings (30min, blocking) for 31 "
               "hours: its driver's non-heap memory (classes, compiled code) warms up in the first hour, then "
               "stays flat (classes loaded and unloaded at every periodic GC)",
               [(periodic_gc_interval(), "1800x1900"), (reference_tracking_blocking(), "1x1900"),
                (app_uptime(), "0+60x1900"), (driver_nonheap(), values(HEALTHY_NONHEAP))],
               quiet=["25h", "28h", "31h"]),
        Replay("the same growth under the fix of S5's war story (3min, non-blocking): "
               "JvmLoadedClassesRising's to say, not this alert's",
               [(periodic_gc_interval(), "180x960"), (reference_tracking_blocking(), "0x960"),
                (app_uptime(), "0+60x960"), (driver_nonheap(), values(LEAKING_NONHEAP))],
               quiet=["8h", "16h"]),
        Replay("the defaults, and a driver that loads its jobs' classes for two hours, then stays flat",
               [(periodic_gc_interval(), "1800x960"), (reference_tracking_blocking(), "1x960"),
                (app_uptime(), "0+60x960"),
                (driver_nonheap(), values(saw(0, 20 * MB, 30, 960,
                                             base=lambda t: 100 * MB + 200 * MB * min(t, 120) / 120)))],
               quiet=["6h", "7h", "8h", "10h"]),
    ],
    evidence=dict(floor_evidence("spark_driver_jvm_nonheap_used_bytes", APP_JOIN_LABELS),
              periodic_gc_interval_seconds=Evidence("spark_cleaner_periodic_gc_interval_seconds", APP_JOIN_LABELS),
              reference_tracking_blocking=Evidence("spark_cleaner_reference_tracking_blocking", APP_JOIN_LABELS)),
)

ALERTS: List[Alert] = [
    JVM_LOADED_CLASSES_RISING,
    JVM_CODE_CACHE_PREDICTED_FULL,
    JVM_CODE_CACHE_NEARLY_FULL,
    JVM_JIT_COMPILATION_DISABLED,
    SPARK_JOBS_PILING_UP,
    SPARK_JOB_RUNNING_TOO_LONG,
    SPARK_LISTENER_EVENTS_DROPPED,
    SPARK_LISTENER_QUEUE_FILLING,
    SPARK_CLEANER_SETTINGS_RISKY,
]
