"""S4, streaming pipeline health: the alerts on a Structured Streaming query
that stalls, falls behind or runs batches slower than its trigger (S4's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, NUMBER, Alert, Param, Replay, at, series, values

QUERY = dict(target="app", app_id="app-1", app_name="pipeline", query="events")


def input_rate() -> str:
    return series("spark_streaming_input_rows_per_second", **QUERY)


def processed_rate() -> str:
    return series("spark_streaming_processed_rows_per_second", **QUERY)


def batch_duration() -> str:
    return series("spark_streaming_batch_duration_seconds", **QUERY)


def varying(n: int, center: float, amplitude: float) -> str:
    """n+1 samples around center that change at every sample (a query making progress)."""
    return values(center + amplitude * ((t * 7919) % 13 - 6) / 6 for t in range(n + 1))


ALERTS: List[Alert] = [
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
    ),
    Alert(
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
    ),
]
