"""The failure signatures S1 to S5: the war story, the signal and the fix.

This is the one place the knowledge of each signature lives; the runbooks,
the rule groups and the overview dashboard are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class Signature:
    """One failure signature: ``id`` (``S1``…) and ``title`` name it everywhere
    (alerts, doctor findings, docs); ``slug`` is in its rule group's name, so it
    must not change once shipped; ``seed`` is where the war story comes from;
    ``story``, ``signal`` and ``fix`` end every runbook of its alerts."""

    id: str
    title: str
    slug: str
    seed: str  # the war story it comes from
    story: str
    signal: str
    fix: str


SIGNATURES: Dict[str, Signature] = {s.id: s for s in [
    Signature(
        "S1", "Livy sessions pile up", "livy-sessions",
        "\"Livy is out of memory\", Azure Data Factory + Livy",
        "A scheduler submitted batches through Livy every 15 minutes and never sent DELETE. "
        "The session timeout was 24 days (`livy.server.session.timeout`, which Livy 0.3 also used to "
        "garbage-collect finished sessions), so finished sessions accumulated until the Livy server "
        "ran out of memory and refused every new job. A restart did not help: the sessions came "
        "back from ZooKeeper (S2).",
        "The number of sessions by kind and state grows without bound, most of them in a terminal "
        "state (`success`, `dead`, `killed`, `error`); the oldest finished session has been seen for "
        "longer than the retention Livy is supposed to apply. Many *running* sessions are not this "
        "problem: they are load.",
        "Make the client DELETE finished sessions (`DELETE /batches/{id}`, `DELETE /sessions/{id}`). "
        "Lower the retention: `livy.server.session.state-retain.sec` (Livy 0.4+, default 600 s) or, "
        "on Livy 0.3, `livy.server.session.timeout` (the war story went from 24 days to about an hour). "
        "Restart Livy only after the recovery backlog (S2) is safe.",
    ),
    Signature(
        "S2", "A Livy restart becomes impossible", "livy-restart",
        "HDInsight: Livy dies at every restart with \"unable to create new native thread\"",
        "Livy in recovery mode keeps every session in ZooKeeper under `/livy/v1/batch` and "
        "`/livy/v1/interactive`. After months of unDELETEd batches, 8,000 to 40,000 entries were "
        "stored. On restart Livy starts one monitoring thread per recovered batch and died with "
        "`java.lang.OutOfMemoryError: unable to create new native thread` while `vmstat` showed "
        "plenty of free memory; every further restart died the same way.",
        "Sessions a restart would recover (`livy_recovery_sessions`, numChildren - 1 of each "
        "ZooKeeper node) plus the threads the Livy user already uses, against the thread limit "
        "(`RLIMIT_NPROC` of the Livy user, the cgroup `pids.max`). The sum is knowable before "
        "anyone restarts Livy.",
        "Delete finished sessions through Livy's REST API while it still runs (that also removes their "
        "ZooKeeper entries). If Livy is already down: remove the entries of long-gone jobs from "
        "ZooKeeper (`zkCli.sh` then `deleteall /livy/v1/batch/<id>`; the war story removed the whole "
        "`/livy/v1/batch` node with `rmr`, losing recovery of running jobs), then restart. Raise the "
        "limit (`ulimit -u`/`LimitNPROC=` for the Livy service, the container's pids limit) as a stopgap. "
        "Then fix S1, which is what fills the store.",
    ),
    Signature(
        "S3", "Heap leak with flat streaming state", "heap-leak",
        "Disney Streaming: flatMapGroupsWithState job crashing every ~3 days",
        "A stateful Structured Streaming job crashed about every three days with "
        "`GC overhead limit exceeded` and `Java heap space`. Its state row count "
        "(`stateOperators.numRowsTotal`) was flat, so the state was not the cause. Periodic heap "
        "dumps showed AWS SDK `HashMap$Node[16384]` growing: an Apache HTTP client created per "
        "partition in a `ForeachWriter.open` was never closed, leaking threads, connections and heap.",
        "The heap floor (the minimum heap over a window, or the old generation after collections) "
        "rises for hours while the streaming state rows stay flat; the share of time spent in GC "
        "rises; the JVM's threads, open file descriptors and TCP connections rise. Heap rising "
        "*together with* the state rows is the state growing, not a leak.",
        "Take a heap dump on OOM (`-XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath=...` in "
        "`spark.executor.extraJavaOptions`) and periodic dumps (`jmap -dump:format=b,file=x.hprof PID`), "
        "compare the dominators between dumps. Close every client you open in `ForeachWriter.open` "
        "in `close()` (the war story's leak was the HTTP client under the Kinesis client). "
        "G1 (`-XX:+UseG1GC`) removed the GC-overhead errors but not the leak.",
    ),
    Signature(
        "S4", "Streaming pipeline health", "streaming",
        "\"Operating Pipelines\": long-running Kafka streaming queries",
        "Long-running Kafka streaming queries crashed with OOM and left multi-hour gaps in the data; "
        "after downtime, the backlog was consumed in one huge batch (no `maxOffsetsPerTrigger`); "
        "nobody was told when the job died, except by \"terrible Bash scripts\".",
        "A query that stopped making progress (no new batch, watermark not advancing, its progress "
        "figures frozen); batches slower than their trigger; processing slower than input; the "
        "application gone (its driver UI down).",
        "Alert a human when the driver dies (this pack's target-down alert). Cap batches with "
        "`maxOffsetsPerTrigger` so a backlog after downtime cannot take everything at once; give the "
        "driver and executors memory headroom; keep Kafka retention above the time you need to "
        "repair (the war story recommends at least 72 hours).",
    ),
    Signature(
        "S5", "Loaded classes and the JIT code cache", "codecache",
        "\"Debugging a long-running Apache Spark application\", Sparkmachine",
        "A long-running Spark service compiled customer rules to bytecode and broadcast it. Jobs got "
        "slower the longer it ran, and jobs piled up. The number of loaded classes rose without bound "
        "and one day the log said `CodeCache: size=524288Kb used=519954Kb ... compilation: disabled "
        "(not enough contiguous free space left)`: the JIT was off. The root cause was Spark's "
        "ContextCleaner falling behind: with `spark.cleaner.periodicGC.interval` at its default of "
        "30 minutes and the blocking cleaner (`spark.cleaner.referenceTracking.blocking=true`), "
        "millions of `CleanupTaskWeakReference` objects piled up and kept the classes alive.",
        "Loaded classes (loaded minus unloaded) rising; the code cache used against its size, per "
        "heap; the JIT state; active jobs and the age of the oldest running job rising; listener "
        "bus drops; the cleaner settings of a long-running application.",
        "Set `spark.cleaner.periodicGC.interval` to a few minutes (the war story went from 30min to "
        "3min) and `spark.cleaner.referenceTracking.blocking=false`. A larger "
        "`-XX:ReservedCodeCacheSize` only buys time; restarting the driver resets it.",
    ),
    Signature(
        "targets", "Targets down and blind spots", "targets",
        "nobody is told when the job dies",
        "A target that cannot be scraped is itself a signal: a Spark driver UI that stops answering "
        "usually means the application died; a Livy or ZooKeeper that is down stops every job "
        "submission or recovery. A Spark metrics source that is off hides the signals of S3 and S5.",
        "`sparkwatch_target_up{kind,target}` is 0: the exporter could not read the target within "
        "the scrape deadline. `sparkwatch_target_scrape_errors_total{reason}` says why. "
        "`spark_metrics_source_enabled{source}` is 0: Spark does not publish the streaming or JVM figures.",
        "Find out why the target is down (the landing page of the exporter shows the last error) and "
        "restart it; if the exporter cannot reach a healthy target, fix the exporter's configuration "
        "(URL, credentials, TLS, timeout). Turn on the Spark metrics sources the alerts need.",
    ),
]}

#: the signatures in their order (the rule groups, the runbook index, the doctor's report)
SIGNATURE_ORDER = tuple(SIGNATURES)
