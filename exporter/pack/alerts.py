"""Every alert of the pack: expression, parameters, texts, and its replays.

One definition per alert. From it come the rule (``rules.py``), its runbook,
its promtool tests (the war story must fire, and not too early; the healthy or
busy series must stay quiet) and the Alertmanager inhibitions.
"""

from __future__ import annotations

from typing import Dict, List

from .model import Alert, Param, Replay, at, saw, series, values, wiggle

D = "duration"
N = "number"

LIVY_TERMINAL = "success|dead|killed|error"
JOIN_LIVY = Param("process", "labels",
                  "labels that join livy_recovery_sessions (its 'process' is the Livy target's `process`) "
                  "with the jvm_process_* series of the Livy JVM")
CODE_POOLS = Param("codeheap_.*|code_?cache", "regex",
                   "Spark JvmSource memory pools (pool label) that are code cache heaps")

JL = "job, instance, target, process, app_id, executor_id, pid"  # a local JVM
APP = "job, instance, target, app_id, app_name"  # a Spark application


def _livy() -> List[Alert]:
    sess = lambda state, kind="batch": series("livy_sessions", target="livy", kind=kind, state=state)  # noqa: E731
    age = lambda kind="batch": series("livy_finished_session_oldest_age_seconds", target="livy", kind=kind)  # noqa: E731
    return [
        Alert(
            name="LivyFinishedSessionsPilingUp", signature="S1", severity="warning", problem="livy-sessions",
            component="livy",
            summary="Livy keeps more and more finished sessions; it will run out of memory.",
            description="Livy {{ $labels.target }} on {{ $labels.instance }} holds more than $min_finished finished "
                        "{{ $labels.kind }} sessions, $min_growth or more of them added in the last $window: "
                        "nobody deletes them and the retention does not remove them.",
            expr=f"""
sum by (job, instance, target, kind) (livy_sessions{{state=~"{LIVY_TERMINAL}"}}) > $min_finished
and
sum by (job, instance, target, kind) (delta(livy_sessions{{state=~"{LIVY_TERMINAL}"}}[$window])) >= $min_growth
""",
            for_="1h",
            params={
                "min_finished": Param(200, N, "finished (success, dead, killed, error) sessions Livy may hold"),
                "min_growth": Param(50, N, "finished sessions added over the window that count as piling up"),
                "window": Param("6h", D, "how far back the growth is measured"),
            },
            meaning="Livy keeps a session, with its log, after it finished until a client DELETEs it or the "
                    "retention removes it. Terminal sessions that keep growing for hours mean neither happens; "
                    "each costs Livy heap (and a ZooKeeper entry in recovery mode, see S2), so the server ends "
                    "up out of memory and refuses every job. Running sessions are load, not this problem: "
                    "the alert counts only sessions in a terminal state.",
            confirm=[
                "`curl -s http://LIVY:8998/batches?size=0` shows `total`; compare with "
                "`sum by (state) (livy_sessions{target=\"...\"})` on the Livy dashboard: the terminal states "
                "dominate and grow.",
                "`livy_finished_session_oldest_age_seconds` keeps rising past the retention you expect.",
                "Check Livy's `livy.conf`: `livy.server.session.state-retain.sec` (0.4+) or "
                "`livy.server.session.timeout` (0.3).",
            ],
            action="Find the client that does not DELETE finished sessions (the `name`/`owner` of the "
                   "finished batches shows it) and make it DELETE them; delete the backlog now with "
                   "`curl -X DELETE http://LIVY:8998/batches/<id>` for each finished id.",
            story=Replay(
                "a scheduler submits a batch every minute and never DELETEs it (seed 000)",
                [(sess("success"), "0+1x720"), (sess("dead"), "0x720"), (sess("running"), "2x720")],
                quiet=["3h"], fires="5h", failure="666h", failure_is="Livy out of memory at the war story's 40,000 sessions",
                labels=[at(target="livy", kind="batch")],
            ),
            healthy=[
                Replay("500 running sessions, finished ones removed by the 10-minute retention",
                       [(sess("running"), "500x720"), (sess("success"), values(wiggle(40, 5, 720)))],
                       quiet=["4h", "8h", "12h"]),
                Replay("load growing: running sessions rise all day, finished ones stay bounded",
                       [(sess("running"), "0+1x720"), (sess("success"), values(saw(0, 60, 10, 720)))],
                       quiet=["6h", "12h"]),
            ],
        ),
        Alert(
            name="LivyFinishedSessionsNotCollected", signature="S1", severity="warning", problem="livy-sessions",
            component="livy",
            summary="Livy keeps finished sessions for longer than its retention should allow.",
            description="The oldest finished {{ $labels.kind }} session of Livy {{ $labels.target }} on "
                        "{{ $labels.instance }} has been finished for more than $max_age: Livy does not "
                        "garbage-collect finished sessions and no client deletes them.",
            expr="max by (job, instance, target, kind) (livy_finished_session_oldest_age_seconds) > $max_age_s",
            for_="15m",
            params={"max_age": Param("1h", D, "how long a finished session may stay (Livy's retention plus margin)")},
            meaning="Livy reports no timestamps; the exporter measures how long it has seen each session in a "
                    "terminal state. With a working retention (`livy.server.session.state-retain.sec`, 600 s by "
                    "default) the oldest finished session never gets older than the retention plus a minute. "
                    "An age that keeps growing is the 24-day timeout of the war story: every finished session "
                    "stays, and they accumulate (S1) and get recovered at every restart (S2). After an exporter "
                    "restart the age starts from zero again, so the alert can only be late, never early.",
            confirm=[
                "On the Livy dashboard, `livy_finished_session_oldest_age_seconds` rises linearly.",
                "`livy_finished_sessions_older_than_retention` is above zero.",
                "`grep -E 'state-retain|session.timeout' livy.conf`.",
            ],
            action="Lower the retention to minutes (`livy.server.session.state-retain.sec`, or "
                   "`livy.server.session.timeout` on 0.3) and restart Livy once the recovery backlog is safe (S2).",
            story=Replay(
                "the 24-day timeout: the first finished session is never removed",
                [(age(), "0+60x300")],
                quiet=["1h"], fires="1h20m", labels=[at(target="livy", kind="batch")],
            ),
            healthy=[
                Replay("busy Livy with the default 10-minute retention: ages cycle below 11 minutes",
                       [(age(), values(saw(0, 660, 12, 300))), (age("interactive"), values(saw(0, 600, 11, 300)))],
                       quiet=["2h", "5h"]),
            ],
        ),
        Alert(
            name="LivyRestartWouldExhaustThreads", signature="S2", severity="critical", problem="livy-restart",
            component="zookeeper",
            summary="A Livy restart now would exceed the thread limit and fail.",
            description="Livy process {{ $labels.process }}: the sessions in its recovery store exceed $ratio_pct% "
                        "of the threads it can still start (its thread headroom under RLIMIT_NPROC, pids.max and "
                        "threads-max). A restart "
                        "starts one thread per recovered session and dies with \"unable to create new native "
                        "thread\". Do not restart Livy before the store is cleaned.",
            expr="""
sum by ($join) (livy_recovery_sessions)
> on ($join)
$ratio * min by ($join) (jvm_process_thread_headroom{process=~"$livy_process"})
""",
            for_="5m",
            params={
                "ratio": Param(0.9, N, "share of the thread headroom (limit minus threads in use) that the recovered sessions may take"),
                "livy_process": Param("livy|LivyServer", "regex", "the process label of the Livy JVM in jvm_process_*"),
                "join": JOIN_LIVY,
            },
            meaning="In recovery mode Livy stores every session in ZooKeeper (or a directory) and, when it starts, "
                    "recovers each and starts one monitoring thread per batch. The thread limit that kills it "
                    "is the per-user `RLIMIT_NPROC` (which counts every thread of the Livy user) or the "
                    "container's `pids.max` (or the kernel's `threads-max`), not the heap. The exporter's "
                    "`jvm_process_thread_headroom` is what is left under the tightest of them (limit minus the "
                    "threads already counted against it); the sessions a restart would recover must fit in it. "
                    "This alert fires when they nearly do not, before anyone restarts.",
            confirm=[
                "`livy_recovery_sessions` by kind (Livy dashboard), or in ZooKeeper: `zkCli.sh stat /livy/v1/batch` "
                "(numChildren - 1 is the sessions stored).",
                "The Livy user's limit: `grep processes /proc/$(pgrep -f LivyServer)/limits`, and its threads: "
                "`ps -L -u livy --no-headers | wc -l`.",
                "In a container: `cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids.current`.",
            ],
            action="Do not restart Livy. While it runs, DELETE finished sessions through its REST API (that removes "
                   "their ZooKeeper entries too). If Livy is already down, delete the entries of long-gone jobs "
                   "under `/livy/v1/batch` before starting it, or raise the limit for the Livy service.",
            story=Replay(
                "the recovery store grows by 20 sessions a minute (seed 001's 40,000 sessions, compressed)",
                [(series("livy_recovery_sessions", target="zk", kind="batch", process="livy"), "1000+20x300"),
                 (series("livy_recovery_sessions", target="zk", kind="interactive", process="livy"), "0x300"),
                 (series("jvm_process_thread_headroom", target="local", process="livy"), "3296x300")],
                quiet=["90m"], fires="105m", failure="115m", failure_is="the stored sessions exceed the thread headroom: a restart dies",
                labels=[{"process": "livy"}],
            ),
            healthy=[
                Replay("a busy Livy: 2,000 threads in use, a small store kept clean by DELETEs",
                       [(series("livy_recovery_sessions", target="zk", kind="batch", process="livy"),
                         values(wiggle(100, 20, 300))),
                        (series("jvm_process_thread_headroom", target="local", process="livy"),
                         values(wiggle(2096, 50, 300)))],
                       quiet=["1h", "5h"]),
            ],
        ),
        Alert(
            name="LivyRestartRiskRising", signature="S2", severity="warning", problem="livy-restart",
            component="zookeeper",
            summary="Livy's recovery store is growing towards what a restart could survive.",
            description="Livy process {{ $labels.process }}: at the growth of the last $window, the sessions in its "
                        "recovery store will exceed $ratio_pct% of its thread headroom within $horizon. A restart "
                        "after that will fail.",
            expr="""
sum by ($join) (predict_linear(livy_recovery_sessions[$window], $horizon_s))
> on ($join)
$ratio * min by ($join) (jvm_process_thread_headroom{process=~"$livy_process"})
""",
            for_="1h",
            params={
                "ratio": Param(0.9, N, "share of the thread headroom"),
                "window": Param("6h", D, "the trend is fitted over this window"),
                "horizon": Param("3d", D, "how far ahead the trend is extrapolated"),
                "livy_process": Param("livy|LivyServer", "regex", "the process label of the Livy JVM"),
                "join": JOIN_LIVY,
            },
            meaning="The same sum as LivyRestartWouldExhaustThreads, extrapolated: the store grows by every "
                    "session nobody deletes, so the day a restart fails can be predicted days ahead.",
            confirm=[
                "`deriv(livy_recovery_sessions[6h]) * 86400` is the growth per day.",
                "The finished sessions of S1 (LivyFinishedSessionsPilingUp) are usually why.",
            ],
            action="Fix what fills the store (S1: DELETE finished sessions, lower the retention) before the "
                   "next planned restart.",
            story=Replay(
                "a quiet store, then a scheduler that stops deleting its batches",
                [(series("livy_recovery_sessions", target="zk", kind="batch", process="livy"), "100x180 100+5x420"),
                 (series("jvm_process_thread_headroom", target="local", process="livy"), "3296x600")],
                quiet=["3h"], fires="5h", failure="819m", failure_is="the stored sessions exceed the thread headroom: a restart dies",
                labels=[{"process": "livy"}],
            ),
            healthy=[
                Replay("a steady store (sessions added and deleted) under a busy Livy",
                       [(series("livy_recovery_sessions", target="zk", kind="batch", process="livy"), "500x600"),
                        (series("jvm_process_thread_headroom", target="local", process="livy"), "1596x600")],
                       quiet=["4h", "10h"]),
            ],
        ),
    ]


def _threads() -> List[Alert]:
    hr = lambda: series("jvm_process_thread_headroom", target="local", process="executor")  # noqa: E731
    lim = lambda: series("jvm_process_thread_limit", target="local", process="executor")  # noqa: E731
    return [
        Alert(
            name="JvmThreadsNearLimit", signature="S2", severity="critical", problem="threads", component="jvm",
            summary="A JVM's user is about to hit its thread limit.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): the "
                        "threads counted against its limits (RLIMIT_NPROC of its user, its cgroup's pids.max, the "
                        "kernel's threads-max) leave less than $min_headroom_ratio_pct% of the limit free. The next threads will fail with \"unable to create new "
                        "native thread\".",
            expr=f"""
min by ({JL}) (jvm_process_thread_headroom)
< on ({JL})
$min_headroom_ratio * min by ({JL}) (jvm_process_thread_limit)
""",
            for_="5m",
            params={"min_headroom_ratio": Param(0.1, N, "headroom left, as a share of the thread limit")},
            meaning="`RLIMIT_NPROC` counts every thread of every process of the user, and `pids.max` every "
                    "thread of the cgroup; a JVM that cannot start a thread throws "
                    "`OutOfMemoryError: unable to create new native thread` whatever its free heap. A thread "
                    "leak (S3: an HTTP client per partition, never closed) or a Livy restart recovering "
                    "thousands of sessions (S2) ends here.",
            confirm=[
                "`grep processes /proc/PID/limits` and `ps -L -u USER --no-headers | wc -l`.",
                "`jcmd PID Thread.print | grep '^\"' | sed 's/[-#0-9]*\" .*//' | sort | uniq -c | sort -rn | head`: "
                "which thread names multiply.",
            ],
            action="Find what starts the threads (the thread names) and stop it; raise the limit "
                   "(`LimitNPROC=`, `ulimit -u`, the pod's pids limit) only to buy time.",
            story=Replay(
                "a streaming executor leaks 10 threads a minute (unclosed clients, seed 002)",
                [(hr(), "3096-10x400"), (lim(), "4096x400")],
                quiet=["260m"], fires="280m", failure="310m", failure_is="no thread headroom left: unable to create new native thread",
                labels=[at(target="local", process="executor")],
            ),
            healthy=[
                Replay("a busy JVM with 3,000 threads, steady",
                       [(hr(), values(wiggle(1096, 40, 400))), (lim(), "4096x400")],
                       quiet=["1h", "6h"]),
            ],
        ),
        Alert(
            name="JvmThreadsPredictedToHitLimit", signature="S3", severity="warning", problem="threads",
            component="jvm",
            summary="A JVM's threads are growing towards its thread limit.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): at the "
                        "trend of the last $window, the threads counted against its limit reach it within $horizon.",
            expr=f"min by ({JL}) (predict_linear(jvm_process_thread_headroom[$window], $horizon_s)) < 0",
            for_="15m",
            params={
                "window": Param("1h", D, "the trend is fitted over this window"),
                "horizon": Param("4h", D, "how far ahead the trend is extrapolated"),
            },
            meaning="Threads that grow steadily are leaking: a client or a pool created per task or per "
                    "partition and never closed (seed 002's HTTP client). Extrapolated, the trend says when "
                    "the JVM will fail to start a thread, hours before JvmThreadsNearLimit pages.",
            confirm=[
                "`jvm_threads_live` and `jvm_process_threads` on the JVM dashboard rise without falling back.",
                "Two thread dumps (`jcmd PID Thread.print`) a few minutes apart: the names that multiply.",
                "`jvm_process_tcp_connections` rising too points at clients that are never closed.",
            ],
            action="Find the thread names that multiply and close what creates them (for seed 002, the HTTP "
                   "client of the Kinesis client in `ForeachWriter.close`).",
            story=Replay(
                "a streaming executor leaks 10 threads a minute (unclosed clients, seed 002)",
                [(hr(), "3096-10x400"), (lim(), "4096x400")],
                quiet=["1h"], fires="90m", failure="310m", failure_is="no thread headroom left: unable to create new native thread",
                labels=[at(target="local", process="executor")],
            ),
            healthy=[
                Replay("a busy JVM with 3,000 threads, steady",
                       [(hr(), values(wiggle(1096, 20, 400)))], quiet=["2h", "6h"]),
            ],
        ),
    ]


def _heap() -> List[Alert]:
    heap = lambda: series("spark_driver_jvm_heap_used_bytes", target="app", app_id="app-1", app_name="sessions")  # noqa: E731
    rows = lambda: series("spark_streaming_state_rows", target="app", app_id="app-1", app_name="sessions",  # noqa: E731
                          query="sessionize")
    leak = saw(0, 5e8, 10, 600, base=lambda t: 1e9 + 5e6 * t)
    old_used = lambda: series("jvm_memory_space_used_bytes", target="local", process="executor", space="old")  # noqa: E731
    old_max = lambda: series("jvm_memory_space_max_bytes", target="local", process="executor", space="old")  # noqa: E731
    gc = lambda: series("jvm_gc_seconds_total", target="local", process="executor", collector="G1 Old Generation")  # noqa: E731
    exgc = lambda: series("spark_executor_gc_seconds_total", target="app", app_id="app-1", app_name="sessions",  # noqa: E731
                          executor_id="1")
    exrun = lambda: series("spark_executor_run_seconds_total", target="app", app_id="app-1", app_name="sessions",  # noqa: E731
                           executor_id="1")
    thr = lambda: series("jvm_threads_live", target="local", process="executor")  # noqa: E731
    fds = lambda: series("jvm_process_open_fds", target="local", process="executor")  # noqa: E731
    maxfds = lambda: series("jvm_process_max_fds", target="local", process="executor")  # noqa: E731
    return [
        Alert(
            name="SparkHeapFloorRisingWithFlatState", signature="S3", severity="warning", problem="heap",
            component="spark",
            summary="A streaming application's heap floor rises while its state does not: a leak.",
            description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}): "
                        "the driver's lowest heap over $floor_window rose by more than $min_growth_pct% in "
                        "$trend_window, in both halves of it, while its streaming state rows changed by less than $max_state_change_pct%.",
            expr="""
(
  min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window])
  - min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window] offset $trend_window_half)
)
/ min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window] offset $trend_window)
> $min_growth / 2
and
(
  min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window] offset $trend_window_half)
  - min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window] offset $trend_window)
)
/ min_over_time(spark_driver_jvm_heap_used_bytes[$floor_window] offset $trend_window)
> $min_growth / 2
and on (job, instance, target, app_id)
max by (job, instance, target, app_id) (
  abs(spark_streaming_state_rows - spark_streaming_state_rows offset $trend_window)
  / clamp_min(spark_streaming_state_rows offset $trend_window, 1)
)
< $max_state_change
""",
            for_="1h",
            params={
                "floor_window": Param("1h", D, "the heap floor is the minimum over this window"),
                "trend_window": Param("6h", D, "the floor now is compared with the floor this long ago"),
                "min_growth": Param(0.25, N, "relative rise of the heap floor (0.25 = 25%)"),
                "max_state_change": Param(0.1, N, "relative change of the state rows that still counts as flat"),
            },
            meaning="The heap in use goes up and down with every collection; its floor (the lowest value over "
                    "an hour) is what survives the collections. A floor that rises for hours is memory that is "
                    "never released. A stateful query keeps its state in memory, so a rising floor is expected "
                    "when the state grows; with the state rows flat (`spark_streaming_state_rows`), the state is "
                    "ruled out, exactly as seed 002 ruled it out, and the rest is a leak. The floor is that of "
                    "the driver (Spark's JvmSource); executors on a watched host show the same in "
                    "`jvm_memory_space_used_bytes{space=\"old\"}` (JvmHeapFloorNearlyFull).",
            confirm=[
                "On the Spark dashboard: heap used (driver) and its floor rise; state rows are flat.",
                "`jcmd PID GC.class_histogram | head -30` twice, hours apart: the classes whose instance "
                "count grows (seed 002: `HashMap$Node[]` of the AWS SDK).",
                "Threads and TCP connections of the JVM rising too (JVM dashboard) point at unclosed clients.",
            ],
            action="Enable `-XX:+HeapDumpOnOutOfMemoryError`, take two heap dumps hours apart "
                   "(`jmap -dump:format=b,file=heap.hprof PID`) and compare their dominators; close the clients "
                   "your `ForeachWriter`/`foreachBatch` opens.",
            story=Replay(
                "heap floor +5 MB a minute under a sawtooth, state rows flat at about 1,079 (seed 002)",
                [(heap(), values(leak)), (rows(), values(wiggle(1079, 10, 600)))],
                quiet=["350m"], fires="430m", failure="600m", failure_is="the heap peaks reach a 4.5 GB maximum: Java heap space",
                labels=[at(target="app", app_id="app-1", app_name="sessions")],
            ),
            healthy=[
                Replay("heap rising together with the state rows: the state grows, not a leak",
                       [(heap(), values(leak)), (rows(), "1000+10x600")], quiet=["7h", "10h"]),
                Replay("warm-up: the heap floor climbs from 0.1 to 1 GB in the first hour, then stays (flat state)",
                       [(heap(), values(saw(0, 5e8, 10, 600, base=lambda t: 1e8 + 1.5e7 * min(t, 60)))),
                        (rows(), values(wiggle(1079, 10, 600)))], quiet=["6h30m", "7h", "8h"]),
                Replay("a busy application: heap sawtooth with a flat floor, flat state",
                       [(heap(), values(saw(1e9, 3e9, 10, 600))), (rows(), values(wiggle(1079, 10, 600)))],
                       quiet=["7h", "10h"]),
            ],
        ),
        Alert(
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
label_replace(label_replace(
  min_over_time(spark_driver_jvm_memory_pool_used_bytes{pool=~"$old_pool"}[$window])
  / spark_driver_jvm_memory_pool_max_bytes{pool=~"$old_pool"}
  > $ratio,
"space", "$1", "pool", "(.*)"), "process", "driver", "", "")
""",
            for_="5m",
            params={
                "ratio": Param(0.9, N, "share of the old generation's maximum"),
                "window": Param("15m", D, "the floor is the minimum over this window"),
                "old_space": Param("old|tenured", "regex", "space label of the old generation (jvm collector)"),
                "old_pool": Param(".*old_gen|tenured_gen", "regex", "pool label of the old generation (Spark JvmSource)"),
            },
            meaning="Objects that survive collections end in the old generation. When even its lowest level "
                    "over a quarter of an hour is above 90% of its maximum, the collector runs back to back "
                    "and frees almost nothing: the next step is `GC overhead limit exceeded` or `Java heap "
                    "space` (seed 002), or Livy refusing jobs (seed 000).",
            confirm=[
                "`jstat -gcutil PID 5s`: O (old) stays high, FGC rises.",
                "GC time share on the JVM dashboard (JvmGcTimeHigh).",
            ],
            action="Take a heap dump now (`jmap -dump:live,format=b,file=heap.hprof PID`) before the JVM dies; "
                   "then restart it with more heap only if the growth is explained (state, sessions), else "
                   "follow the leak (SparkHeapFloorRisingWithFlatState).",
            story=Replay(
                "old generation floor rising 5 MB a minute under a sawtooth, 4 GB maximum",
                [(old_used(), values(saw(0, 3e8, 10, 420, base=lambda t: 2e9 + 5e6 * t))), (old_max(), "4e9x420")],
                quiet=["320m"], fires="360m", failure="415m", failure_is="the old generation's floor reaches its maximum: Java heap space",
                labels=[at(target="local", process="executor", space="old")],
            ),
            healthy=[
                Replay("a busy JVM: old generation fills to 97% and is collected back to 25%",
                       [(old_used(), values(saw(1e9, 3.9e9, 20, 420))), (old_max(), "4e9x420")],
                       quiet=["2h", "7h"]),
            ],
        ),
        Alert(
            name="JvmGcTimeHigh", signature="S3", severity="warning", problem="gc", component="jvm",
            summary="A JVM spends a large share of its time in garbage collection.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) spent "
                        "more than $ratio_pct% of the last $window collecting garbage.",
            expr=f"sum by ({JL}) (rate(jvm_gc_seconds_total[$window])) > $ratio",
            for_="15m",
            params={"ratio": Param(0.2, N, "share of wall-clock time spent in GC"),
                    "window": Param("10m", D, "rate window")},
            meaning="GC seconds per second is the share of time the JVM collects instead of working. It rises "
                    "when the live heap approaches the maximum (a leak, or state that outgrew the heap); at "
                    "98% HotSpot throws `GC overhead limit exceeded` (seed 002).",
            confirm=["`jstat -gcutil PID 5s`: GCT grows fast, O stays high after full collections.",
                     "Heap floor on the JVM dashboard: rising means a leak (S3), flat means undersized heap."],
            action="Check the heap floor and the state rows (SparkHeapFloorRisingWithFlatState); G1 "
                   "(`-XX:+UseG1GC`) removed the GC-overhead errors in seed 002 but not the leak.",
            story=Replay(
                "GC share jumps from 2% to 30% as the heap fills",
                [(gc(), "0+1.2x120 144+18x180")],
                quiet=["2h"], fires="150m", labels=[at(target="local", process="executor")],
            ),
            healthy=[Replay("a busy JVM collecting 5% of the time", [(gc(), "0+3x300")], quiet=["2h", "5h"])],
        ),
        Alert(
            name="SparkExecutorGcTimeHigh", signature="S3", severity="warning", problem="gc", component="spark",
            summary="A Spark executor spends a large share of its task time in garbage collection.",
            description="Executor {{ $labels.executor_id }} of {{ $labels.app_name }} ({{ $labels.app_id }}, "
                        "target {{ $labels.target }}) spent more than $ratio_pct% of its task time in GC over "
                        "the last $window.",
            expr=f"""
sum by ({APP}, executor_id) (rate(spark_executor_gc_seconds_total[$window]))
/ sum by ({APP}, executor_id) (rate(spark_executor_run_seconds_total[$window]))
> $ratio
and
sum by ({APP}, executor_id) (rate(spark_executor_run_seconds_total[$window])) > 0
""",
            for_="15m",
            params={"ratio": Param(0.2, N, "share of task time spent in GC"),
                    "window": Param("15m", D, "rate window")},
            meaning="Spark reports, per executor, the task time and the GC time within it (the Executors tab). "
                    "A rising share means the executor's heap is too full to work in: a leak (seed 002), "
                    "state that outgrew the heap, or a batch too large for it (seed 003's backlog).",
            confirm=["Executors tab of the Spark UI: GC time against task time.",
                     "The executor's heap floor (`jvm_memory_space_used_bytes{space=\"old\"}` if the exporter "
                     "runs on its host) rising."],
            action="If the floor rises with flat state, follow the leak; if a batch is too large, cap it "
                   "(`maxOffsetsPerTrigger`); otherwise give the executors more memory.",
            story=Replay(
                "GC share of task time goes from 5% to 33%",
                [(exrun(), "0+60x300"), (exgc(), "0+3x120 360+20x180")],
                quiet=["2h"], fires="150m",
                labels=[at(target="app", app_id="app-1", app_name="sessions", executor_id="1")],
            ),
            healthy=[Replay("four busy cores, 5% of task time in GC",
                            [(exrun(), "0+240x300"), (exgc(), "0+12x300")], quiet=["2h", "5h"])],
        ),
        Alert(
            name="JvmThreadsLeaking", signature="S3", severity="warning", problem="threads-leak", component="jvm",
            summary="A JVM's thread count floor keeps rising: threads are leaking.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): its "
                        "lowest live thread count over $floor_window rose by more than $min_increase in "
                        "$trend_window, steadily (in both halves of it).",
            expr="""
min_over_time(jvm_threads_live[$floor_window])
- min_over_time(jvm_threads_live[$floor_window] offset $trend_window_half)
> $min_increase / 2
and
min_over_time(jvm_threads_live[$floor_window] offset $trend_window_half)
- min_over_time(jvm_threads_live[$floor_window] offset $trend_window)
> $min_increase / 2
""",
            for_="30m",
            params={"floor_window": Param("30m", D, "the floor is the minimum over this window"),
                    "trend_window": Param("6h", D, "compared with the floor this long ago"),
                    "min_increase": Param(200, N, "threads")},
            meaning="Thread pools grow and shrink with load; their floor does not rise for hours. A rising "
                    "floor is a thread started per task, per partition or per client and never stopped; seed "
                    "002's AWS credentials provider started one per HTTP client that was never closed.",
            confirm=["Two thread dumps hours apart: `jcmd PID Thread.print | grep '^\"' | sort | uniq -c`.",
                     "`jvm_process_tcp_connections` and `jvm_process_open_fds` rising in step."],
            action="Close the clients or executors you create per partition (`ForeachWriter.close`, "
                   "`foreachBatch`), or share one per JVM.",
            story=Replay("one thread leaked every minute", [(thr(), "100+1x480")],
                         quiet=["350m"], fires="400m", labels=[at(target="local", process="executor")]),
            healthy=[Replay("a busy thread pool growing to 300 and shrinking back every 10 minutes",
                            [(thr(), values(saw(100, 300, 10, 480)))], quiet=["7h", "8h"]),
                     Replay("warm-up: pools grow to 600 threads in the first hour, then stay",
                            [(thr(), "20+10x60 620x420")], quiet=["6h30m", "7h", "8h"])],
        ),
        Alert(
            name="JvmFileDescriptorsPredictedExhausted", signature="S3", severity="warning", problem="fds",
            component="jvm",
            summary="A JVM's open file descriptors are growing towards its limit.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) uses more "
                        "than $min_ratio_pct% of its file descriptors and, at the trend of the last $window, runs "
                        "out within $horizon.",
            expr="""
predict_linear(jvm_process_open_fds[$window], $horizon_s) > jvm_process_max_fds
and
jvm_process_open_fds / jvm_process_max_fds > $min_ratio
""",
            for_="15m",
            params={"window": Param("1h", D, "the trend is fitted over this window"),
                    "horizon": Param("4h", D, "how far ahead"),
                    "min_ratio": Param(0.5, N, "share of the limit in use before the trend counts")},
            meaning="Every socket is a file descriptor; connections opened and never closed (seed 002's HTTP "
                    "clients) grow them until `Too many open files`.",
            confirm=["`ls /proc/PID/fd | wc -l` against `grep 'open files' /proc/PID/limits`.",
                     "`ss -tanp | grep PID | awk '{print $1}' | sort | uniq -c`: sockets by state."],
            action="Close the connections (clients) you open; raise `LimitNOFILE=` only to buy time.",
            story=Replay("100 descriptors leaked a minute, limit 65,536",
                         [(fds(), "1000+100x600"), (maxfds(), "65536x600")],
                         quiet=["400m"], fires="425m", failure="645m", failure_is="Too many open files",
                labels=[at(target="local", process="executor")]),
            healthy=[Replay("a busy server holding 40,000 descriptors, steady",
                            [(fds(), "40000x600"), (maxfds(), "65536x600")], quiet=["3h", "9h"])],
        ),
    ]


def _streaming() -> List[Alert]:
    q = dict(target="app", app_id="app-1", app_name="pipeline", query="events")
    inp = lambda: series("spark_streaming_input_rows_per_second", **q)  # noqa: E731
    proc = lambda: series("spark_streaming_processed_rows_per_second", **q)  # noqa: E731
    dur = lambda: series("spark_streaming_batch_duration_seconds", **q)  # noqa: E731
    varying = lambda n, c, a: values(c + a * ((t * 7919) % 13 - 6) / 6 for t in range(n + 1))  # noqa: E731
    return [
        Alert(
            name="SparkStreamingQueryStalled", signature="S4", severity="critical", problem="streaming-progress",
            component="spark",
            summary="A streaming query stopped making progress.",
            description="Query {{ $labels.query }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                        "{{ $labels.target }}) has reported the same progress for $window while input was arriving: "
                        "no batch has completed.",
            expr="""
changes(spark_streaming_input_rows_per_second[$window]) == 0
and changes(spark_streaming_batch_duration_seconds[$window]) == 0
and spark_streaming_input_rows_per_second > 0
""",
            for_="5m",
            params={"window": Param("10m", D, "how long the progress may stay frozen: several trigger intervals "
                                             "(not scaled by time_scale)", scales=False)},
            meaning="Spark's streaming source reports the figures of the last completed batch (input and "
                    "processing rate, duration). While batches complete they change every batch; an idle "
                    "query reports zero input. Figures frozen at a non-zero input rate mean the running batch "
                    "never finishes: a stuck task, a sink that hangs, an executor that is gone.",
            confirm=["Spark UI, Structured Streaming tab: the query's last batch and its start time.",
                     "Jobs tab: the running job of that batch and its stuck stage (`spark_job_oldest_active_age_seconds`).",
                     "Driver log: exceptions of the query."],
            action="Find the stuck stage (thread dump of its executor: `jcmd PID Thread.print`), fix or kill it; "
                   "if the query must be restarted, it resumes from its checkpoint.",
            story=Replay(
                "a pipeline whose batch hangs after an hour",
                [(inp(), varying(60, 1000, 200) + " 1200x60"), (dur(), varying(60, 20, 5) + " 25x60")],
                quiet=["70m"], fires="80m", labels=[at(**q)],
            ),
            healthy=[
                Replay("a busy pipeline, progress every batch", [(inp(), varying(120, 5000, 1000)),
                                                                (dur(), varying(120, 30, 10))], quiet=["1h", "2h"]),
                Replay("an idle query: no input, nothing to do", [(inp(), "0x120"), (dur(), "0x120")],
                       quiet=["1h", "2h"]),
            ],
        ),
        Alert(
            name="SparkStreamingBatchSlowerThanTrigger", signature="S4", severity="warning",
            problem="streaming-latency", component="spark",
            summary="A streaming query's batches take longer than its trigger interval.",
            description="Every batch of query {{ $labels.query }} of {{ $labels.app_name }} ({{ $labels.app_id }}, "
                        "target {{ $labels.target }}) in the last $window took longer than $trigger_interval.",
            expr="min_over_time(spark_streaming_batch_duration_seconds[$window]) > $trigger_interval_s",
            for_="15m",
            params={"trigger_interval": Param("1m", D, "the queries' trigger interval (select queries with other "
                                                       "triggers with the alert's selector; not scaled by "
                                                       "time_scale)", scales=False),
                    "window": Param("15m", D, "every batch in this window was slower")},
            meaning="A micro-batch that takes longer than the trigger interval delays the next one: latency "
                    "grows, and a backlog (after downtime, seed 003) makes every batch bigger still.",
            confirm=["Structured Streaming tab: batch duration against the trigger.",
                     "Input rate against processing rate (SparkStreamingFallingBehind)."],
            action="Cap the batch size (`maxOffsetsPerTrigger` for Kafka), add executors, or lengthen the trigger.",
            story=Replay("batches slow down by a second every minute",
                         [(dur(), "20x60 20+1x120")], quiet=["110m"], fires="135m", labels=[at(**q)]),
            healthy=[Replay("30-second batches with an occasional 90-second one",
                            [(dur(), values(90 if t % 10 == 0 else 30 for t in range(181)))], quiet=["1h", "3h"])],
        ),
        Alert(
            name="SparkStreamingFallingBehind", signature="S4", severity="warning", problem="streaming-lag",
            component="spark",
            summary="A streaming query processes rows slower than they arrive.",
            description="Query {{ $labels.query }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                        "{{ $labels.target }}) processed less than $ratio_pct% of its input rate over the last $window.",
            expr="""
avg_over_time(spark_streaming_processed_rows_per_second[$window])
< $ratio * avg_over_time(spark_streaming_input_rows_per_second[$window])
and
avg_over_time(spark_streaming_input_rows_per_second[$window]) > $min_input_rate
""",
            for_="30m",
            params={"ratio": Param(0.9, N, "processing rate as a share of the input rate"),
                    "window": Param("30m", D, "averaging window"),
                    "min_input_rate": Param(0, N, "rows per second below which the query is ignored")},
            meaning="The processing rate is the rows of a batch over its duration; the input rate the rows "
                    "over the time since the previous batch. Processing slower than input for half an hour "
                    "means the backlog grows: the query will fall hours behind (and after downtime it never "
                    "catches up).",
            confirm=["Structured Streaming tab: input rate against process rate.",
                     "The source's lag (Kafka consumer offsets) grows."],
            action="Add executors or partitions, cap batches (`maxOffsetsPerTrigger`), or find the slow stage.",
            story=Replay("processing slows from 2,000 to under 900 rows/s against 1,000 rows/s input",
                         [(inp(), "1000x240"), (proc(), "2000x60 2000-20x180")],
                         quiet=["120m"], fires="170m", labels=[at(**q)]),
            healthy=[
                Replay("busy: 5,000 rows/s in, 6,000 rows/s processing", [(inp(), varying(240, 5000, 500)),
                                                                           (proc(), varying(240, 6000, 500))],
                       quiet=["2h", "4h"]),
                Replay("idle", [(inp(), "0x240"), (proc(), "0x240")], quiet=["2h", "4h"]),
            ],
        ),
    ]


def _classes_codecache() -> List[Alert]:
    cls = lambda: series("jvm_classes_currently_loaded", target="local", process="SparkSubmit")  # noqa: E731
    used = lambda heap="CodeCache": series("jvm_codecache_used_bytes", target="local", process="SparkSubmit", heap=heap)  # noqa: E731
    cmax = lambda heap="CodeCache": series("jvm_codecache_max_bytes", target="local", process="SparkSubmit", heap=heap)  # noqa: E731
    MB = 1024 * 1024
    jit = lambda: series("jvm_jit_compilation_enabled", target="local", process="SparkSubmit")  # noqa: E731
    dpool = lambda f: series(f"spark_driver_jvm_memory_pool_{f}_bytes", target="app", app_id="app-1",  # noqa: E731
                             app_name="rules", pool="codeheap_non_profiled_nmethods")
    cc_expr = """
jvm_codecache_used_bytes / jvm_codecache_max_bytes > $ratio
or
label_replace(label_replace(
  spark_driver_jvm_memory_pool_used_bytes{pool=~"$code_pools"}
  / spark_driver_jvm_memory_pool_max_bytes{pool=~"$code_pools"}
  > $ratio,
"heap", "$1", "pool", "(.*)"), "process", "driver", "", "")
"""
    return [
        Alert(
            name="JvmLoadedClassesRising", signature="S5", severity="warning", problem="classes", component="jvm",
            summary="A JVM's loaded classes keep rising: classes are not unloaded.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): its "
                        "lowest loaded-class count over $floor_window rose by more than $min_increase in "
                        "$trend_window, steadily (in both halves of it).",
            expr="""
min_over_time(jvm_classes_currently_loaded[$floor_window])
- min_over_time(jvm_classes_currently_loaded[$floor_window] offset $trend_window_half)
> $min_increase / 2
and
min_over_time(jvm_classes_currently_loaded[$floor_window] offset $trend_window_half)
- min_over_time(jvm_classes_currently_loaded[$floor_window] offset $trend_window)
> $min_increase / 2
""",
            for_="1h",
            params={"floor_window": Param("1h", D, "the floor is the minimum over this window"),
                    "trend_window": Param("6h", D, "compared with the floor this long ago"),
                    "min_increase": Param(10000, N, "classes")},
            meaning="Generated code (Spark's codegen, compiled rules) loads classes all the time; they are "
                    "unloaded when nothing references them. A floor that keeps rising means something holds "
                    "them: in seed 004, Spark's ContextCleaner fell behind and millions of pending cleanup "
                    "references kept broadcasts, and their classes, alive. Next comes the full code cache.",
            confirm=["`jcmd PID VM.classloader_stats` or `jcmd PID GC.class_histogram | head`: "
                     "`CleanupTaskWeakReference`/`CleanAccum` counts in the millions point at the cleaner.",
                     "The application's cleaner settings (SparkCleanerSettingsRisky) and active jobs."],
            action="Shorten `spark.cleaner.periodicGC.interval` and set "
                   "`spark.cleaner.referenceTracking.blocking=false`; restart the driver to recover now.",
            story=Replay("50 classes a minute never unloaded (seed 004)", [(cls(), "20000+50x540")],
                         quiet=["350m"], fires="430m", labels=[at(target="local", process="SparkSubmit")]),
            healthy=[Replay("busy codegen: 5,000 classes loaded and unloaded every 10 minutes",
                            [(cls(), values(saw(30000, 35000, 10, 540)))], quiet=["7h", "9h"]),
                     Replay("warm-up: 25,000 classes loaded in the first hour, then flat",
                            [(cls(), "2000+400x60 26000x480")], quiet=["6h30m", "7h", "8h"])],
        ),
        Alert(
            name="JvmCodeCachePredictedFull", signature="S5", severity="warning", problem="codecache",
            component="jvm",
            summary="A JVM's JIT code cache is filling up; compilation will be disabled.",
            description="Code cache heap {{ $labels.heap }} of JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) is more "
                        "than $min_ratio_pct% used and, at the trend of the last $window, full within $horizon.",
            expr="""
predict_linear(jvm_codecache_used_bytes[$window], $horizon_s) >= jvm_codecache_max_bytes
and jvm_codecache_used_bytes / jvm_codecache_max_bytes > $min_ratio
or
label_replace(label_replace(
  predict_linear(spark_driver_jvm_memory_pool_used_bytes{pool=~"$code_pools"}[$window], $horizon_s)
  >= spark_driver_jvm_memory_pool_max_bytes{pool=~"$code_pools"}
  and spark_driver_jvm_memory_pool_used_bytes{pool=~"$code_pools"}
  / spark_driver_jvm_memory_pool_max_bytes{pool=~"$code_pools"}
  > $min_ratio,
"heap", "$1", "pool", "(.*)"), "process", "driver", "", "")
""",
            for_="15m",
            params={"window": Param("1h", D, "the trend is fitted over this window"),
                    "horizon": Param("6h", D, "how far ahead"),
                    "min_ratio": Param(0.5, N, "share used before the trend counts"),
                    "code_pools": CODE_POOLS},
            meaning="The JIT compiles hot methods into the code cache (`-XX:ReservedCodeCacheSize`, per heap when "
                    "segmented). When a heap has no contiguous space left, HotSpot prints `CodeCache is full. "
                    "Compiler has been disabled` and runs interpreted from then on: everything slows down "
                    "(seed 004). Read from the attach mechanism (jvm collector, opt-in) or from Spark's "
                    "JvmSource pools of the driver.",
            confirm=["`jcmd PID Compiler.codecache`: used against size per heap, `full_count`.",
                     "Loaded classes rising too (JvmLoadedClassesRising): the generated code is never freed."],
            action="Find why compiled code keeps growing (S5: classes that are never unloaded); "
                   "a larger `-XX:ReservedCodeCacheSize` is a stopgap.",
            story=Replay("the code cache grows 0.5 MB a minute towards 240 MB",
                         [(used(), f"{100 * MB}+{MB // 2}x300"), (cmax(), f"{240 * MB}x300")],
                         quiet=["30m"], fires="60m",
                         failure="280m", failure_is="the code cache is full: compilation disabled",
                labels=[at(target="local", process="SparkSubmit", heap="CodeCache")]),
            healthy=[Replay("a warmed-up JVM: half of the code cache, steady",
                            [(used(), f"{120 * MB}x300"), (cmax(), f"{240 * MB}x300"),
                             (used("non-nmethods"), f"{4 * MB}x300"), (cmax("non-nmethods"), f"{6 * MB}x300")],
                            quiet=["2h", "5h"])],
        ),
        Alert(
            name="JvmCodeCacheNearlyFull", signature="S5", severity="critical", problem="codecache",
            component="jvm",
            summary="A JVM's JIT code cache is nearly full; compilation is about to be disabled.",
            description="Code cache heap {{ $labels.heap }} of JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) is more "
                        "than $ratio_pct% used.",
            expr=cc_expr,
            for_="5m",
            params={"ratio": Param(0.95, N, "share of the code cache heap used"), "code_pools": CODE_POOLS},
            meaning="See JvmCodeCachePredictedFull: at this level the next compilations will not fit and the JIT "
                    "will be switched off.",
            confirm=["`jcmd PID Compiler.codecache`."],
            action="Plan a restart of the JVM (it resets the code cache) in a quiet moment before the JIT is "
                   "disabled; then fix the growth.",
            story=Replay("the code cache grows 0.5 MB a minute towards 240 MB (read by attach, and from the "
                         "driver's JvmSource pool)",
                         [(used(), f"{100 * MB}+{MB // 2}x300"), (cmax(), f"{240 * MB}x300"),
                          (dpool("used"), f"{100 * MB}+{MB // 2}x300"), (dpool("max"), f"{240 * MB}x300")],
                         quiet=["255m"], fires="265m",
                         failure="280m", failure_is="the code cache is full: compilation disabled",
                labels=[at(target="local", process="SparkSubmit", heap="CodeCache"),
                                 at(target="app", app_id="app-1", app_name="rules", pool="codeheap_non_profiled_nmethods",
                                    heap="codeheap_non_profiled_nmethods", process="driver")]),
            healthy=[Replay("a busy JVM at 80% of its code cache",
                            [(used(), f"{192 * MB}x300"), (cmax(), f"{240 * MB}x300")], quiet=["1h", "5h"])],
        ),
        Alert(
            name="JvmJitCompilationDisabled", signature="S5", severity="critical", problem="codecache",
            component="jvm",
            summary="A JVM's JIT compiler is disabled: it runs interpreted and slows down.",
            description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}) reports "
                        "\"compilation: disabled\": its code cache is full.",
            expr="jvm_jit_compilation_enabled == 0",
            for_="1m",
            params={},
            meaning="HotSpot disables the JIT when the code cache has no contiguous space left. It does not "
                    "turn it back on; the JVM stays slow until it is restarted (seed 004).",
            confirm=["`jcmd PID Compiler.codecache` ends with `compilation: disabled (not enough contiguous free "
                     "space left)`; the JVM's stdout has `CodeCache is full`."],
            action="Restart the JVM in a controlled way; then fix the growth (S5).",
            story=Replay("compilation disabled after the code cache filled",
                         [(jit(), "1x30 0x30")], quiet=["30m"], fires="35m",
                         labels=[at(target="local", process="SparkSubmit")]),
            healthy=[Replay("compilation enabled", [(jit(), "1x60")], quiet=["30m", "1h"])],
        ),
    ]


def _jobs() -> List[Alert]:
    a = dict(target="app", app_id="app-1", app_name="sparkmachine")
    jobs = lambda: series("spark_jobs_active", **a)  # noqa: E731
    oldest = lambda: series("spark_job_oldest_active_age_seconds", **a)  # noqa: E731
    dropped = lambda: series("spark_listener_dropped_events_total", queue="appStatus", **a)  # noqa: E731
    interval = lambda: series("spark_cleaner_periodic_gc_interval_seconds", **a)  # noqa: E731
    blocking = lambda: series("spark_cleaner_reference_tracking_blocking", **a)  # noqa: E731
    uptime = lambda: series("spark_app_uptime_seconds", **a)  # noqa: E731
    pile = [(0 if t < 120 else (t - 120) // 2) + t % 5 for t in range(301)]
    return [
        Alert(
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
            params={"max_jobs": Param(20, N, "active jobs"), "window": Param("30m", D, "the floor window")},
            meaning="A service that runs many small jobs has a changing number of active jobs, but the fewest "
                    "active jobs over half an hour does not keep rising. When it does, jobs finish slower than "
                    "they arrive: in seed 004 the driver was slowed by the ContextCleaner backlog and a "
                    "disabled JIT.",
            confirm=["Jobs tab of the Spark UI: active jobs and their durations.",
                     "Driver JVM: loaded classes, code cache, GC time (JVM dashboard)."],
            action="Look for the S5 signals (classes, code cache, cleaner settings) and for a stage that blocks.",
            story=Replay("jobs start piling up after two hours (seed 004)", [(jobs(), values(pile))],
                         quiet=["3h"], fires="230m", labels=[at(**a)]),
            healthy=[Replay("a busy service: 30 to 40 jobs active all the time",
                            [(jobs(), values(saw(30, 40, 7, 300)))], quiet=["2h", "5h"])],
        ),
        Alert(
            name="SparkJobRunningTooLong", signature="S5", severity="warning", problem="jobs", component="spark",
            summary="A Spark job has been running far longer than jobs of this application should.",
            description="The oldest active job of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                        "{{ $labels.target }}) has been running for more than $max_age.",
            expr="max by (job, instance, target, app_id, app_name) (spark_job_oldest_active_age_seconds) > $max_age_s",
            for_="5m",
            params={"max_age": Param("1h", D, "longest expected job (set per application with the selector)")},
            meaning="Seed 004's team first noticed \"one or two Spark jobs that were running for quite a long "
                    "time\" whenever the service slowed down. A job far over its usual duration is stuck or "
                    "starved.",
            confirm=["Jobs tab: the job, its stages and their tasks.", "Thread dump of the executor that runs the "
                                                                        "slow task."],
            action="Kill the job if it is stuck (`Kill` link in the UI); check S5 signals if every job is slow.",
            story=Replay("short jobs, then one that never ends",
                         [(oldest(), values(saw(0, 60, 5, 60)) + " 0+60x120")],
                         quiet=["115m"], fires="130m", labels=[at(**a)]),
            healthy=[Replay("a busy service: jobs of up to two minutes", [(oldest(), values(saw(0, 120, 3, 180)))],
                            quiet=["1h", "3h"])],
        ),
        Alert(
            name="SparkListenerEventsDropped", signature="S5", severity="warning", problem="listener",
            component="spark",
            summary="Spark's listener bus dropped events: the UI, metrics and cleanup fall behind.",
            description="Queue {{ $labels.queue }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                        "{{ $labels.target }}) dropped events in the last $window.",
            expr="sum by (job, instance, target, app_id, app_name, queue) "
                 "(increase(spark_listener_dropped_events_total[$window])) > 0",
            for_="0m",
            params={"window": Param("10m", D, "window for the increase")},
            meaning="Listeners run on queues of `spark.scheduler.listenerbus.eventqueue.capacity` (10,000) events; "
                    "a listener slower than the event rate fills its queue and Spark drops events. The UI "
                    "then shows jobs that never end and the figures this exporter reads go wrong.",
            confirm=["Driver log: `Dropping event from queue`.", "`spark_listener_queue_events` by queue."],
            action="Raise `spark.scheduler.listenerbus.eventqueue.<queue>.capacity`, remove slow listeners, "
                   "and reduce the number of tiny jobs/tasks.",
            story=Replay("the appStatus queue overflows after an hour",
                         [(dropped(), "0x60 0+100x60")], quiet=["60m"], fires="65m",
                         labels=[at(queue="appStatus", **a)]),
            healthy=[Replay("no events dropped", [(dropped(), "0x120")], quiet=["1h", "2h"])],
        ),
        Alert(
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
            params={"ratio": Param(0.8, N, "share of the queue's capacity"),
                    "window": Param("10m", D, "the queue never emptied below the ratio in this window")},
            meaning="A listener that cannot keep up leaves its queue full; once it is full Spark drops events "
                    "(SparkListenerEventsDropped). A queue that stays above 80% for ten minutes is the step "
                    "before: the driver is overloaded with events (many tiny jobs and tasks, seed 004) or a "
                    "listener is slow.",
            confirm=["`spark_listener_queue_events` by queue on the Spark dashboard.",
                     "Driver thread dump: what the `spark-listener-group-<queue>` thread is doing."],
            action="Remove or speed up the slow listener; raise the queue's capacity "
                   "(`spark.scheduler.listenerbus.eventqueue.<queue>.capacity`) as a stopgap.",
            story=Replay("the appStatus queue stays nearly full for an hour, then overflows",
                         [(series("spark_listener_queue_events", queue="appStatus", **a),
                           values(saw(0, 2000, 5, 60)) + " " + values(saw(8500, 9500, 5, 59)) + " 10000x40"),
                          (series("spark_listener_queue_capacity", queue="appStatus", **a), "10000x160")],
                         quiet=["65m"], fires="80m", failure="121m",
                         failure_is="the queue is full: events are dropped",
                         labels=[at(queue="appStatus", **a)]),
            healthy=[Replay("a busy queue: bursts to 9,000 events drained every few minutes",
                            [(series("spark_listener_queue_events", queue="appStatus", **a),
                              values(saw(0, 9000, 4, 160))),
                             (series("spark_listener_queue_capacity", queue="appStatus", **a), "10000x160")],
                            quiet=["1h", "2h"])],
        ),
        Alert(
            name="SparkCleanerSettingsRisky", signature="S5", severity="warning", problem="cleaner",
            component="spark",
            summary="A long-running Spark application runs with the cleaner settings that failed seed 004.",
            description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}) "
                        "has run for more than $min_uptime with spark.cleaner.periodicGC.interval above "
                        "$max_periodic_gc_interval or spark.cleaner.referenceTracking.blocking=true.",
            expr=f"""
count by ({APP}) (
  spark_cleaner_periodic_gc_interval_seconds > $max_periodic_gc_interval_s
  or
  spark_cleaner_reference_tracking_blocking == 1
)
and on (job, instance, target, app_id)
spark_app_uptime_seconds > $min_uptime_s
""",
            for_="10m",
            params={"max_periodic_gc_interval": Param("10m", D, "longest safe periodic GC interval (not scaled by time_scale)",
                                                      scales=False),
                    "min_uptime": Param("1d", D, "applications running longer than this are long-running")},
            meaning="Spark's ContextCleaner frees broadcasts, shuffles and accumulators once the driver's GC "
                    "has collected their handles. With the defaults (periodic GC every 30 minutes, blocking "
                    "cleanup) a driver that creates many short-lived objects falls behind; in seed 004 that "
                    "kept millions of cleanup references and their classes alive until the code cache filled. "
                    "This is a ticket to check a long-running service's settings, not an outage.",
            confirm=["Environment tab of the Spark UI: `spark.cleaner.periodicGC.interval`, "
                     "`spark.cleaner.referenceTracking.blocking`.",
                     "Loaded classes and jobs of the application (JvmLoadedClassesRising, SparkJobsPilingUp)."],
            action="Set `spark.cleaner.periodicGC.interval=3min` and `spark.cleaner.referenceTracking.blocking=false` "
                   "for long-running services (disable this alert for applications you have judged safe).",
            story=Replay("a service with the defaults (30min, blocking) runs for days",
                         [(interval(), "1800x1600"), (blocking(), "1x1600"), (uptime(), "0+60x1600")],
                         quiet=["23h"], fires="25h", labels=[at(**a)]),
            healthy=[
                Replay("a long-running service with the seed 004 fix (3min, non-blocking)",
                       [(interval(), "180x1600"), (blocking(), "0x1600"), (uptime(), "0+60x1600")],
                       quiet=["25h", "26h"]),
                Replay("a short batch application with the defaults",
                       [(interval(), "1800x960"), (blocking(), "1x960"), (uptime(), "0+60x960")],
                       quiet=["10h", "16h"]),
            ],
        ),
    ]


TARGET_KINDS = (
    # kind, alert name, severity, what it means when it is down
    ("spark", "SparkTargetDown", "critical",
     "A Spark driver UI that does not answer usually means the application is gone: it finished, crashed or "
     "was killed (seed 003: nobody was told). A history server that is down hides every application."),
    ("livy", "LivyTargetDown", "critical",
     "Livy not answering means no job can be submitted; if it died of memory, S1 is likely, and its restart "
     "may fail (S2)."),
    ("zookeeper", "ZookeeperTargetDown", "warning",
     "The ZooKeeper that holds Livy's recovery state cannot be read: Livy's recovery and the S2 alerts are blind."),
    ("jvm", "JvmTargetDown", "warning",
     "The local JVMs of this host cannot be read (no performance data, permission denied, a watched process "
     "is gone): the JVM alerts (S2, S3, S5) are blind."),
)


def _targets() -> List[Alert]:
    out = []
    for kind, name, severity, meaning in TARGET_KINDS:
        up = series("sparkwatch_target_up", kind=kind, target="t1")
        out.append(Alert(
            name=name, signature="targets", severity=severity, problem="target-down", component=kind,
            summary=f"A {kind} target of sparkwatch cannot be scraped.",
            description=f"The {kind} target {{{{ $labels.target }}}} of the exporter {{{{ $labels.instance }}}} "
                        "(job {{ $labels.job }}) could not be scraped for $for_duration; its alerts are blind.",
            expr=f'sparkwatch_target_up{{kind="{kind}"}} == 0',
            for_="2m",
            params={},
            meaning=meaning + " The exporter's landing page and `sparkwatch_target_scrape_errors_total{reason}` "
                              "say why the last scrape failed (timeout, connection, auth, invalid_response...).",
            confirm=["Open the exporter's landing page (`http://EXPORTER:9951/`): the target's last error.",
                     "`increase(sparkwatch_target_scrape_errors_total[10m])` by reason."],
            action="Restart or repair the target; if it is healthy, fix the exporter's configuration for it.",
            story=Replay(f"the {kind} target stops answering after 30 minutes", [(up, "1x30 0x30")],
                         quiet=["31m"], fires="35m", labels=[at(kind=kind, target="t1")]),
            healthy=[Replay("up, with one failed scrape", [(up, "1x10 0 1x30")], quiet=["11m", "30m"])],
        ))
    out.append(Alert(
        name="SparkwatchExporterDown", signature="targets", severity="critical", problem="exporter-down",
        component="exporter",
        summary="Prometheus cannot scrape the sparkwatch exporter.",
        description="Prometheus could not scrape {{ $labels.instance }} (job {{ $labels.job }}) for $for_duration: "
                    "every sparkwatch alert for its targets is blind.",
        expr="up{$exporter_matchers} == 0",
        for_="5m",
        params={"exporter_matchers": Param('job=~".*sparkwatch.*"', "matchers",
                                           "label matchers that select the exporter's scrape jobs in `up`")},
        meaning="`up` is Prometheus' own record of the scrape. When the exporter is down no target metric "
                "arrives, and the trend alerts cannot fire.",
        confirm=["Prometheus' Targets page: the scrape error.", "`systemctl status sparkwatch` or the container's logs."],
        action="Restart the exporter; check that its scrape deadline fits Prometheus' scrape_timeout.",
        story=Replay("the exporter dies after 10 minutes", [('up{job="sparkwatch",instance="sparkhost:9951"}', "1x10 0x20")],
                     quiet=["12m"], fires="20m", labels=[at()]),
        healthy=[Replay("the exporter answers", [('up{job="sparkwatch",instance="sparkhost:9951"}', "1x30")],
                        quiet=["10m", "30m"])],
    ))
    procs = series("jvm_processes", target="livy")
    out.append(Alert(
        name="JvmWatchedProcessMissing", signature="targets", severity="warning", problem="target-down",
        component="jvm",
        summary="A JVM that sparkwatch is configured to watch is not running.",
        description="The jvm target {{ $labels.target }} of the exporter {{ $labels.instance }} finds no process "
                    "matching its configuration for $for_duration: the process it watches (Livy, a driver...) is gone.",
        expr="jvm_processes == 0",
        for_="5m",
        params={},
        meaning="A `jvm` entry with `match:` watches one named process (the Livy server, a long-running driver). "
                "When nothing matches, the process has exited or was never started: for a Spark driver that is "
                "the application gone (S4), for Livy no job can be submitted; and every JVM alert about it is blind.",
        confirm=["`pgrep -af <the entry's match pattern>` on the host.",
                 "The exporter's landing page lists the target and what it watches."],
        action="Restart the process, or fix the entry's `match` pattern if the command line changed.",
        story=Replay("the watched Livy JVM exits after 20 minutes", [(procs, "1x20 0x20")],
                     quiet=["22m"], fires="30m", labels=[at(target="livy")]),
        healthy=[Replay("the watched JVM restarts once (one scrape without it)", [(procs, "1x10 0 1x20")],
                        quiet=["11m", "20m"])],
    ))
    src = lambda source: series("spark_metrics_source_enabled", target="app", app_id="app-1",  # noqa: E731
                                app_name="pipeline", source=source)
    out.append(Alert(
        name="SparkMetricsSourceDisabled", signature="targets", severity="warning", problem="blind-spot",
        component="spark",
        summary="A Spark metrics source the alerts need is off: its signatures are invisible.",
        description="Application {{ $labels.app_name }} ({{ $labels.app_id }}, target {{ $labels.target }}) runs "
                    "without the {{ $labels.source }} metrics source: the alerts that read it cannot fire.",
        expr="spark_metrics_source_enabled == 0",
        for_="15m",
        params={},
        meaning="Two Spark metrics sources are off by default. Without `spark.sql.streaming.metricsEnabled=true` "
                "(source=streaming) no streaming query reports its rates, batch duration or state rows, so S3's "
                "flat-state check and every S4 alert are blind (seed 002 ruled out its state this way). Without "
                "the driver's JvmSource (source=jvm) the driver heap and code cache pools are missing (S3, S5).",
        confirm=["Environment tab of the Spark UI: `spark.sql.streaming.metricsEnabled`, "
                 "`spark.metrics.conf.*.source.jvm.class`.",
                 "`curl -s http://DRIVER:4040/metrics/json/ | grep -c streaming`."],
        action="Start the application with `--conf spark.sql.streaming.metricsEnabled=true` and "
               "`--conf spark.metrics.conf.*.source.jvm.class=org.apache.spark.metrics.source.JvmSource` "
               "(or the same lines in `spark-defaults.conf`).",
        story=Replay("a streaming application started without streaming metrics",
                     [(src("streaming"), "0x60"), (src("jvm"), "1x60")], quiet=["10m"], fires="20m",
                     labels=[at(target="app", app_id="app-1", app_name="pipeline", source="streaming")]),
        healthy=[Replay("both sources on", [(src("streaming"), "1x60"), (src("jvm"), "1x60")], quiet=["20m", "1h"])],
    ))
    return out


ALERTS: List[Alert] = (_livy() + _threads() + _heap() + _streaming() + _classes_codecache() + _jobs()
                       + _targets())
BY_NAME: Dict[str, Alert] = {a.name: a for a in ALERTS}
assert len(BY_NAME) == len(ALERTS), "duplicate alert names"
