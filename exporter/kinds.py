"""The target kinds: the one table that lists them.

A kind is one config section (``spark:``), one collector module
(``exporter/collectors/<name>.py``), one metric prefix (``<name>_``), one value
of the ``kind`` label of the exporter's own metrics, one section of the
metrics reference and one target-down alert. The exporter's own metrics
(``sparkwatch_``) are a prefix and a section of their own, without a target.

Everything that lists the kinds is derived from :data:`KINDS`, in its order:
the collectors registry (``exporter/collectors/__init__.py``), the prefixes
whose metrics get the rules configuration's and the dashboards' selectors
(``exporter/pack/promql.py``, ``exporter/pack/rulesconfig.py``), the
target-down alerts (``exporter/pack/alerts/targets.py``) and the sections of
``docs/metrics.md`` (``exporter/docs.py``). This module imports nothing of
sparkwatch, so the pack can read it without loading the collectors.
"""

from typing import NamedTuple, Tuple


class Kind(NamedTuple):
    """One row of the table: a kind of target (or, :data:`EXPORTER`, the exporter
    itself). ``name`` is used verbatim as the config section, metric prefix,
    ``kind`` label and collector module, so it is never renamed."""

    name: str  #: config section, metric prefix (``name_``), ``kind`` label, collector module
    title: str  #: its section of the metrics reference
    down_severity: str = ""  #: of its target-down alert, ``<Name>TargetDown``: ``critical`` pages
    down_meaning: str = ""  #: what that alert means (the first words of its runbook)


#: the exporter itself: the prefix and section of its own metrics (no targets, no target-down alert)
EXPORTER = Kind("sparkwatch", "The exporter itself")

KINDS: Tuple[Kind, ...] = (
    Kind("spark", "Spark (driver UI or history server)", "critical",
         "A Spark driver UI that does not answer usually means the application is gone: it finished, crashed or "
         "was killed (S4's war story: nobody was told). A history server that is down hides every application."),
    Kind("livy", "Livy", "critical",
         "Livy not answering means no job can be submitted; if it died of memory, S1 is likely, and its restart "
         "may fail (S2)."),
    Kind("zookeeper", "ZooKeeper", "warning",
         "The ZooKeeper that holds Livy's recovery state cannot be read: Livy's recovery and the S2 alerts are blind."),
    Kind("jvm", "JVMs and their processes (hsperfdata, attach, /proc)", "warning",
         "The local JVMs of this host cannot be read (no performance data, permission denied, a watched process "
         "is gone): the JVM alerts (S2, S3, S5) are blind."),
)


def metric_sources() -> Tuple[Kind, ...]:
    """The exporter, then every kind: each a metric prefix and a section of the
    metrics reference. Read when called, so a row added to :data:`KINDS` counts."""
    return (EXPORTER,) + KINDS
