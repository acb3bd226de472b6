"""What every collector builds on.

A collector watches one target (a Spark UI, a Livy server, a ZooKeeper
ensemble, the JVMs of this host). On each scrape the engine calls
``collect(out, deadline)``; the collector adds samples to ``out`` and either
returns (the target is up) or raises :class:`TargetError` (the target is down,
with a bounded ``reason``). Partial problems that do not make the whole target
down (one JVM of many exited mid-scrape) go through ``out.error(reason)``.

Metrics are declared once, at import time, with :func:`gauge`, :func:`counter`
and :func:`info`. The declaration is the catalogue the README reference, the
alert lint and the dashboards are checked against: a collector cannot emit a
metric that is not declared, nor a label that its declaration does not name.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar, Dict, Iterable, List, Optional, Tuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

# Bounded set of reasons for sparkwatch_target_scrape_errors_total.
REASONS = (
    "timeout",  # the deadline passed before the target answered in full
    "connection",  # refused, reset, DNS failure
    "tls",  # certificate or handshake failure
    "auth",  # 401 / 403 / ZooKeeper auth failure
    "http_status",  # any other non-2xx status
    "invalid_response",  # HTML, plain text, truncated or malformed JSON, wrong shape
    "busy",  # the previous scrape of this target has not finished yet
    "partial",  # part of the target could not be read (one JVM, one app)
    "limit",  # a configured cap was hit (e.g. max sessions read per scrape)
    "internal",  # a bug in sparkwatch; logged with a traceback
)


class TargetError(Exception):
    """The target could not be scraped. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message


class Deadline:
    """An absolute point in time (monotonic clock) a scrape must finish by."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        return self.at - self._clock()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def timeout(self, cap: Optional[float] = None) -> float:
        """Seconds an operation may take now: the rest of the deadline, at most ``cap``.

        Raises ``TargetError('timeout')`` when nothing is left.
        """
        left = self.remaining()
        if left <= 0:
            raise TargetError("timeout", "scrape deadline exceeded")
        return left if cap is None else min(left, cap)


# --------------------------------------------------------------------------
# Metric declarations (the catalogue)


@dataclass(frozen=True)
class MetricDef:
    name: str
    type: str  # "gauge" | "counter" | "info"
    help: str
    labels: Tuple[str, ...]
    source: str  # the collector kind that exports it ("sparkwatch" for self-metrics)

    @property
    def exposed_name(self) -> str:
        """The sample name as it appears in the exposition."""
        if self.type == "info":
            return self.name + "_info"
        return self.name


CATALOG: Dict[str, MetricDef] = {}


def _define(kind: str, name: str, help: str, labels: Iterable[str], source: str) -> MetricDef:
    labels = tuple(labels)
    if kind == "counter" and not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    if kind == "info" and name.endswith("_info"):
        raise ValueError(f"info metric {name}: give the name without _info")
    d = MetricDef(name, kind, help, labels, source)
    old = CATALOG.get(d.exposed_name)
    if old is not None and old != d:
        raise ValueError(f"metric {d.exposed_name} declared twice, differently")
    CATALOG[d.exposed_name] = d
    return d


def gauge(name: str, help: str, labels: Iterable[str] = (), source: str = "") -> MetricDef:
    return _define("gauge", name, help, labels, source or name.split("_", 1)[0])


def counter(name: str, help: str, labels: Iterable[str] = (), source: str = "") -> MetricDef:
    return _define("counter", name, help, labels, source or name.split("_", 1)[0])


def info(name: str, help: str, labels: Iterable[str] = (), source: str = "") -> MetricDef:
    """An info metric: exposed as ``<name>_info{labels} 1``."""
    return _define("info", name, help, labels, source or name.split("_", 1)[0])


# --------------------------------------------------------------------------
# Collecting samples


class MetricSet:
    """Samples gathered during one scrape, grouped by metric.

    ``target`` is added to every sample's labels by the engine, so declared
    label lists do not include it. Samples with a NaN or None value are
    dropped (a value that could not be read is absent, not zero).
    """

    def __init__(self, base_labels: Optional[Dict[str, str]] = None):
        self.base_labels = dict(base_labels or {})
        self.samples: Dict[MetricDef, Dict[Tuple[str, ...], float]] = {}
        self.errors: List[str] = []

    def add(self, metric: MetricDef, value, **labels) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        value = float(value)
        if math.isnan(value):
            return
        if set(labels) != set(metric.labels):
            raise ValueError(
                f"{metric.name}: labels {sorted(labels)} do not match declared {sorted(metric.labels)}"
            )
        key = tuple("" if labels[k] is None else str(labels[k]) for k in metric.labels)
        self.samples.setdefault(metric, {})[key] = value

    def error(self, reason: str) -> None:
        """Record a partial error: counted, but the target stays up."""
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        self.errors.append(reason)

    def __len__(self) -> int:
        return sum(len(v) for v in self.samples.values())


def to_families(sets: Iterable[MetricSet]) -> List[Metric]:
    """Merge several MetricSets into one family per metric name."""
    families: Dict[str, Metric] = {}
    for ms in sets:
        base_names = list(ms.base_labels)
        base_values = [ms.base_labels[k] for k in base_names]
        for d, samples in ms.samples.items():
            fam = families.get(d.name)
            if fam is None:
                names = base_names + list(d.labels)
                if d.type == "gauge":
                    fam = GaugeMetricFamily(d.name, d.help, labels=names)
                elif d.type == "counter":
                    fam = CounterMetricFamily(d.name, d.help, labels=names)
                else:
                    fam = InfoMetricFamily(d.name, d.help, labels=names)
                fam._sw_labels = names  # type: ignore[attr-defined]
                families[d.name] = fam
            expected = base_names + list(d.labels)
            if fam._sw_labels != expected:  # type: ignore[attr-defined]
                raise ValueError(f"{d.name}: label sets differ between targets")
            for key, value in samples.items():
                lv = base_values + list(key)
                if d.type == "info":
                    fam.add_metric(lv, {})
                else:
                    fam.add_metric(lv, value)
    return list(families.values())


# --------------------------------------------------------------------------
# Collector base class


class Collector:
    """One target of one kind. Subclasses set ``kind`` and ``config_model``.

    The engine guarantees that ``collect`` is never called twice at once for
    the same Collector instance, so a collector may keep state across scrapes
    (a connection, first-seen times) without locking.
    """

    kind: ClassVar[str] = ""
    config_model: ClassVar[type] = object
    #: can this kind be scraped through /probe?module=<kind>&target=<url>
    probe_field: ClassVar[Optional[str]] = None

    def __init__(self, config):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.display_name()

    def collect(self, out: MetricSet, deadline: Deadline) -> None:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called on shutdown or when a probe target is evicted."""
