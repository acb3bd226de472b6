"""S4, streaming pipeline health: the alerts on a Structured Streaming query
that stalls, falls behind, runs batches slower than its trigger or terminates,
and on a long-running application that vanishes from its cluster (S4's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, Alert, NUMBER, Param, Replay, at, series, values

QUERY = dict(target="app", app_id="app-1", app_name="pipeline", query="events")
APP = dict(target="app", app_id="app-1", app_name="pipeline")
#: a cluster target (discover: standalone or yarn) with two applications
CLUSTER_APP = dict(target="cluster", app_id="app-20261129-0001", app_name="pipeline")
CLUSTER_SHORT_APP = dict(target="cluster", app_id="app-20261129-0002", app_name="pi")


def app_info(**labels) -> str:
    return series("spark_app_info", spark_version="4.0.1", spark_user="spark", **labels)


def app_uptime(**labels) -> str:
    return series("spark_app_uptime_seconds", **labels)


def target_up(target: str) -> str:
    return series("sparkwatch_target_up", kind="spark", target=target)


def input_rate() -> str:
    return series("spark_streaming_input_rows_per_second", **QUERY)


def processed_rate() -> str:
    return series("spark_streaming_processed_rows_per_second", **QUERY)


def batch_duration() -> str:
    return series("spark_streaming_batch_duration_seconds", **QUERY)


def varying(n: int, center: float, amplitude: float) -> str:
    """n+1 samples around center that change at every sample (a query making progress)."""
    return values(center + amplitude * ((t * 7919) % 13 - 6) / 6 for t in range(n + 1))


SPARK_STREAMING_QUERY_STALLED = Alert(
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
    params={"window": Param("10m", DURATION, "how long the progress may stay frozen: several trigger intervals "
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
        [(input_rate(), varying(60, 1000, 200) + " 1200x60"), (batch_duration(), varying(60, 20, 5) + " 25x60")],
        quiet=["70m"], fires="80m", labels=[at(**QUERY)],
    ),
    healthy=[
        Replay("a busy pipeline, progress every batch", [(input_rate(), varying(120, 5000, 1000)),
                                                        (batch_duration(), varying(120, 30, 10))], quiet=["1h", "2h"]),
        Replay("an idle query: no input, nothing to do", [(input_rate(), "0x120"), (batch_duration(), "0x120")],
               quiet=["1h", "2h"]),
    ],
)

SPARK_STREAMING_BATCH_SLOWER_THAN_TRIGGER = Alert(
    name="SparkStreamingBatchSlowerThanTrigger", signature="S4", severity="warning",
    problem="streaming-latency", component="spark",
    summary="A streaming query's batches take longer than its trigger interval.",
    description="Every batch of query {{ $labels.query }} of {{ $labels.app_name }} ({{ $labels.app_id }}, "
                "target {{ $labels.target }}) in the last $window took longer than $trigger_interval.",
    expr="min_over_time(spark_streaming_batch_duration_seconds[$window]) > $trigger_interval_s",
    for_="15m",
    params={"trigger_interval": Param("1m", DURATION, "the queries' trigger interval (select queries with other "
                                               "triggers with the alert's selector; not scaled by "
                                               "time_scale)", scales=False),
            "window": Param("15m", DURATION, "every batch in this window was slower")},
    meaning="A micro-batch that takes longer than the trigger interval delays the next one: latency "
            "grows, and a backlog (after downtime, S4's war story) makes every batch bigger still.",
    confirm=["Structured Streaming tab: batch duration against the trigger.",
             "Input rate against processing rate (SparkStreamingFallingBehind)."],
    action="Cap the batch size (`maxOffsetsPerTrigger` for Kafka), add executors, or lengthen the trigger.",
    story=Replay("batches slow down by a second every minute",
                 [(batch_duration(), "20x60 20+1x120")], quiet=["110m"], fires="135m", labels=[at(**QUERY)]),
    healthy=[Replay("30-second batches with an occasional 90-second one",
                    [(batch_duration(), values(90 if t % 10 == 0 else 30 for t in range(181)))], quiet=["1h", "3h"])],
)

SPARK_STREAMING_FALLING_BEHIND = Alert(
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
    params={"ratio": Param(0.9, NUMBER, "processing rate as a share of the input rate"),
            "window": Param("30m", DURATION, "averaging window"),
            "min_input_rate": Param(0, NUMBER, "rows per second below which the query is ignored")},
    meaning="The processing rate is the rows of a batch over its duration; the input rate the rows "
            "over the time since the previous batch. Processing slower than input for half an hour "
            "means the backlog grows: the query will fall hours behind (and after downtime it never "
            "catches up).",
    confirm=["Structured Streaming tab: input rate against process rate.",
             "The source's lag (Kafka consumer offsets) grows."],
    action="Add executors or partitions, cap batches (`maxOffsetsPerTrigger`), or find the slow stage.",
    story=Replay("processing slows from 2,000 to under 900 rows/s against 1,000 rows/s input",
                 [(input_rate(), "1000x240"), (processed_rate(), "2000x60 2000-20x180")],
                 quiet=["120m"], fires="170m", labels=[at(**QUERY)]),
    healthy=[
        Replay("busy: 5,000 rows/s in, 6,000 rows/s processing", [(input_rate(), varying(240, 5000, 500)),
                                                                   (processed_rate(), varying(240, 6000, 500))],
               quiet=["2h", "4h"]),
        Replay("idle", [(input_rate(), "0x240"), (processed_rate(), "0x240")], quiet=["2h", "4h"]),
    ],
)

SPARK_STREAMING_QUERY_TERMINATED = Alert(
    name="SparkStreamingQueryTerminated", signature="S4", severity="critical", problem="streaming-terminated",
    component="spark",
    summary="A streaming query stopped while its application goes on.",
    description="Query {{ $labels.query }} of {{ $labels.app_name }} ({{ $labels.app_id }}, target "
                "{{ $labels.target }}) reported within the last $window and does not any more, while its "
                "application is still running: the query terminated (an exception, or stop()).",
    expr="""
(
  last_over_time(spark_streaming_input_rows_per_second[$window])
  unless on (job, instance, target, app_id, query)
  spark_streaming_input_rows_per_second
)
and on (job, instance, target, app_id)
spark_app_info
""",
    for_="0m",
    params={"window": Param("1h", DURATION, "how long after its last report a query that is gone is reported")},
    meaning="A Structured Streaming query registers its metrics source when it starts and removes it when "
            "it terminates, whether by `stop()` or by an exception. Its series vanish while the driver "
            "(and every other series of the application) stays: in S4's war story the pipeline died and "
            "nobody was told, because the application that hosted it was still up. A query restarted under "
            "the same name reports again and the alert resolves.",
    confirm=["Spark UI, Structured Streaming tab: the query is listed under completed queries, with its "
             "exception.",
             "Driver log: `StreamingQueryException` and its cause."],
    action="Read the exception; fix its cause (a schema change, an unreachable sink, a corrupt "
           "checkpoint) and restart the query from its checkpoint.",
    story=Replay(
        "the query dies after an hour; its application goes on",
        [(input_rate(), varying(60, 1000, 200) + " _x60"), (app_info(**APP), "1x120")],
        quiet=["60m"], fires="70m", labels=[at(**QUERY)],
    ),
    healthy=[
        Replay("a query that keeps running", [(input_rate(), varying(120, 1000, 200)), (app_info(**APP), "1x120")],
               quiet=["1h", "2h"]),
        Replay("the whole application ends (its own alert, not this one)",
               [(input_rate(), varying(60, 1000, 200) + " _x60"), (app_info(**APP), "1x60 _x60")],
               quiet=["70m", "2h"]),
    ],
)

SPARK_APPLICATION_VANISHED = Alert(
    name="SparkApplicationVanished", signature="S4", severity="warning", problem="app-vanished",
    component="spark",
    summary="A long-running Spark application is gone from its target.",
    description="Application {{ $labels.app_name }} ({{ $labels.app_id }}) had been running for more than "
                "$min_uptime on target {{ $labels.target }} and is no longer listed, while the target "
                "itself answers.",
    expr="""
(
  last_over_time(spark_app_uptime_seconds[$window]) > $min_uptime_s
  unless on (job, instance, target, app_id)
  spark_app_uptime_seconds
)
and on (job, instance, target)
(sparkwatch_target_up{kind="spark"} == 1)
""",
    for_="0m",
    params={"window": Param("1h", DURATION, "how long after its last report a vanished application is reported"),
            "min_uptime": Param("1h", DURATION, "only applications that had run this long (long-running "
                                                 "services, not short jobs) count; compared with real "
                                                 "application lifetimes, so not scaled by time_scale",
                                scales=False)},
    meaning="A cluster target (a standalone master or YARN ResourceManager, `discover`) lists every "
            "running application; one that ran for hours and is suddenly not listed has ended. For a "
            "long-running service that is an outage, however the application ended: S4's war story is a "
            "pipeline that died unnoticed. (A target that watches one driver UI goes down instead: "
            "SparkTargetDown.) Short applications, under `min_uptime`, come and go without an alert.",
    confirm=["The cluster manager's UI: the application's final state (FAILED, KILLED, FINISHED).",
             "Its driver log (YARN: `yarn logs -applicationId ID`)."],
    action="If it should still run, find why it ended in the driver log and restart it; if it was "
           "stopped on purpose, nothing to do (the alert resolves after `window`).",
    story=Replay(
        "a streaming service that had run for hours ends; the master still answers",
        [(app_uptime(**CLUSTER_APP), "36000+60x60 _x60"), (target_up("cluster"), "1x120")],
        quiet=["60m"], fires="70m", labels=[at(**CLUSTER_APP)],
    ),
    healthy=[
        Replay("short applications start and end every 10 minutes",
               [(app_uptime(**CLUSTER_SHORT_APP), " ".join(["0+60x4 _x5"] * 12)), (target_up("cluster"), "1x120")],
               quiet=["30m", "1h", "2h"]),
        Replay("the master is down: its own alert, not this one",
               [(app_uptime(**CLUSTER_APP), "36000+60x60 _x60"), (target_up("cluster"), "1x60 0x60")],
               quiet=["70m", "90m"]),
    ],
)

ALERTS: List[Alert] = [
    SPARK_STREAMING_QUERY_STALLED,
    SPARK_STREAMING_BATCH_SLOWER_THAN_TRIGGER,
    SPARK_STREAMING_FALLING_BEHIND,
    SPARK_STREAMING_QUERY_TERMINATED,
    SPARK_APPLICATION_VANISHED,
]
