"""Targets down and blind spots: the alerts on what the exporter cannot read,
the exporter itself, and the Spark metrics sources the other alerts need."""

from __future__ import annotations

from typing import Dict, List

from ...kinds import KINDS
from ..model import MATCHERS, Alert, Param, Replay, at, series

# kind, alert name, severity, what it means when it is down: one per kind of the table
TARGET_KINDS = tuple((k.name, f"{k.name.capitalize()}TargetDown", k.down_severity, k.down_meaning) for k in KINDS)


def target_down(kind: str, name: str, severity: str, meaning: str) -> Alert:
    up = series("sparkwatch_target_up", kind=kind, target="t1")
    return Alert(
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
    )


#: kind -> its target-down alert
TARGET_DOWN: Dict[str, Alert] = {kind[0]: target_down(*kind) for kind in TARGET_KINDS}


def watched_processes() -> str:
    return series("jvm_processes", target="livy")


def metrics_source(source: str) -> str:
    return series("spark_metrics_source_enabled", target="app", app_id="app-1", app_name="pipeline", source=source)


SPARKWATCH_EXPORTER_DOWN = Alert(
    name="SparkwatchExporterDown", signature="targets", severity="critical", problem="exporter-down",
    component="exporter",
    summary="Prometheus cannot scrape the sparkwatch exporter.",
    description="Prometheus could not scrape {{ $labels.instance }} (job {{ $labels.job }}) for $for_duration: "
                "every sparkwatch alert for its targets is blind.",
    expr="up{$exporter_matchers} == 0",
    for_="5m",
    params={"exporter_matchers": Param('job=~".*sparkwatch.*"', MATCHERS,
                                       "label matchers that select the exporter's scrape jobs in `up`")},
    meaning="`up` is Prometheus' own record of the scrape. When the exporter is down no target metric "
            "arrives, and the trend alerts cannot fire.",
    confirm=["Prometheus' Targets page: the scrape error.", "`systemctl status sparkwatch` or the container's logs."],
    action="Restart the exporter; check that its scrape deadline fits Prometheus' scrape_timeout.",
    story=Replay("the exporter dies after 10 minutes", [('up{job="sparkwatch",instance="sparkhost:9951"}', "1x10 0x20")],
                 quiet=["12m"], fires="20m", labels=[at()]),
    healthy=[Replay("the exporter answers", [('up{job="sparkwatch",instance="sparkhost:9951"}', "1x30")],
                    quiet=["10m", "30m"])],
)

JVM_WATCHED_PROCESS_MISSING = Alert(
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
    story=Replay("the watched Livy JVM exits after 20 minutes", [(watched_processes(), "1x20 0x20")],
                 quiet=["22m"], fires="30m", labels=[at(target="livy")]),
    healthy=[Replay("the watched JVM restarts once (one scrape without it)", [(watched_processes(), "1x10 0 1x20")],
                    quiet=["11m", "20m"])],
)

SPARK_METRICS_SOURCE_DISABLED = Alert(
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
            "flat-state check and every S4 alert are blind (S3's war story ruled out its state this way). Without "
            "the driver's JvmSource (source=jvm) the driver heap and code cache pools are missing (S3, S5).",
    confirm=["Environment tab of the Spark UI: `spark.sql.streaming.metricsEnabled`, "
             "`spark.metrics.conf.*.source.jvm.class`.",
             "`curl -s http://DRIVER:4040/metrics/json/ | grep -c streaming`."],
    action="Start the application with `--conf spark.sql.streaming.metricsEnabled=true` and "
           "`--conf spark.metrics.conf.*.source.jvm.class=org.apache.spark.metrics.source.JvmSource` "
           "(or the same lines in `spark-defaults.conf`).",
    story=Replay("a streaming application started without streaming metrics",
                 [(metrics_source("streaming"), "0x60"), (metrics_source("jvm"), "1x60")], quiet=["10m"], fires="20m",
                 labels=[at(target="app", app_id="app-1", app_name="pipeline", source="streaming")]),
    healthy=[Replay("both sources on", [(metrics_source("streaming"), "1x60"), (metrics_source("jvm"), "1x60")], quiet=["20m", "1h"])],
)

ALERTS: List[Alert] = [*TARGET_DOWN.values(), SPARKWATCH_EXPORTER_DOWN, JVM_WATCHED_PROCESS_MISSING,
                       SPARK_METRICS_SOURCE_DISABLED]
