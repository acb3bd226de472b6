"""From Prometheus (``--prometheus``): every alert of the pack it has firing or
pending that no judgement of a signature module reads from Prometheus itself,
reported with the alert's summary, the rule's value, its fix and its runbook.
Runs last, so that the specific judgements come first."""

from __future__ import annotations

from ...pack.alerts import ALERTS
from ..findings import Judge, judges


@judges(*ALERTS, prometheus=True, fallback=True)
def active_alerts(j: Judge) -> None:
    """The alerts Prometheus has firing or pending, except those a judgement of their signature reads."""
    for a in j.active(*ALERTS):
        if a.alert not in j.prometheus_judged:
            j.add_active(a, summary=a.alert.summary)
