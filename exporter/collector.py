"""What every collector builds on.

A collector watches one target (a Spark UI, a Livy server, a ZooKeeper
ensemble, the JVMs of this host). On each scrape the engine calls
``collect(out, scrape)`` with a :class:`ScrapeContext` (the deadline, and what
the targets of one scrape share); the collector adds samples to ``out`` and
either returns (the target is up) or raises :class:`TargetError` (the target is
down, with a bounded ``reason``). Partial problems that do not make the whole
target down (one JVM of many exited mid-scrape) go through ``out.error(reason)``.

Metrics are declared once, at import time, with :func:`gauge`, :func:`counter`
and :func:`info`; each collector class lists the metrics it may emit in
``metrics``, by name (a metric another module declares is listed only where it is
meant to be emitted). Those lists are the catalogue the
metrics reference, the alert lint and the dashboards are checked against
(:func:`sparkwatch.catalog.catalog`), and the engine refuses a sample of a metric
its collector does not list, or with a label its declaration does not name.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple

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
    "partial",  # part of the target could not be read (one JVM, one app)
    "limit",  # a configured cap was hit (e.g. max sessions read per scrape)
    "internal",  # a bug in sparkwatch; logged with a traceback
)


#: label values longer than this are cut (a target may send a name of any size)
MAX_LABEL_VALUE = 512
MAX_MESSAGE = 400


def safe_text(value, limit: int) -> str:
    """Any value as text that every exposition format, log line and HTML page can
    carry: valid UTF-8 (lone surrogates and other unencodable characters become
    U+FFFD), control characters but tab replaced, at most ``limit`` characters."""
    s = value if isinstance(value, str) else str(value)
    if not s.isprintable():
        s = "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in s)
    s = s.encode("utf-8", "replace").decode("utf-8")
    if len(s) > limit:
        s = s[: limit - 1] + "\u2026"
    return s


class TargetError(Exception):
    """The target could not be scraped. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        message = safe_text(message, MAX_MESSAGE)
        super().__init__(message)
        self.reason = reason
        self.message = message


class Deadline:
    """An absolute point in time (monotonic clock) a scrape must finish by."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left until the deadline; zero or negative once it has passed."""
        return self.at - self._clock()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
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
    """One metric of the catalogue, as :func:`gauge`, :func:`counter` or :func:`info`
    declare it: name, type, help text, label names and source (its prefix).

    Declared once, at module level, and never built directly: the declaring
    functions check the naming rules (``_total``, no ``_info``). It is hashable
    and compared by value; ``MetricSet.add`` checks each sample's labels against
    ``labels`` (``target`` is not among them: the engine adds it).
    """

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


def _define(kind: str, name: str, help: str, labels: Iterable[str], source: str) -> MetricDef:
    labels = tuple(labels)
    if kind == "counter" and not name.endswith("_total"):
        raise ValueError(f"counter {name} must end in _total")
    if kind == "info" and name.endswith("_info"):
        raise ValueError(f"info metric {name}: give the name without _info")
    return MetricDef(name, kind, help, labels, source)


def gauge(name: str, help: str, labels: Iterable[str] = (), source: str = "") -> MetricDef:
    """A gauge: a value that goes up and down. ``help`` becomes its meaning in the
    metrics reference; ``source`` defaults to the name's prefix (``jvm_…`` → ``jvm``)."""
    return _define("gauge", name, help, labels, source or name.split("_", 1)[0])


def counter(name: str, help: str, labels: Iterable[str] = (), source: str = "") -> MetricDef:
    """A counter: a total that only grows while its source lives; its name must end
    in ``_total``. Otherwise as :func:`gauge`."""
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
        """One sample of ``metric``, with exactly its declared labels (a ValueError
        otherwise: a bug). A value that is None, NaN, infinite, or that float() refuses, is
        dropped; a bool counts as 1 or 0; label values are made safe text and cut
        to MAX_LABEL_VALUE. A second sample with the same labels replaces the first."""
        if value is None:
            return
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        try:
            value = float(value)
        except (OverflowError, TypeError, ValueError):  # 10**400 from a JSON integer, a string
            return
        if not math.isfinite(value):
            return
        if set(labels) != set(metric.labels):
            raise ValueError(
                f"{metric.name}: labels {sorted(labels)} do not match declared {sorted(metric.labels)}"
            )
        key = tuple("" if labels[k] is None else safe_text(labels[k], MAX_LABEL_VALUE) for k in metric.labels)
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
    label_names: Dict[str, List[str]] = {}
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
                families[d.name] = fam
                label_names[d.name] = names
            if label_names[d.name] != base_names + list(d.labels):
                raise ValueError(f"{d.name}: label sets differ between targets")
            for key, value in samples.items():
                lv = base_values + list(key)
                if d.type == "info":
                    fam.add_metric(lv, {})
                else:
                    fam.add_metric(lv, value)
    return list(families.values())


# --------------------------------------------------------------------------
# One scrape


class ScrapeContext:
    """What one scrape gives every target it scrapes: the deadline, and a place
    for work that all targets of the scrape share (one pass over /proc for all
    jvm targets). Nothing in it outlives the scrape."""

    def __init__(self, deadline: Deadline):
        self.deadline = deadline
        self._shared: Dict[Any, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def within(cls, seconds: float) -> "ScrapeContext":
        """A scrape that must end ``seconds`` from now (for running one collector directly)."""
        return cls(Deadline(seconds))

    def shared(self, key: Any, factory: Callable[[], Any]) -> Any:
        """``factory()``, computed once per scrape for ``key`` (the first caller
        computes it; callers that arrive meanwhile wait for that result)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]


# --------------------------------------------------------------------------
# Collector base class


class Collector:
    """One target of one kind. Subclasses set ``kind``, ``config_model`` and
    ``metrics`` (every metric ``collect`` may emit, each named: a tuple of the
    module's MetricDefs, so importing one never widens what a collector emits).

    The engine guarantees that ``collect`` is never called twice at once for
    the same Collector instance, so a collector may keep state across scrapes
    (a connection, first-seen times) without locking.
    """

    kind: ClassVar[str] = ""
    config_model: ClassVar[type] = object
    metrics: ClassVar[Tuple[MetricDef, ...]] = ()
    #: can this kind be scraped through /probe?module=<kind>&target=<url>
    probe_field: ClassVar[Optional[str]] = None

    def __init__(self, config):
        self.config = config

    @property
    def name(self) -> str:
        """The target's name: its ``target`` label and its name on the landing page."""
        return self.config.display_name()

    def bind(self, peers: Sequence["Collector"]) -> None:
        """Told, once after construction, every collector of the same configuration
        (itself included): for kinds whose targets divide work among themselves."""

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:  # pragma: no cover
        """Read the target once and add its samples to ``out``.

        Return when the target is up, even if part of it failed (then call
        ``out.error(reason)`` once per part); raise :class:`TargetError` when it
        is down (its samples are then dropped). Every wait (a request, a sleep)
        must be bounded by ``scrape.deadline``: a collection still running at
        the deadline is reported down with ``timeout``. Any other exception is a
        bug: logged with its traceback, the target down with ``internal``.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called on shutdown or when a probe target is evicted."""
