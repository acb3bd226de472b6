"""The scrape engine: every target concurrently, under one deadline.

Each target's collection runs in its own thread. The engine waits until all
have finished or the deadline has passed, whichever comes first; a target that
has not finished by then is reported down with reason ``timeout`` and its
samples are dropped. Every network call a collector makes is bounded by the
same deadline, so its thread ends with it.

Scrapes may overlap (an HA pair of Prometheus servers scrapes the same
exporter): a scrape that finds a target's collection already running waits
for that collection and shares its result, and if it cannot finish within
this scrape's deadline, the last complete result is used while it is fresh
(younger than the configured scrape timeout). A target is never reported down
only because another scrape was reading it. Errors are counted once per
collection, however many scrapes share it.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from . import __version__
from .collector import (REASONS, Collector, Deadline, MetricSet, ScrapeContext, TargetError, counter,
                        gauge, info, to_families)
from .httpbody import detached

log = logging.getLogger("sparkwatch")

TARGET_UP = gauge("sparkwatch_target_up", "1 if the last scrape of the target succeeded, 0 if it failed or timed out.",
                  ["kind", "target"])
TARGET_DURATION = gauge("sparkwatch_target_scrape_duration_seconds",
                        "How long the last scrape of the target took (at most the deadline).", ["kind", "target"])
TARGET_ERRORS = counter("sparkwatch_target_scrape_errors_total",
                        "Scrape errors of the target since the exporter started, by reason.",
                        ["kind", "target", "reason"])
BUILD_INFO = info("sparkwatch_build", "sparkwatch version.", ["version"])
SCRAPE_DEADLINE = gauge("sparkwatch_scrape_deadline_seconds",
                        "The deadline the last scrape ran under (Prometheus' scrape timeout less the offset, or the configured maximum).")
#: the exporter's own metrics
SELF_METRICS = (TARGET_UP, TARGET_DURATION, TARGET_ERRORS, BUILD_INFO, SCRAPE_DEADLINE)


@dataclass
class TargetState:
    """What the landing page shows about a target, and the error counters."""

    kind: str
    name: str
    display: str
    up: Optional[bool] = None
    last_error: str = ""
    last_scrape: Optional[float] = None  # wall clock
    last_duration: Optional[float] = None
    errors: Dict[str, int] = field(default_factory=dict)


class Target:
    """A collector plus its state; at most one collection runs at a time."""

    def __init__(self, collector: Collector, display: str = ""):
        self.collector = collector
        self.kind = collector.kind
        self.name = collector.name
        self.state = TargetState(self.kind, self.name, display or self.name)
        self._lock = threading.Lock()
        self._running: Optional[_Run] = None
        self._last: Optional[_Run] = None  # the last collection that finished

    def start(self, scrape: ScrapeContext) -> Tuple["_Run", bool]:
        """The collection this scrape waits for, and whether it was already running."""
        with self._lock:
            run = self._running
            if run is not None and not run.done.is_set():
                return run, True
            run = _Run(self, scrape)
            self._running = run
        t = threading.Thread(target=run.execute, name=f"scrape-{self.kind}-{self.name}", daemon=True)
        t.start()
        return run, False

    def last_complete(self, max_age: float) -> Optional["_Run"]:
        """The last collection that finished, if it finished at most ``max_age`` seconds ago."""
        with self._lock:
            last = self._last
        if last is not None and time.monotonic() - last.finished_at <= max_age:
            return last
        return None

    def timed_out(self, run: "_Run", message: str) -> None:
        """A scrape gave up waiting for ``run``: counted now, once per collection."""
        with self._lock:
            if run.timeout_counted:
                return
            run.timeout_counted = True
            self.state.errors["timeout"] = self.state.errors.get("timeout", 0) + 1
            self.state.up = False
            self.state.last_error = message
            self.state.last_scrape = time.time()

    def _finished(self, run: "_Run") -> None:
        """Called once per collection: its errors are counted and the state updated."""
        reasons = list(run.out.errors) if run.out is not None else []
        with self._lock:
            if run.error is not None and not (run.error.reason == "timeout" and run.timeout_counted):
                reasons.append(run.error.reason)
            for r in reasons:
                self.state.errors[r] = self.state.errors.get(r, 0) + 1
            self.state.up = run.error is None
            self.state.last_error = run.error.message if run.error else ""
            self.state.last_scrape = time.time()
            self.state.last_duration = run.duration
            self._last = run


class _Run:
    """One collection of one target."""

    def __init__(self, target: Target, scrape: ScrapeContext):
        self.target = target
        self.scrape = scrape
        self.deadline = scrape.deadline
        self.done = threading.Event()
        self.out: Optional[MetricSet] = None
        self.error: Optional[TargetError] = None
        self.duration = 0.0
        self.finished_at = 0.0
        self.timeout_counted = False  # guarded by the target's lock

    def execute(self) -> None:
        start = time.monotonic()
        t = self.target
        out = MetricSet({"target": t.name})
        err: Optional[TargetError] = None
        try:
            collector = t.collector
            collector.collect(out, self.scrape)
            undeclared = sorted(m.name for m in out.samples if m not in collector.metrics)
            if undeclared:
                raise RuntimeError(f"metrics not in {type(collector).__name__}.metrics: {', '.join(undeclared)}")
        except TargetError as e:
            # kept until the next collection: not with the frames of this one (and what
            # they hold of the target's memory budget: its decoded answers)
            err = detached(e)
        except Exception as e:  # a bug in a collector must not break the scrape
            log.error("collector %s/%s failed:\n%s", t.kind, t.name, traceback.format_exc())
            err = TargetError("internal", f"internal error: {type(e).__name__}: {e}")
        if err is None and self.deadline.expired():
            err = TargetError("timeout", "scrape deadline exceeded")
        self.out, self.error = out, err
        self.finished_at = time.monotonic()
        self.duration = self.finished_at - start
        if err is not None:
            log.warning("%s target %s: %s", t.kind, t.name, err.message)
        elif out.errors:
            log.info("%s target %s: partial errors: %s", t.kind, t.name, ", ".join(sorted(set(out.errors))))
        t._finished(self)
        self.done.set()


class Scraper:
    """Scrapes a fixed set of targets (the configured ones, or one probed target)."""

    def __init__(self, targets: List[Target], max_timeout: float, offset: float):
        self.targets = targets
        self.max_timeout = max_timeout
        self.offset = offset

    def deadline_seconds(self, prometheus_timeout: Optional[str]) -> float:
        """The deadline of a scrape, in seconds: Prometheus' scrape timeout (the
        ``X-Prometheus-Scrape-Timeout-Seconds`` header, as sent) less the offset,
        at most the configured maximum, which is also what a missing, unparsable or
        too small header gives."""
        seconds = self.max_timeout
        if prometheus_timeout:
            try:
                t = float(prometheus_timeout) - self.offset
                if t > 0:
                    seconds = min(seconds, t)
            except ValueError:
                pass
        return seconds

    def scrape(self, deadline_seconds: float) -> List:
        """Scrape every target once, concurrently, and return the metric families of
        the exposition: ``sparkwatch_target_up`` and the other self-metrics, then
        the samples of the targets that are up.

        Returns by the deadline whatever the targets do: a target whose
        collection has not finished by then is down (``timeout``), or, when
        another scrape started that collection, reported with its last complete
        result if that is fresh (see the module's docstring).
        """
        deadline = Deadline(deadline_seconds)
        context = ScrapeContext(deadline)
        start = time.monotonic()
        runs = [t.start(context) for t in self.targets]
        for run, _ in runs:
            run.done.wait(max(0.0, deadline.remaining()))
        sets: List[MetricSet] = []
        up = GaugeMetricFamily(TARGET_UP.name, TARGET_UP.help, labels=list(TARGET_UP.labels))
        dur = GaugeMetricFamily(TARGET_DURATION.name, TARGET_DURATION.help, labels=list(TARGET_DURATION.labels))
        for run, shared in runs:
            t = run.target
            if not run.done.is_set() and shared:
                # another scrape's collection, not finished in time for this one
                run = t.last_complete(self.max_timeout) or run
            if run.done.is_set():
                err, out, took = run.error, run.out, run.duration
            else:  # still running: the deadline passed
                err, out, took = None, None, time.monotonic() - start
                message = f"no answer within the {deadline_seconds:.1f}s scrape deadline"
                t.timed_out(run, message)
                log.warning("%s target %s: %s", t.kind, t.name, message)
            is_up = out is not None and err is None
            up.add_metric([t.kind, t.name], 1.0 if is_up else 0.0)
            dur.add_metric([t.kind, t.name], round(took, 6))
            if is_up:
                sets.append(out)
        families = to_families(sets)
        errors = CounterMetricFamily(TARGET_ERRORS.name[: -len("_total")], TARGET_ERRORS.help,
                                     labels=list(TARGET_ERRORS.labels))
        for t in self.targets:
            for reason in REASONS:
                n = t.state.errors.get(reason, 0)
                if n:
                    errors.add_metric([t.kind, t.name, reason], n)
        build = InfoMetricFamily(BUILD_INFO.name, BUILD_INFO.help, labels=["version"])
        build.add_metric([__version__], {})
        dl = GaugeMetricFamily(SCRAPE_DEADLINE.name, SCRAPE_DEADLINE.help)
        dl.add_metric([], deadline_seconds)
        return [up, dur, errors, build, dl] + families


class Families:
    """A list of metric families as a prometheus_client collector, so that its
    exposition (text or OpenMetrics) can render them."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        """The families, as a prometheus_client registry asks a collector for them."""
        return iter(self._families)


class ProbeCache:
    """Probed targets, kept so that collectors keep state (first-seen times,
    connections) across probes; least recently used are evicted and closed."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._items: "OrderedDict[tuple, Target]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, factory) -> Target:
        """The target cached for ``key``, else ``factory()`` cached for it (evicting
        and closing the least recently used beyond ``max_size``)."""
        with self._lock:
            t = self._items.get(key)
            if t is not None:
                self._items.move_to_end(key)
                return t
            t = factory()
            self._items[key] = t
            while len(self._items) > self.max_size:
                _, old = self._items.popitem(last=False)
                try:
                    old.collector.close()
                except Exception:
                    log.debug("closing evicted probe target failed", exc_info=True)
            return t

    def targets(self) -> List[Target]:
        """The probed targets cached now (for the landing page)."""
        with self._lock:
            return list(self._items.values())
