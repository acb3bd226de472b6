"""The metric catalogue: every metric sparkwatch can export, from the
declarations of the registered collectors and of the scrape engine.

The metrics reference (``docs/metrics.md``), the alert lint and the dashboard
checks are built on it.
"""

from __future__ import annotations

from typing import Dict

from . import scrape
from .collector import MetricDef
from .collectors import COLLECTOR_KINDS


def catalog() -> Dict[str, MetricDef]:
    """Exposed sample name -> declaration. A name declared twice must be
    declared the same way (two collectors may share a metric, e.g.
    ``livy_recovery_sessions``)."""
    out: Dict[str, MetricDef] = {}
    for d in list(scrape.SELF_METRICS) + [m for cls in COLLECTOR_KINDS.values() for m in cls.metrics]:
        old = out.get(d.exposed_name)
        if old is not None and old != d:
            raise ValueError(f"metric {d.exposed_name} declared twice, differently")
        out[d.exposed_name] = d
    return out
