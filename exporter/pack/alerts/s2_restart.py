"""S2, a Livy restart becomes impossible: the sessions a restart would recover
against the Livy JVM's thread headroom, and any JVM close to its thread limit
(S2's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, LABELS, NUMBER, REGEX, Alert, Param, Replay, at, series, values, wiggle
from ..expressions import JVM_SERIES_LABELS, predicted

JOIN_LIVY = Param("process", LABELS,
                  "labels that join livy_recovery_sessions (its 'process' is the Livy target's `process`) "
                  "with the jvm_process_* series of the Livy JVM")


def recovery_sessions(kind: str = "batch") -> str:
    return series("livy_recovery_sessions", target="zk", kind=kind, process="livy")


def livy_thread_headroom() -> str:
    return series("jvm_process_thread_headroom", target="local", process="livy")


def executor_thread_headroom() -> str:
    return series("jvm_process_thread_headroom", target="local", process="executor")


def executor_thread_limit() -> str:
    return series("jvm_process_thread_limit", target="local", process="executor")


LIVY_RESTART_WOULD_EXHAUST_THREADS = Alert(
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
        "ratio": Param(0.9, NUMBER, "share of the thread headroom (limit minus threads in use) that the recovered sessions may take"),
        "livy_process": Param("livy|LivyServer", REGEX, "the process label of the Livy JVM in jvm_process_*"),
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
        "the recovery store grows by 20 sessions a minute (S2's war story's 40,000 sessions, compressed)",
        [(recovery_sessions(), "1000+20x300"), (recovery_sessions("interactive"), "0x300"),
         (livy_thread_headroom(), "3296x300")],
        quiet=["90m"], fires="105m", failure="115m", failure_is="the stored sessions exceed the thread headroom: a restart dies",
        labels=[{"process": "livy"}],
    ),
    healthy=[
        Replay("a busy Livy: 2,000 threads in use, a small store kept clean by DELETEs",
               [(recovery_sessions(), values(wiggle(100, 20, 300))),
                (livy_thread_headroom(), values(wiggle(2096, 50, 300)))],
               quiet=["1h", "5h"]),
    ],
)

LIVY_RESTART_RISK_RISING = Alert(
    name="LivyRestartRiskRising", signature="S2", severity="warning", problem="livy-restart",
    component="zookeeper",
    summary="Livy's recovery store is growing towards what a restart could survive.",
    description="Livy process {{ $labels.process }}: at the growth of the last $window, the sessions in its "
                "recovery store will exceed $ratio_pct% of its thread headroom within $horizon. A restart "
                "after that will fail.",
    expr=f"""
sum by ($join) ({predicted("livy_recovery_sessions")})
> on ($join)
$ratio * min by ($join) (jvm_process_thread_headroom{{process=~"$livy_process"}})
""",
    for_="1h",
    params={
        "ratio": Param(0.9, NUMBER, "share of the thread headroom"),
        "window": Param("6h", DURATION, "the trend is fitted over this window"),
        "horizon": Param("3d", DURATION, "how far ahead the trend is extrapolated"),
        "livy_process": Param("livy|LivyServer", REGEX, "the process label of the Livy JVM"),
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
        [(recovery_sessions(), "100x180 100+5x420"), (livy_thread_headroom(), "3296x600")],
        quiet=["3h"], fires="5h", failure="819m", failure_is="the stored sessions exceed the thread headroom: a restart dies",
        labels=[{"process": "livy"}],
    ),
    healthy=[
        Replay("a steady store (sessions added and deleted) under a busy Livy",
               [(recovery_sessions(), "500x600"), (livy_thread_headroom(), "1596x600")],
               quiet=["4h", "10h"]),
    ],
)

JVM_THREADS_NEAR_LIMIT = Alert(
    name="JvmThreadsNearLimit", signature="S2", severity="critical", problem="threads", component="jvm",
    summary="A JVM's user is about to hit its thread limit.",
    description="JVM {{ $labels.process }} on {{ $labels.instance }} (target {{ $labels.target }}): the "
                "threads counted against its limits (RLIMIT_NPROC of its user, its cgroup's pids.max, the "
                "kernel's threads-max) leave less than $min_headroom_ratio_pct% of the limit free. The next threads will fail with \"unable to create new "
                "native thread\".",
    expr=f"""
min by ({JVM_SERIES_LABELS}) (jvm_process_thread_headroom)
< on ({JVM_SERIES_LABELS})
$min_headroom_ratio * min by ({JVM_SERIES_LABELS}) (jvm_process_thread_limit)
""",
    for_="5m",
    params={"min_headroom_ratio": Param(0.1, NUMBER, "headroom left, as a share of the thread limit")},
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
        "a streaming executor leaks 10 threads a minute (unclosed clients, S3's war story)",
        [(executor_thread_headroom(), "3096-10x400"), (executor_thread_limit(), "4096x400")],
        quiet=["260m"], fires="280m", failure="310m", failure_is="no thread headroom left: unable to create new native thread",
        labels=[at(target="local", process="executor")],
    ),
    healthy=[
        Replay("a busy JVM with 3,000 threads, steady",
               [(executor_thread_headroom(), values(wiggle(1096, 40, 400))),
                (executor_thread_limit(), "4096x400")],
               quiet=["1h", "6h"]),
    ],
)

ALERTS: List[Alert] = [LIVY_RESTART_WOULD_EXHAUST_THREADS, LIVY_RESTART_RISK_RISING, JVM_THREADS_NEAR_LIMIT]
