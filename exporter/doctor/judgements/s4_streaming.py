"""S4, a streaming query that stops while its application goes on: the queries
the Spark UI reports now, judged with the thresholds of
``exporter/pack/alerts/s4_streaming.py``. A query or an application that is gone
leaves nothing to read: that is Prometheus' to see (``NOT_JUDGED``)."""

from __future__ import annotations

from ...pack.alerts.s4_streaming import (
    SPARK_APPLICATION_VANISHED,
    SPARK_STREAMING_BATCH_SLOWER_THAN_TRIGGER,
    SPARK_STREAMING_FALLING_BEHIND,
    SPARK_STREAMING_QUERY_STALLED,
    SPARK_STREAMING_QUERY_TERMINATED,
)
from ..findings import APP_KEY, Judge, duration, judges, pct

NOT_JUDGED = {
    SPARK_STREAMING_QUERY_TERMINATED: "a query that terminated leaves no series to read; only Prometheus remembers "
                                      "that it reported within the alert's window",
    SPARK_APPLICATION_VANISHED: "an application that is gone leaves no series to read; only Prometheus remembers "
                                "that it ran for longer than the alert's min_uptime",
}


@judges(SPARK_STREAMING_QUERY_STALLED, SPARK_STREAMING_FALLING_BEHIND, SPARK_STREAMING_BATCH_SLOWER_THAN_TRIGGER)
def s4_streaming(j: Judge) -> None:
    """Each streaming query: frozen (two readings), processing slower than its input (two readings),
    batches slower than the trigger interval."""
    keys = APP_KEY + ("query",)
    stalled, behind, slow = SPARK_STREAMING_QUERY_STALLED, SPARK_STREAMING_FALLING_BEHIND, \
        SPARK_STREAMING_BATCH_SLOWER_THAN_TRIGGER
    window = j.t.seconds(stalled, "window")
    ratio = j.t.number(behind, "ratio")
    min_input = j.t.number(behind, "min_input_rate")
    trigger = j.t.seconds(slow, "trigger_interval")
    inp = j.trend("spark_streaming_input_rows_per_second", keys)
    dur = j.trend("spark_streaming_batch_duration_seconds", keys)
    proc = j.trend("spark_streaming_processed_rows_per_second", keys)
    for k, (lbl, i0, i1) in inp.items():
        subject, target = j.query_subject(lbl), lbl["target"]
        d = dur.get(k)
        if j.watching and i0 is not None and d is not None and d[1] is not None:
            if i0 == i1 and d[1] == d[2] and i1 > 0:
                full = j.dt >= window
                j.add(stalled, severity=None if full else "warning", target=target, labels=lbl, subject=subject,
                      summary=f"No batch completed in {duration(j.dt)}: its progress figures are frozen "
                              f"(input {i1:.1f} rows/s, last batch {d[2]:.1f}s) while input arrives"
                              + ("." if full else f" (the pack pages after {duration(window)} of this; "
                                 "--watch longer than the trigger interval to be sure)."),
                      evidence={"input_rows_per_second": i1, "batch_duration_seconds": d[2],
                                "frozen_seconds": j.dt, "window_seconds": window})
                continue
        p = proc.get(k)
        if j.watching and p is not None and p[1] is not None and i0 is not None:
            avg_in, avg_p = (i0 + i1) / 2, (p[1] + p[2]) / 2
            if avg_p < ratio * avg_in and avg_in > min_input:
                j.add(behind, target=target, labels=lbl, subject=subject,
                      summary=f"It processes {avg_p:.1f} rows/s against {avg_in:.1f} rows/s arriving "
                              f"({pct(avg_p / avg_in)}, less than {pct(ratio)}): the backlog grows.",
                      evidence={"processed_rows_per_second": avg_p, "input_rows_per_second": avg_in,
                                "ratio": ratio})
        if d is not None:
            durations = [v for v in (d[1], d[2]) if v is not None]
            if durations and min(durations) > trigger:
                j.add(slow, severity=None if j.watching else "info", target=target, labels=lbl, subject=subject,
                      summary=f"Its batches take {min(durations):.0f}s, longer than the "
                              f"{duration(trigger)} trigger interval the pack assumes: latency grows.",
                      evidence={"batch_duration_seconds": min(durations), "trigger_interval_seconds": trigger})


# ------------------------------------------------------------------ from Prometheus (--prometheus)


@judges(SPARK_STREAMING_QUERY_TERMINATED, SPARK_APPLICATION_VANISHED, prometheus=True)
def s4_gone_history(j: Judge) -> None:
    """A query, or a long-running application, whose series are gone: only Prometheus remembers them."""
    for a in j.active(SPARK_STREAMING_QUERY_TERMINATED):
        last = f" (its last input rate: {a.value:.1f} rows/s)" if a.value is not None else ""
        j.add_active(a, summary=f"It reported within the last {duration(j.t.seconds(a.alert, 'window'))} and "
                                f"no longer does{last}, while its application is still running: the query "
                                "terminated (an exception, or stop()).",
                     evidence={"last_input_rows_per_second": a.value})
    for a in j.active(SPARK_APPLICATION_VANISHED):
        ran = f"It had run for {duration(a.value)}" if a.value is not None else "It had run for long"
        j.add_active(a, summary=f"{ran} and target {a.labels.get('target') or '?'} no longer lists it, while "
                                "the target answers: the application ended.",
                     evidence={"last_uptime_seconds": a.value})
