"""S3, heap leak with flat streaming state: the heap, GC, thread and file
descriptor alerts of a JVM that leaks (S3's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, NUMBER, REGEX, Alert, Evidence, Param, Replay, at, saw, series, values, wiggle
from ..expressions import (
    APP_JOIN_LABELS,
    APP_SERIES_LABELS,
    JVM_SERIES_LABELS,
    collected_in_every_floor_window,
    driver_pools_as_jvm_series,
    flat_state,
    floor,
    floor_evidence,
    predicted,
    predicted_exhaustion,
    rising_floor,
    state_evidence,
)

#: the old generation of a JVM (jvm collector)
OLD_SPACE_USED = 'jvm_memory_space_used_bytes{space=~"$old_space"}'

#: the stateful streaming application of S3's war story
STREAMING_APP = dict(target="app", app_id="app-1", app_name="sessions")


def executor_thread_headroom() -> str:
    return series("jvm_process_thread_headroom", target="local", process="executor")


def executor_thread_limit() -> str:
    return series("jvm_process_thread_limit", target="local", process="executor")


def driver_heap_used() -> str:
    return series("spark_driver_jvm_heap_used_bytes", **STREAMING_APP)


def state_rows() -> str:
    return series("spark_streaming_state_rows", **STREAMING_APP, query="sessionize")


def old_gen_used() -> str:
    return series("jvm_memory_space_used_bytes", target="local", process="executor", space="old")


#: an executor JVM of the streaming application, on a worker host (jvm collector)
EXECUTOR_JVM = dict(target="worker", process="CoarseGrainedExecutorBackend", app_id="app-1", executor_id="1")


def executor_old_gen_used(**labels) -> str:
    return series("jvm_memory_space_used_bytes", **dict(EXECUTOR_JVM, space="old", **labels))


def executor_collections(collector: str = "G1 concurrent cycle pauses", **labels) -> str:
    return series("jvm_gc_collections_total", **dict(EXECUTOR_JVM, collector=collector, **labels))


#: a collection of the old generation every 10 minutes (at each drop of the sawtooth)
OLD_COLLECTIONS = "0+0.1x600"


def executor_old_gen_max(**labels) -> str:
    return series("jvm_memory_space_max_bytes", **dict(EXECUTOR_JVM, space="old", **labels))


def old_gen_max() -> str:
    return series("jvm_memory_space_max_bytes", target="local", process="executor", space="old")


def old_gen_gc_seconds() -> str:
    return series("jvm_gc_seconds_total", target="local", process="executor", collector="G1 Old Generation")


def executor_gc_seconds() -> str:
    return series("spark_executor_gc_seconds_total", **STREAMING_APP, executor_id="1")


def executor_run_seconds() -> str:
    return series("spark_executor_run_seconds_total", **STREAMING_APP, executor_id="1")


def live_threads() -> str:
    return series("jvm_threads_live", target="local", process="executor")


def open_fds() -> str:
    return series("jvm_process_open_fds", target="local", process="executor")


def max_fds() -> str:
    return series("jvm_process_max_fds", target="local", process="executor")


#: the parameters of a rising heap floor with flat state (flat_state, rising_floor)
FLOOR_WITH_FLAT_STATE = {
    "floor_window": Param("1h", DURATION, "the heap floor is the minimum over this window"),
    "trend_window": Param("6h", DURATION, "the floor now is compared with the floor this long ago"),
    "min_growth": Param(0.25, NUMBER, "relative rise of the heap floor (0.25 = 25%)"),
    "max_state_change": Param(0.1, NUMBER, "relative change of the state rows that still counts as flat"),
}

#: the old generation's space label, and the collections that reclaim it (jvm collector)
OLD_SPACE = Param("old|tenured", REGEX, "space label of the old generation (jvm collector)")
OLD_COLLECTOR = Param(".*(full|concurrent|[Oo]ld|[Mm]ajor).*", REGEX,
                      "collector label (jvm collector) of the collections that reclaim the old generation: full "
                      "collections and G1's concurrent cycles (`G1 full collection pauses`, `G1 concurrent cycle "
                      "pauses`, `Parallel full collection pauses`, `Serial full collection pauses`)")

#: a heap sawtooth whose floor rises 5 MB a minute
LEAKING_HEAP = saw(0, 5e8, 10, 600, base=lambda t: 1e9 + 5e6 * t)

JVM_THREADS_PREDICTED_TO_HIT_LIMIT = Alert(
    name="JvmThreadsPredictedToHitLimit", signature="S3", severity="warning", problem="threads",
    component="jvm",
    summary="A JVM's threads are growing towards its thread limit.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): at the "
                "trend of the last $window, the threads counted against its limit reach it within $horizon.",
    expr=f"min by ({JVM_SERIES_LABELS}) ({predicted('jvm_process_thread_headroom')}) < 0",
    for_="15m",
    params={
        "window": Param("1h", DURATION, "the trend is fitted over this window"),
        "horizon": Param("4h", DURATION, "how far ahead the trend is extrapolated"),
    },
    meaning="Threads that grow steadily are leaking: a client or a pool created per task or per "
            "partition and never closed (S3's war story's HTTP client). Extrapolated, the trend says when "
            "the JVM will fail to start a thread, hours before JvmThreadsNearLimit pages.",
    confirm=[
        "`jvm_threads_live` and `jvm_process_threads` on the JVM dashboard rise without falling back.",
        "Two thread dumps (`jcmd PID Thread.print`) a few minutes apart: the names that multiply.",
        "`jvm_process_tcp_connections` rising too points at clients that are never closed.",
    ],
    action="Find the thread names that multiply and close what creates them (in S3's war story, the HTTP "
           "client of the Kinesis client in `ForeachWriter.close`).",
    story=Replay(
        "a streaming executor leaks 10 threads a minute (unclosed clients, S3's war story)",
        [(executor_thread_headroom(), "3096-10x400"), (executor_thread_limit(), "4096x400")],
        quiet=["1h"], fires="90m", failure="310m", failure_is="no thread headroom left: unable to create new native thread",
        labels=[at(target="local", process="executor")],
    ),
    healthy=[
        Replay("a busy JVM with 3,000 threads, steady",
               [(executor_thread_headroom(), values(wiggle(1096, 20, 400)))], quiet=["2h", "6h"]),
    ],
    evidence={"thread_headroom": Evidence(f"min by ({JVM_SERIES_LABELS}) (jvm_process_thread_headroom)",
                                          JVM_SERIES_LABELS),
              "thread_limit": Evidence(f"min by ({JVM_SERIES_LABELS}) (jvm_process_thread_limit)", JVM_SERIES_LABELS)},
)

SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE = Alert(
    name="SparkHeapFloorRisingWithFlatState", signature="S3", severity="warning", problem="heap",
    component="spark",
    summary="A streaming application's heap floor rises while its state does not: a leak.",
    description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}): "
                "the driver's lowest heap over $floor_window rose by more than $min_growth_pct% in "
                "$trend_window, in both halves of it, while its streaming state rows changed by less than $max_state_change_pct%.",
    expr=rising_floor("spark_driver_jvm_heap_used_bytes", "$min_growth", relative=True) + flat_state(APP_JOIN_LABELS),
    for_="1h",
    params=FLOOR_WITH_FLAT_STATE,
    meaning="The heap in use goes up and down with every collection; its floor (the lowest value over "
            "an hour) is what survives the collections. A floor that rises for hours is memory that is "
            "never released. A stateful query keeps its state in memory, so a rising floor is expected "
            "when the state grows; with the state rows flat (`spark_streaming_state_rows`), the state is "
            "ruled out, exactly as S3's war story ruled it out, and the rest is a leak. The floor is that of "
            "the driver (Spark's JvmSource); executors on a watched host show the same in "
            "`jvm_memory_space_used_bytes{space=\"old\"}` (JvmHeapFloorNearlyFull).",
    confirm=[
        "On the Spark dashboard: heap used (driver) and its floor rise; state rows are flat.",
        "`jcmd PID GC.class_histogram | head -30` twice, hours apart: the classes whose instance "
        "count grows (S3's war story: `HashMap$Node[]` of the AWS SDK).",
        "Threads and TCP connections of the JVM rising too (JVM dashboard) point at unclosed clients.",
    ],
    action="Enable `-XX:+HeapDumpOnOutOfMemoryError`, take two heap dumps hours apart "
           "(`jmap -dump:format=b,file=heap.hprof PID`) and compare their dominators; close the clients "
           "your `ForeachWriter`/`foreachBatch` opens.",
    story=Replay(
        "heap floor +5 MB a minute under a sawtooth, state rows flat at about 1,079 (S3's war story)",
        [(driver_heap_used(), values(LEAKING_HEAP)), (state_rows(), values(wiggle(1079, 10, 600)))],
        quiet=["350m"], fires="430m", failure="600m", failure_is="the heap peaks reach a 4.5 GB maximum: Java heap space",
        labels=[at(target="app", app_id="app-1", app_name="sessions")],
    ),
    healthy=[
        Replay("heap rising together with the state rows: the state grows, not a leak",
               [(driver_heap_used(), values(LEAKING_HEAP)), (state_rows(), "1000+10x600")], quiet=["7h", "10h"]),
        Replay("warm-up: the heap floor climbs from 0.1 to 1 GB in the first hour, then stays (flat state)",
               [(driver_heap_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 1e8 + 1.5e7 * min(t, 60)))),
                (state_rows(), values(wiggle(1079, 10, 600)))], quiet=["6h30m", "7h", "8h"]),
        Replay("a busy application: heap sawtooth with a flat floor, flat state",
               [(driver_heap_used(), values(saw(1e9, 3e9, 10, 600))), (state_rows(), values(wiggle(1079, 10, 600)))],
               quiet=["7h", "10h"]),
    ],
    evidence=dict(floor_evidence("spark_driver_jvm_heap_used_bytes", APP_JOIN_LABELS), **state_evidence(APP_JOIN_LABELS)),
)

JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE = Alert(
    name="JvmHeapFloorRisingWithFlatState", signature="S3", severity="warning", problem="heap",
    component="jvm",
    summary="A Spark JVM's heap floor rises while its application's state does not: a leak.",
    description="JVM {{ $labels.process }} (executor {{ $labels.executor_id }} of {{ $labels.app_id }}) on "
                "{{ $labels.instance }}: the lowest use of its old generation over $floor_window, after "
                "collections of it, rose by more than $min_growth_pct% in $trend_window, in both halves of "
                "it, while the application's streaming state rows changed by less than "
                "$max_state_change_pct%.",
    expr=rising_floor(OLD_SPACE_USED, "$min_growth", relative=True)
    + collected_in_every_floor_window('jvm_gc_collections_total{collector=~"$old_collector"}',
                                      JVM_SERIES_LABELS)
    + flat_state("app_id"),
    for_="1h",
    params=dict(FLOOR_WITH_FLAT_STATE,
                old_space=OLD_SPACE, old_collector=OLD_COLLECTOR),
    meaning="SparkHeapFloorRisingWithFlatState for every JVM the exporter reads that belongs to a Spark "
            "application: executors on worker hosts (where S3's war story leaked) as well as drivers. "
            "The old generation's lowest level over an hour is what survives the collections; when it "
            "rises for hours while the application's streaming state rows stay flat, the state is "
            "ruled out and the rest is a leak. Only windows in which the old generation was collected "
            "(a full collection or a G1 concurrent cycle, `jvm_gc_collections_total`) count: an executor's "
            "G1 old generation may fill with garbage for hours before its first concurrent cycle "
            "(at `-XX:InitiatingHeapOccupancyPercent`, 45% by default), a rise that is no leak. The JVM series (the jvm collector on the worker host) "
            "join the application's Spark series by `app_id`, which both carry; JVMs that belong to no "
            "application (no `app_id`) are not judged by this alert.",
    confirm=[
        "On the JVM dashboard: the executor's old generation and its floor rise; on the Spark dashboard "
        "the application's state rows are flat.",
        "`jcmd PID GC.class_histogram | head -30` on the executor twice, hours apart: the classes whose "
        "instance count grows.",
    ],
    action="Take two heap dumps of the executor hours apart (`jmap -dump:live,format=b,file=heap.hprof "
           "PID`) and compare their dominators; close the clients and caches your UDFs, "
           "`ForeachWriter` or `foreachBatch` open per row or per partition.",
    story=Replay(
        "an executor's old generation floor +5 MB a minute under a sawtooth, state rows flat (S3's war story)",
        [(executor_old_gen_used(), values(LEAKING_HEAP)), (executor_collections(), OLD_COLLECTIONS),
         (state_rows(), values(wiggle(1079, 10, 600)))],
        quiet=["350m"], fires="430m", failure="600m",
        failure_is="the heap peaks reach a 4.5 GB maximum: Java heap space",
        labels=[at(**EXECUTOR_JVM, space="old")],
    ),
    healthy=[
        Replay("the executor's heap rises together with the state rows: the state grows, not a leak",
               [(executor_old_gen_used(), values(LEAKING_HEAP)), (executor_collections(), OLD_COLLECTIONS),
                (state_rows(), "1000+10x600")],
               quiet=["7h", "10h"]),
        Replay("warm-up: the floor climbs in the first hour (cached data), then stays (flat state)",
               [(executor_old_gen_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 1e8 + 1.5e7 * min(t, 60)))),
                (executor_collections(), OLD_COLLECTIONS),
                (state_rows(), values(wiggle(1079, 10, 600)))], quiet=["6h30m", "7h", "8h"]),
        Replay("a leaking executor of another application, with no streaming state, beside a flat-state one",
               [(executor_old_gen_used(app_id="app-2"), values(LEAKING_HEAP)),
                (executor_collections(app_id="app-2"), OLD_COLLECTIONS),
                (state_rows(), values(wiggle(1079, 10, 600)))], quiet=["7h", "10h"]),
        Replay("a G1 executor below its initiating occupancy: young collections promote garbage into the old "
               "generation, which only fills (0.5 to 2 GB in 10 h), no concurrent cycle yet, state flat",
               [(executor_old_gen_used(), "5e8+2.5e6x600"),
                (executor_collections("G1 young collection pauses"), "0+1x600"),
                (executor_collections(), "0x600"), (executor_collections("G1 full collection pauses"), "0x600"),
                (state_rows(), values(wiggle(1079, 10, 600)))], quiet=["7h", "10h"]),
    ],
    evidence=dict(floor_evidence(OLD_SPACE_USED, JVM_SERIES_LABELS), **state_evidence("app_id")),
)

def predicted_floor(used: str) -> str:
    """The floor of ``used`` (its minimum over ``$floor_window``) extrapolated ``$horizon`` ahead at
    the pace it rose over ``$trend_window``."""
    return f"""(
  {floor(used)}
  + (
    {floor(used)}
    - {floor(used, "$trend_window")}
  ) * $horizon_s / $trend_window_s
)"""


JVM_HEAP_FLOOR_PREDICTED_FULL = Alert(
    name="JvmHeapFloorPredictedFull", signature="S3", severity="warning", problem="heap",
    component="jvm",
    summary="A JVM's heap floor rises fast enough to reach its maximum within hours: out of memory soon.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): the lowest use "
                "of its old generation ({{ $labels.space }}) over $floor_window, after collections of it, rose "
                "in both halves of the last $trend_window (by more than $min_growth_pct% in all); at that pace it "
                "reaches the old generation's maximum within $horizon.",
    expr=predicted_floor(OLD_SPACE_USED) + """
>= jvm_memory_space_max_bytes{space=~"$old_space"}
and
jvm_memory_space_max_bytes{space=~"$old_space"} > 0
and
""" + rising_floor(OLD_SPACE_USED, "$min_growth", relative=True)
    + collected_in_every_floor_window('jvm_gc_collections_total{collector=~"$old_collector"}', JVM_SERIES_LABELS),
    for_="30m",
    params={
        "floor_window": Param("1h", DURATION, "the heap floor is the minimum over this window; each such "
                                                "window must hold a collection of the old generation"),
        "trend_window": Param("2h", DURATION, "the pace of the floor is measured over this window"),
        "horizon": Param("12h", DURATION, "how far ahead the floor is extrapolated"),
        "min_growth": Param(0.1, NUMBER, "relative rise of the floor over the trend window (0.1 = 10%)"),
        "old_space": OLD_SPACE,
        "old_collector": OLD_COLLECTOR,
    },
    meaning="The early warning of a leak that kills within a day. JvmHeapFloorRisingWithFlatState compares "
            "floors 6 hours apart and waits an hour more: a leak that fills the heap in half a day would "
            "get a quarter of its course as warning at best. This alert measures the pace of the floor (what "
            "survives the collections of the old generation) over 2 hours and extrapolates it: when the "
            "floor reaches the maximum within 12 hours at that pace, the JVM will spend its time collecting "
            "and then fail with `Java heap space`, whatever grows (a leak, or state that outgrew the heap). "
            "Like JvmHeapFloorRisingWithFlatState it judges only floor windows in which the old generation "
            "was collected: a G1 old generation that only fills with garbage before its first concurrent "
            "cycle does not count. A warm-up that rises once and stays does not rise in both halves.",
    confirm=[
        "On the JVM dashboard: the old generation's floor rises in a straight line towards its maximum.",
        "`jcmd PID GC.class_histogram | head -30` twice, an hour apart: the classes whose instance count grows.",
        "The application's streaming state rows: rising with the floor (the state outgrows the heap) or flat "
        "(a leak: JvmHeapFloorRisingWithFlatState follows).",
    ],
    action="Take a heap dump now (`jmap -dump:live,format=b,file=heap.hprof PID`) and another an hour later; "
           "compare their dominators. Plan a restart of the JVM before the floor reaches the maximum; then fix "
           "the leak (close the clients and caches UDFs open per row or partition) or give the state the heap "
           "it needs.",
    story=Replay(
        "an executor's old generation floor +8 MB a minute under a sawtooth, 4.5 GB maximum: the peaks "
        "reach it after 7 hours (a leak that kills within a day)",
        [(executor_old_gen_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 5e8 + 8e6 * t))),
         (executor_old_gen_max(), "4.5e9x600"), (executor_collections(), OLD_COLLECTIONS)],
        quiet=["150m"], fires="210m", failure="435m",
        failure_is="the heap peaks reach the 4.5 GB maximum: Java heap space",
        labels=[at(**EXECUTOR_JVM, space="old")],
    ),
    healthy=[
        Replay("a slow leak (+1 MB a minute, full in days): JvmHeapFloorRisingWithFlatState's to warn of",
               [(executor_old_gen_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 1e9 + 1e6 * t))),
                (executor_old_gen_max(), "4.5e9x600"), (executor_collections(), OLD_COLLECTIONS)],
               quiet=["4h", "7h", "10h"]),
        Replay("warm-up: the floor climbs in the first hour (cached data), then stays",
               [(executor_old_gen_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 1e8 + 3e7 * min(t, 60)))),
                (executor_old_gen_max(), "4.5e9x600"), (executor_collections(), OLD_COLLECTIONS)],
               quiet=["1h", "2h", "3h", "5h"]),
        Replay("a G1 executor below its initiating occupancy: the old generation fills with garbage fast "
               "(1 to 4 GB in 5 h), no concurrent cycle yet",
               [(executor_old_gen_used(), "1e9+1e7x600"), (executor_old_gen_max(), "4.5e9x600"),
                (executor_collections("G1 young collection pauses"), "0+1x600"),
                (executor_collections(), "0x600"), (executor_collections("G1 full collection pauses"), "0x600")],
               quiet=["2h", "4h", "5h"]),
        Replay("a JVM whose maximum is unknown (-1)",
               [(executor_old_gen_used(), values(saw(0, 5e8, 10, 600, base=lambda t: 5e8 + 8e6 * t))),
                (executor_old_gen_max(), "-1x600"), (executor_collections(), OLD_COLLECTIONS)],
               quiet=["4h", "6h"]),
    ],
    evidence=dict(floor_evidence(OLD_SPACE_USED, JVM_SERIES_LABELS),
                  max=Evidence('jvm_memory_space_max_bytes{space=~"$old_space"}', JVM_SERIES_LABELS)),
)

JVM_HEAP_FLOOR_NEARLY_FULL = Alert(
    name="JvmHeapFloorNearlyFull", signature="S3", severity="critical", problem="heap-full",
    component="jvm",
    summary="A JVM's old generation stays nearly full even after collections: out of memory soon.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): "
                "the lowest use of its old generation ({{ $labels.space }}) over $window is above $ratio_pct% of "
                "its maximum. Expect \"GC overhead limit exceeded\" or \"Java heap space\".",
    expr="""
min_over_time(jvm_memory_space_used_bytes{space=~"$old_space"}[$window])
/ jvm_memory_space_max_bytes{space=~"$old_space"}
> $ratio
or
""" + driver_pools_as_jvm_series("""
min_over_time(spark_driver_jvm_memory_pool_used_bytes{pool=~"$old_pool"}[$window])
/ spark_driver_jvm_memory_pool_max_bytes{pool=~"$old_pool"}
> $ratio
""", "space"),
    for_="5m",
    params={
        "ratio": Param(0.9, NUMBER, "share of the old generation's maximum"),
        "window": Param("15m", DURATION, "the floor is the minimum over this window"),
        "old_space": OLD_SPACE,
        "old_pool": Param(".*old_gen|tenured_gen", REGEX, "pool label of the old generation (Spark JvmSource)"),
    },
    meaning="Objects that survive collections end in the old generation. When even its lowest level "
            "over a quarter of an hour is above 90% of its maximum, the collector runs back to back "
            "and frees almost nothing: the next step is `GC overhead limit exceeded` or `Java heap "
            "space` (S3's war story), or Livy refusing jobs (S1's war story).",
    confirm=[
        "`jstat -gcutil PID 5s`: O (old) stays high, FGC rises.",
        "GC time share on the JVM dashboard (JvmGcTimeHigh).",
    ],
    action="Take a heap dump now (`jmap -dump:live,format=b,file=heap.hprof PID`) before the JVM dies; "
           "then restart it with more heap only if the growth is explained (state, sessions), else "
           "follow the leak (SparkHeapFloorRisingWithFlatState).",
    story=Replay(
        "old generation floor rising 5 MB a minute under a sawtooth, 4 GB maximum",
        [(old_gen_used(), values(saw(0, 3e8, 10, 420, base=lambda t: 2e9 + 5e6 * t))), (old_gen_max(), "4e9x420")],
        quiet=["320m"], fires="360m", failure="415m", failure_is="the old generation's floor reaches its maximum: Java heap space",
        labels=[at(target="local", process="executor", space="old")],
    ),
    healthy=[
        Replay("a busy JVM: old generation fills to 97% and is collected back to 25%",
               [(old_gen_used(), values(saw(1e9, 3.9e9, 20, 420))), (old_gen_max(), "4e9x420")],
               quiet=["2h", "7h"]),
    ],
)

JVM_GC_TIME_HIGH = Alert(
    name="JvmGcTimeHigh", signature="S3", severity="warning", problem="gc", component="jvm",
    summary="A JVM spends a large share of its time in garbage collection.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) spent "
                "more than $ratio_pct% of the last $window collecting garbage.",
    expr=f"sum by ({JVM_SERIES_LABELS}) (rate(jvm_gc_seconds_total[$window])) > $ratio",
    for_="15m",
    params={"ratio": Param(0.2, NUMBER, "share of wall-clock time spent in GC"),
            "window": Param("10m", DURATION, "rate window")},
    meaning="GC seconds per second is the share of time the JVM collects instead of working. It rises "
            "when the live heap approaches the maximum (a leak, or state that outgrew the heap); at "
            "98% HotSpot throws `GC overhead limit exceeded` (S3's war story).",
    confirm=["`jstat -gcutil PID 5s`: GCT grows fast, O stays high after full collections.",
             "Heap floor on the JVM dashboard: rising means a leak (S3), flat means undersized heap."],
    action="Check the heap floor and the state rows (SparkHeapFloorRisingWithFlatState); G1 "
           "(`-XX:+UseG1GC`) removed the GC-overhead errors in S3's war story but not the leak.",
    story=Replay(
        "GC share jumps from 2% to 30% as the heap fills",
        [(old_gen_gc_seconds(), "0+1.2x120 144+18x180")],
        quiet=["2h"], fires="150m", labels=[at(target="local", process="executor")],
    ),
    healthy=[Replay("a busy JVM collecting 5% of the time", [(old_gen_gc_seconds(), "0+3x300")], quiet=["2h", "5h"])],
)

SPARK_EXECUTOR_GC_TIME_HIGH = Alert(
    name="SparkExecutorGcTimeHigh", signature="S3", severity="warning", problem="gc", component="spark",
    summary="A Spark executor spends a large share of its task time in garbage collection.",
    description="Executor {{ $labels.executor_id }} of {{ $labels.app_name }} ({{ $labels.app_id }}, "
                "target {{ $labels.target }}) spent more than $ratio_pct% of its task time in GC over "
                "the last $window.",
    expr=f"""
sum by ({APP_SERIES_LABELS}, executor_id) (rate(spark_executor_gc_seconds_total[$window]))
/ sum by ({APP_SERIES_LABELS}, executor_id) (rate(spark_executor_run_seconds_total[$window]))
> $ratio
and
sum by ({APP_SERIES_LABELS}, executor_id) (rate(spark_executor_run_seconds_total[$window])) > 0
""",
    for_="15m",
    params={"ratio": Param(0.2, NUMBER, "share of task time spent in GC"),
            "window": Param("15m", DURATION, "rate window")},
    meaning="Spark reports, per executor, the task time and the GC time within it (the Executors tab). "
            "A rising share means the executor's heap is too full to work in: a leak (S3's war story), "
            "state that outgrew the heap, or a batch too large for it (S4's war story's backlog).",
    confirm=["Executors tab of the Spark UI: GC time against task time.",
             "The executor's heap floor (`jvm_memory_space_used_bytes{space=\"old\"}` if the exporter "
             "runs on its host) rising."],
    action="If the floor rises with flat state, follow the leak; if a batch is too large, cap it "
           "(`maxOffsetsPerTrigger`); otherwise give the executors more memory.",
    story=Replay(
        "GC share of task time goes from 5% to 33%",
        [(executor_run_seconds(), "0+60x300"), (executor_gc_seconds(), "0+3x120 360+20x180")],
        quiet=["2h"], fires="150m",
        labels=[at(target="app", app_id="app-1", app_name="sessions", executor_id="1")],
    ),
    healthy=[Replay("four busy cores, 5% of task time in GC",
                    [(executor_run_seconds(), "0+240x300"), (executor_gc_seconds(), "0+12x300")], quiet=["2h", "5h"])],
)

JVM_THREADS_LEAKING = Alert(
    name="JvmThreadsLeaking", signature="S3", severity="warning", problem="threads-leak", component="jvm",
    summary="A JVM's thread count floor keeps rising: threads are leaking.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): its "
                "lowest live thread count over $floor_window rose by more than $min_increase in "
                "$trend_window, steadily (in both halves of it).",
    expr=rising_floor("jvm_threads_live", "$min_increase"),
    for_="30m",
    params={"floor_window": Param("30m", DURATION, "the floor is the minimum over this window"),
            "trend_window": Param("6h", DURATION, "compared with the floor this long ago"),
            "min_increase": Param(200, NUMBER, "threads")},
    meaning="Thread pools grow and shrink with load; their floor does not rise for hours. A rising "
            "floor is a thread started per task, per partition or per client and never stopped; seed "
            "002's AWS credentials provider started one per HTTP client that was never closed.",
    confirm=["Two thread dumps hours apart: `jcmd PID Thread.print | grep '^\"' | sort | uniq -c`.",
             "`jvm_process_tcp_connections` and `jvm_process_open_fds` rising in step."],
    action="Close the clients or executors you create per partition (`ForeachWriter.close`, "
           "`foreachBatch`), or share one per JVM.",
    story=Replay("one thread leaked every minute", [(live_threads(), "100+1x480")],
                 quiet=["350m"], fires="400m", labels=[at(target="local", process="executor")]),
    healthy=[Replay("a busy thread pool growing to 300 and shrinking back every 10 minutes",
                    [(live_threads(), values(saw(100, 300, 10, 480)))], quiet=["7h", "8h"]),
             Replay("warm-up: pools grow to 600 threads in the first hour, then stay",
                    [(live_threads(), "20+10x60 620x420")], quiet=["6h30m", "7h", "8h"])],
    evidence=floor_evidence("jvm_threads_live", JVM_SERIES_LABELS),
)

JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED = Alert(
    name="JvmFileDescriptorsPredictedExhausted", signature="S3", severity="warning", problem="fds",
    component="jvm",
    summary="A JVM's open file descriptors are growing towards its limit.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) uses more "
                "than $min_ratio_pct% of its file descriptors and, at the trend of the last $window, runs "
                "out within $horizon.",
    expr=predicted_exhaustion("jvm_process_open_fds", "jvm_process_max_fds") + """
and
jvm_process_open_fds / jvm_process_max_fds > $min_ratio
""",
    for_="15m",
    params={"window": Param("1h", DURATION, "the trend is fitted over this window"),
            "horizon": Param("4h", DURATION, "how far ahead"),
            "min_ratio": Param(0.5, NUMBER, "share of the limit in use before the trend counts")},
    meaning="Every socket is a file descriptor; connections opened and never closed (S3's war story's HTTP "
            "clients) grow them until `Too many open files`.",
    confirm=["`ls /proc/PID/fd | wc -l` against `grep 'open files' /proc/PID/limits`.",
             "`ss -tanp | grep PID | awk '{print $1}' | sort | uniq -c`: sockets by state."],
    action="Close the connections (clients) you open; raise `LimitNOFILE=` only to buy time.",
    story=Replay("100 descriptors leaked a minute, limit 65,536",
                 [(open_fds(), "1000+100x600"), (max_fds(), "65536x600")],
                 quiet=["400m"], fires="425m", failure="645m", failure_is="Too many open files",
        labels=[at(target="local", process="executor")]),
    healthy=[Replay("a busy server holding 40,000 descriptors, steady",
                    [(open_fds(), "40000x600"), (max_fds(), "65536x600")], quiet=["3h", "9h"])],
    evidence={"open_fds": Evidence("jvm_process_open_fds", JVM_SERIES_LABELS),
              "max_fds": Evidence("jvm_process_max_fds", JVM_SERIES_LABELS)},
)

ALERTS: List[Alert] = [
    JVM_THREADS_PREDICTED_TO_HIT_LIMIT,
    SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE,
    JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE,
    JVM_HEAP_FLOOR_PREDICTED_FULL,
    JVM_HEAP_FLOOR_NEARLY_FULL,
    JVM_GC_TIME_HIGH,
    SPARK_EXECUTOR_GC_TIME_HIGH,
    JVM_THREADS_LEAKING,
    JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED,
]
