"""A small, long-running Spark application for sparkwatch's tests, recordings
and benchmark. Run it with the Python of a venv that has pyspark:

    python testbed/sparkapps/streaming_app.py --ui-port 4050 [--metrics on|off]
        [--periodic-gc 3min] [--blocking false] [--finished-jobs 1000] [--failing-job]

It starts a SparkSession in local mode, optionally runs many small finished
jobs (benchmark) and one job that fails (so that failed stages and failed
tasks exist), optionally starts a job that stays active, then a stateful Structured Streaming query (rate source ->
groupBy(key).count() -> noop sink, 2 s trigger by default) named ``counts``.

With ``--metrics on`` the Structured Streaming metrics source and the
JvmSource are enabled; with ``--metrics off`` neither is.

It prints ``SPARKAPP READY <appId>`` on stdout once the UI is up, the watermark has advanced and a batch
with state rows has completed, then runs until killed.
"""

import argparse
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ui-port", type=int, required=True)
    p.add_argument("--metrics", choices=("on", "off"), default="on")
    p.add_argument("--periodic-gc", default=None, help="spark.cleaner.periodicGC.interval (unset = Spark's default)")
    p.add_argument("--blocking", default=None, help="spark.cleaner.referenceTracking.blocking (unset = default)")
    p.add_argument("--finished-jobs", type=int, default=0)
    p.add_argument("--failing-job", action="store_true")
    p.add_argument("--slow-job", action="store_true",
                   help="keep one job running (one task sleeping on one of the two cores) for the whole run")
    p.add_argument("--trigger-ms", type=int, default=2000, help="streaming trigger interval")
    p.add_argument("--event-log", default=None, help="write the event log to this directory (history server)")
    p.add_argument("--app-name", default="sparkwatch-test")
    p.add_argument("--no-stream", action="store_true", help="no streaming query (benchmark)")
    p.add_argument("--master", default="local[2]", help="e.g. spark://127.0.0.1:7077 (a standalone cluster)")
    p.add_argument("--executor-memory", default=None, help="spark.executor.memory (cluster mode)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="any further Spark setting")
    a = p.parse_args()

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    b = (
        SparkSession.builder.master(a.master)
        .appName(a.app_name)
        .config("spark.ui.port", str(a.ui_port))
        .config("spark.port.maxRetries", "0")  # fail rather than silently take another port
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.retainedJobs", "2000")
        .config("spark.sql.ui.retainedExecutions", "50")
    )
    if a.metrics == "on":
        b = b.config("spark.sql.streaming.metricsEnabled", "true").config(
            "spark.metrics.conf.*.source.jvm.class", "org.apache.spark.metrics.source.JvmSource"
        )
    if a.event_log:
        b = b.config("spark.eventLog.enabled", "true").config("spark.eventLog.dir", "file://" + a.event_log)
    if a.periodic_gc is not None:
        b = b.config("spark.cleaner.periodicGC.interval", a.periodic_gc)
    if a.blocking is not None:
        b = b.config("spark.cleaner.referenceTracking.blocking", a.blocking)
    if a.executor_memory:
        b = b.config("spark.executor.memory", a.executor_memory)
    if a.master.startswith("spark://"):
        b = b.config("spark.cores.max", "1").config("spark.executor.cores", "1")
    for kv in a.conf:
        k, _, v = kv.partition("=")
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    app_id = spark.sparkContext.applicationId

    for i in range(a.finished_jobs):
        spark.sparkContext.parallelize([i], 1).count()
        if i and i % 200 == 0:
            print(f"SPARKAPP finished {i} jobs", flush=True)

    if a.failing_job:
        def boom(_):
            raise RuntimeError("sparkwatch test: this task fails on purpose")

        try:
            spark.sparkContext.parallelize([1], 1).map(boom).count()
        except Exception:
            pass

    if a.slow_job:
        import threading

        def sleepy(x):
            import time as t
            t.sleep(3600)
            return x

        def run_slow():
            spark.sparkContext.setJobGroup("sparkwatch-slow", "a job that stays active", interruptOnCancel=True)
            try:
                spark.sparkContext.parallelize([1], 1).map(sleepy).count()
            except Exception:
                pass

        threading.Thread(target=run_slow, daemon=True).start()

    if a.no_stream:
        print(f"SPARKAPP READY {app_id}", flush=True)
        while True:
            time.sleep(3600)

    stream = (
        spark.readStream.format("rate").option("rowsPerSecond", 10).load()
        .withColumn("key", F.col("value") % 10)
        .withWatermark("timestamp", "10 seconds")
        .groupBy("key").count()
    )
    q = (
        stream.writeStream.queryName("counts").format("noop").outputMode("update")
        .trigger(processingTime=f"{a.trigger_ms} milliseconds").start()
    )
    ready = False
    while True:
        prog = q.lastProgress
        # ready: state rows exist and the watermark has advanced (batch 0 reports the epoch;
        # the watermark it computes shows from the next batch's progress on)
        if (not ready and prog and prog.get("stateOperators")
                and prog["stateOperators"][0].get("numRowsTotal", 0) > 0
                and not prog.get("eventTime", {}).get("watermark", "1970").startswith("1970")):
            print(f"SPARKAPP READY {app_id}", flush=True)
            ready = True
        if q.exception() is not None:
            print(f"SPARKAPP query failed: {q.exception()}", flush=True)
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
