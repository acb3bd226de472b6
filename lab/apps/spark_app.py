"""The Spark driver of the lab scenarios (run with the Python of a venv that has pyspark).

    python lab/apps/spark_app.py --mode MODE --ui-port PORT [options]

Modes:
  healthy       a stateful streaming query (rate -> groupBy(key).count() -> foreachBatch that
                does nothing); state rows stay flat, heap floor stays flat.
  leak-heap     the same query; its foreachBatch keeps a byte buffer in the driver JVM every
                batch (seed 002's leak, in the driver) until "Java heap space".
  leak-threads  the same query; its foreachBatch creates java.util.Timer objects (each one a
                thread) and never cancels them (seed 002's unclosed clients) until the JVM
                cannot create a native thread.
  stall         the same query; after --stall-after seconds its foreachBatch blocks forever:
                the query stops making progress while input keeps arriving.
  codecache     no streaming: a loop of SQL queries with distinct expressions (seed 004's
                compiled customer rules); every one is code-generated and JIT-compiled into a
                small code cache (set -XX:ReservedCodeCacheSize with --java-opts, or for the
                executors spark.executor.extraJavaOptions with --conf on a cluster).
  busy          the healthy service of the cluster baseline: the stateful query, and next to it
                a mix of SQL queries (joins, aggregations, window functions) over a cached table
                that is refreshed (unpersisted and cached again) every few minutes.
  die-query     the same query; after --stall-after seconds its foreachBatch raises: the query
                terminates, the driver (and its SparkContext) goes on.

On a cluster (--master spark://...), --udf heap:BYTES or --udf threads:EVERY puts one of the
Java UDFs of testbed/sparkjars (its jar given with --jars) into the query, so that it runs in
the executor: heap keeps BYTES per row in the executor JVM, threads starts a parked thread
every EVERY-th row.

It prints machine-readable lines on stdout:
  LAB READY <appId>                     UI up, first batch (with state rows) done
  LAB EVENT <unix time> <name> <detail> something the scenario measures (failure, stall...)
"""

import argparse
import os
import sys
import threading
import time


def event(name, detail=""):
    print(f"LAB EVENT {time.time():.3f} {name} {detail}".rstrip(), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True,
                   choices=["healthy", "leak-heap", "leak-threads", "stall", "codecache", "busy", "die-query"])
    p.add_argument("--ui-port", type=int, required=True)
    p.add_argument("--app-name", default=None)
    p.add_argument("--driver-memory", default="512m")
    p.add_argument("--java-opts", default="", help="extra driver JVM options")
    p.add_argument("--trigger-s", type=float, default=5.0)
    p.add_argument("--rows-per-second", type=int, default=20)
    p.add_argument("--keys", type=int, default=20, help="distinct grouping keys: the state rows")
    p.add_argument("--leak-bytes", type=int, default=5 * 1024 * 1024, help="leak-heap: bytes kept per batch")
    p.add_argument("--leak-threads", type=int, default=10, help="leak-threads: threads leaked per batch")
    p.add_argument("--stall-after", type=float, default=60.0, help="stall: seconds after READY")
    p.add_argument("--periodic-gc", default="15s", help="spark.cleaner.periodicGC.interval")
    p.add_argument("--master", default="local[1]")
    p.add_argument("--jars", default="", help="jars for the driver and the executors (the lab's UDFs)")
    p.add_argument("--udf", default="", help="heap:BYTES or threads:EVERY (a Java UDF from --jars, in the query)")
    p.add_argument("--conf", action="append", default=[], help="KEY=VALUE, any Spark setting")
    a = p.parse_args()

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    java_opts = ("-Xss512k -XX:+UseG1GC " + a.java_opts).strip()
    b = SparkSession.builder
    if a.jars:
        b = b.config("spark.jars", a.jars)
    for kv in a.conf:
        k, v = kv.split("=", 1)
        b = b.config(k, v)
    spark = (
        b.master(a.master)
        .appName(a.app_name or f"lab-{a.mode}")
        .config("spark.driver.memory", a.driver_memory)
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.ui.port", str(a.ui_port))
        .config("spark.port.maxRetries", "0")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.retainedJobs", "200")
        .config("spark.ui.retainedStages", "200")
        .config("spark.sql.ui.retainedExecutions", "20")
        .config("spark.sql.streaming.numRecentProgressUpdates", "20")
        .config("spark.sql.streaming.metricsEnabled", "true")
        .config("spark.metrics.conf.*.source.jvm.class", "org.apache.spark.metrics.source.JvmSource")
        # the fix of seed 004, and what makes the heap floor readable in minutes: a full GC
        # every 15 s, so the minimum of the heap in use is what survives collections
        .config("spark.cleaner.periodicGC.interval", a.periodic_gc)
        .config("spark.cleaner.referenceTracking.blocking", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    app_id = spark.sparkContext.applicationId
    jvm = spark.sparkContext._jvm

    if a.mode == "codecache":
        return codecache(spark, app_id)

    if a.mode == "busy":
        threading.Thread(target=sql_mix, args=(spark,), daemon=True).start()

    kept = jvm.java.util.ArrayList()  # what the leaks retain, in the driver JVM
    state = {"batches": 0, "ready_at": None, "failed": False}

    def on_batch(df, batch_id):
        df.count()  # touch the batch like a sink would
        state["batches"] += 1
        if a.mode == "leak-heap":
            try:
                kept.add(jvm.java.nio.ByteBuffer.allocate(a.leak_bytes))
            except Exception as e:  # py4j error carrying java.lang.OutOfMemoryError
                if "OutOfMemoryError" in str(e) and not state["failed"]:
                    state["failed"] = True
                    event("failure", "java.lang.OutOfMemoryError: Java heap space")
                raise
        elif a.mode == "leak-threads":
            try:
                for _ in range(a.leak_threads):
                    kept.add(jvm.java.util.Timer(f"leaked-client-{batch_id}", True))
            except Exception as e:
                if "OutOfMemoryError" in str(e) and not state["failed"]:
                    state["failed"] = True
                    event("failure", "java.lang.OutOfMemoryError: unable to create native thread")
                raise
        elif a.mode == "stall" and state["ready_at"] and time.time() - state["ready_at"] > a.stall_after:
            event("stall", f"batch {batch_id} blocks forever")
            threading.Event().wait()
        elif a.mode == "die-query" and state["ready_at"] and time.time() - state["ready_at"] > a.stall_after:
            event("query-dies", f"batch {batch_id} raises")
            raise RuntimeError("lab: the sink failed (S4: a query that dies while its driver lives)")

    rows = spark.readStream.format("rate").option("rowsPerSecond", a.rows_per_second).load()
    if a.udf:
        # a Java UDF that runs in the executor (testbed/sparkjars/LeakyUdf.java)
        from pyspark.sql.types import LongType

        kind, arg = a.udf.split(":", 1)
        cls = {"heap": "LeakHeap", "threads": "LeakThreads"}[kind]
        spark.udf.registerJavaFunction(f"leak_{kind}", f"sparkwatch.lab.LeakyUdf${cls}", LongType())
        rows = rows.withColumn("value", F.expr(f"leak_{kind}(value, {int(arg)})"))
    stream = (
        rows.withColumn("key", F.col("value") % a.keys)
        .groupBy("key").count()
    )
    q = (
        stream.writeStream.queryName(a.mode.replace("-", "_")).outputMode("update")
        .foreachBatch(on_batch)
        .trigger(processingTime=f"{int(a.trigger_s * 1000)} milliseconds").start()
    )
    while True:
        prog = q.lastProgress
        if state["ready_at"] is None and prog and prog.get("stateOperators") \
                and prog["stateOperators"][0].get("numRowsTotal", 0) > 0:
            state["ready_at"] = time.time()
            print(f"LAB READY {app_id}", flush=True)
        if not q.isActive:
            exc = q.exception()
            text = str(exc) if exc else ""
            oom = [ln.strip() for ln in text.splitlines() if "OutOfMemoryError" in ln or "native thread" in ln]
            if oom and not state["failed"]:
                state["failed"] = True
                event("failure", oom[0][:200])
            event("query-terminated", text.splitlines()[0][:200] if text else "")
            if a.mode == "die-query":
                while True:  # the driver lives on without its query
                    time.sleep(60)
            os._exit(3)  # the driver dies with its query, as a service's main() would
        time.sleep(0.5)


def sql_mix(spark):
    """A busy service's other work: SQL over a cached table, refreshed now and then."""
    from pyspark.sql import functions as F

    i = 0
    facts = dims = None
    while True:
        if i % 20 == 0:
            if facts is not None:
                facts.unpersist()
            facts = spark.range(0, 50000).selectExpr("id", "id % 100 AS d", "rand() * 100 AS v").cache()
            dims = spark.range(0, 100).selectExpr("id AS d", "concat('dim', id) AS name")
            facts.count()
        q = i % 3
        if q == 0:
            facts.join(dims, "d").groupBy("name").agg(F.sum("v"), F.count("*")).collect()
        elif q == 1:
            facts.groupBy("d").agg(F.avg("v").alias("a")).orderBy(F.desc("a")).limit(5).collect()
        else:
            facts.where("v > 50").selectExpr("d", "v", "rank() OVER (PARTITION BY d ORDER BY v) AS r") \
                .where("r <= 3").count()
        i += 1
        time.sleep(10)


def codecache(spark, app_id):
    print(f"LAB READY {app_id}", flush=True)
    df = spark.range(0, 20000).selectExpr("id", "id % 97 AS a", "id % 89 AS b").cache()
    df.count()
    i = 0
    while True:
        i += 1
        # a "customer rule": an expression no query before used; whole-stage codegen compiles
        # it to a new class whose methods get hot and are JIT-compiled into the code cache
        expr = f"sum(CASE WHEN a * {i} % 7 = {i % 7} THEN b + {i} ELSE a - {i % 13} END) AS r{i}"
        df.where(f"b <> {i % 89 + 1000}").selectExpr(expr, f"max(a + b * {i}) AS m{i}").collect()
        if i % 50 == 0:
            print(f"LAB queries {i}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
