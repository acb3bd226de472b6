"""What every judgement of the doctor builds on: the :class:`Finding`, the
:class:`Judge` (the readings, the thresholds, the helpers that read series and
trends out of them) and the :func:`judges` decorator.

The judgements themselves live in :mod:`.judgements`, one module per signature
as the pack's alerts do (``exporter/pack/alerts/``). Each is declared against
the ``Alert`` objects it applies (``@judges(JVM_GC_TIME_HIGH)``): a finding for
an alert takes that alert's severity (as a rules configuration sets it), its
action as the fix, and its runbook's path, and is reported only if the rules
configuration leaves the alert enabled. A judgement reports only the alerts it
declares; findings about the doctor's own setup (``setup``) name no alert.

With ``--prometheus`` the judgements declared ``@judges(..., prometheus=True)``
run after the others, on what Prometheus says (:mod:`.prometheus`): the pack's
alerts that are firing or pending and the numbers behind them. A finding they
add for a series a reading's finding already covers (the same alert, target
and identifying labels) joins that finding instead of repeating it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..pack.model import Alert
from ..pack.signatures import SIGNATURE_ORDER
from .reading import HostScan, Reading
from .thresholds import Thresholds

if TYPE_CHECKING:  # pragma: no cover
    from .prometheus import Active, History

log = logging.getLogger("sparkwatch.doctor")

SEVERITIES = ("critical", "warning", "info")
#: the signature of a finding about what makes sparkwatch blind (the pack's target alerts, and more)
SETUP = "setup"
#: the pack's signature of the target alerts, reported as SETUP
TARGETS = "targets"
JVM_KEY = ("target", "process", "app_id", "executor_id", "pid")
APP_KEY = ("target", "app_id", "app_name", "attempt_id")
DOCS_JVM = "docs/jvm.md"
DOCS_LIVY = "docs/livy.md"
DOCS_CONFIG = "docs/configuration.md"
DOCS_DOCTOR = "docs/doctor.md"
#: the labels that say which series a finding is about (a JVM, an application, a query, ...):
#: a Prometheus finding joins a reading's finding of the same alert when the labels both have agree
IDENTITY = ("target", "process", "app_id", "attempt_id", "executor_id", "pid", "query", "kind", "queue", "heap",
            "space")


@dataclass
class Finding:
    """One verdict of the doctor, as printed (:mod:`.render`) and as JSON."""

    severity: str  # critical | warning | info
    signature: str  # S1..S5 | setup
    target: str  # the sparkwatch target it was read from
    subject: str  # what it is about: a process, an application, a query
    summary: str  # the verdict, with the numbers that prove it
    evidence: Dict[str, float] = field(default_factory=dict)
    fix: str = ""
    runbook: str = ""  # path in the repository: alerts/runbooks/<Alert>.md or docs/<page>.md

    def as_dict(self) -> dict:
        return asdict(self)

    def sort_key(self):
        """Worst first, then in the pack's order of signatures (setup where the target alerts are)."""
        sig = TARGETS if self.signature == SETUP else self.signature
        return (SEVERITIES.index(self.severity), SIGNATURE_ORDER.index(sig), self.target, self.subject)


# --------------------------------------------------------------------------
# Formatting numbers for a verdict


def count(v: float) -> str:
    return f"{int(round(v)):,}"


def pct(ratio: float) -> str:
    p = ratio * 100
    return f"{p:.0f}%" if p >= 10 or p == int(p) else f"{p:.1f}%"


def size(b: float) -> str:
    for unit, n in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(b) >= n:
            return f"{b / n:.1f} {unit}"
    return f"{int(b)} B"


def duration(s: float) -> str:
    s = float(s)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(s) >= n:
            v = s / n
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{s:.0f}s"


def _num(v: float) -> float:
    """A number for the JSON evidence: an integer when it is one."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return round(v, 3) if isinstance(v, float) else v


def key_of(labels: Dict[str, str], keys: Iterable[str]) -> Tuple[str, ...]:
    """The values of ``keys`` in ``labels`` ("" for a missing one): one series' identity."""
    return tuple(labels.get(k, "") for k in keys)


# --------------------------------------------------------------------------
# Judgements


class Judgement:
    """A judgement: a function of the :class:`Judge` that reports findings, and the
    alerts of the pack it applies (none for one that reports setup findings only).
    ``prometheus``: it judges what Prometheus says (runs only with ``--prometheus``);
    ``fallback``: it reports the alerts no other Prometheus judgement declares.
    Made with :func:`judges`."""

    def __init__(self, func: Callable[["Judge"], None], alerts: Sequence[Alert], prometheus: bool = False,
                 fallback: bool = False):
        self.func = func
        self.alerts: Tuple[Alert, ...] = tuple(alerts)
        self.prometheus = prometheus
        self.fallback = fallback
        self.name = func.__name__
        self.module = func.__module__
        self.__doc__ = func.__doc__

    def __call__(self, judge: "Judge") -> None:
        self.func(judge)

    def __repr__(self) -> str:
        return f"<judgement {self.module}.{self.name}: {', '.join(a.name for a in self.alerts) or 'setup'}>"


def judges(*alerts: Alert, prometheus: bool = False,
           fallback: bool = False) -> Callable[[Callable[["Judge"], None]], Judgement]:
    """Declare a judgement and the alerts it applies::

        @judges(JVM_GC_TIME_HIGH)
        def s3_gc(j: Judge) -> None:
            ...
            j.add(JVM_GC_TIME_HIGH, target=..., subject=..., summary=..., evidence={...}, labels=lbl)

        @judges(JVM_THREADS_LEAKING, prometheus=True)
        def s3_threads_leaking_history(j: Judge) -> None:
            for active in j.active(JVM_THREADS_LEAKING):
                j.add_active(active, summary=..., evidence={...})

    The modules of :mod:`.judgements` are read for the judgements they define, in order."""
    return lambda func: Judgement(func, alerts, prometheus, fallback)


class Judge:
    """The readings and thresholds every judgement reads, and the findings they add.

    ``readings``: one, or two with ``--watch`` (``first`` and ``last``, ``dt`` seconds
    apart); ``thresholds``: the pack's parameters under the rules configuration;
    ``host``: the JVMs of this host (None when not scanned); ``config``: the exporter's
    configuration. :meth:`judge` runs every judgement (those of :mod:`.judgements`
    unless ``judgements`` is given) and returns the findings, worst first."""

    def __init__(self, readings: List[Reading], thresholds: Thresholds, host: Optional[HostScan], config,
                 judgements: Optional[Sequence[Judgement]] = None, history: Optional["History"] = None):
        if judgements is None:
            from .judgements import JUDGEMENTS as judgements
        self.judgements = list(judgements)
        #: what Prometheus says (``--prometheus``), None without it
        self.history = history
        self.readings = readings
        self.first, self.last = readings[0], readings[-1]
        self.watching = len(readings) > 1
        self.dt = self.last.monotonic - self.first.monotonic if self.watching else 0.0
        self.t = thresholds
        self.host = host
        self.config = config
        self.findings: List[Finding] = []
        self._running: Optional[Judgement] = None
        #: the findings of the readings, by alert, with the labels of the series they are about
        self._read: Dict[Alert, List[Tuple[Dict[str, str], Finding]]] = {}
        #: the alerts a Prometheus judgement other than the fallback reports
        self.prometheus_judged = {a for rule in self.judgements if rule.prometheus and not rule.fallback
                                  for a in rule.alerts}

    def judge(self) -> List[Finding]:
        rules = [r for r in self.judgements if not r.prometheus]
        if self.history is not None:  # after the readings' judgements, whose findings they may join
            rules += [r for r in self.judgements if r.prometheus and not r.fallback]
            rules += [r for r in self.judgements if r.prometheus and r.fallback]
        for rule in rules:
            self._running = rule
            try:
                rule(self)
            except Exception as e:  # a bug in one judgement must not hide the others' findings
                log.exception("doctor rule %s failed", rule.name)
                self.findings.append(Finding("info", SETUP, "sparkwatch", "sparkwatch doctor",
                                             f"The judgement {rule.name} failed ({type(e).__name__}: {e}); "
                                             "what it checks was not judged.", {}, "Report this as a bug.", ""))
        self._running = None
        return sorted(self.findings, key=Finding.sort_key)

    # ------------------------------------------------------------ adding a finding

    def add(self, alert: Optional[Alert], signature: Optional[str] = None, severity: Optional[str] = None,
            fix: Optional[str] = None, runbook: Optional[str] = None, labels: Optional[Dict[str, str]] = None,
            **kw) -> Optional[Finding]:
        """A finding (``target``, ``subject``, ``summary``, ``evidence`` as keywords).
        For an ``alert``: by default its signature, severity, action and runbook, and
        nothing when the rules configuration disables it. Without one: a setup finding
        that names its own ``signature``, ``severity``, ``fix`` and ``runbook``.
        ``labels``: those of the series it is about (a Prometheus finding about the same
        series joins it)."""
        if alert is not None:
            if self._running is not None and alert not in self._running.alerts:
                raise ValueError(f"{alert.name} is not an alert of the judgement {self._running.name}")
            if not self.t.enabled(alert):
                return None
            signature = signature or (SETUP if alert.signature == TARGETS else alert.signature)
            severity = severity or self.t.severity(alert)
            fix = fix if fix is not None else alert.action
            runbook = runbook or self.t.runbook(alert)
        if labels is not None and labels.get("app_id") and self.app_ended(dict(labels, target=kw["target"])):
            severity = "info"  # an application that has ended: nothing anyone can act on now, at most said
        ev = {k: _num(float(v)) for k, v in kw.pop("evidence", {}).items() if v is not None and math.isfinite(v)}
        finding = Finding(severity, signature, kw["target"], kw["subject"], kw["summary"], ev, fix or "",
                          runbook or "")
        self.findings.append(finding)
        if alert is not None and labels is not None and not (self._running and self._running.prometheus):
            self._read.setdefault(alert, []).append((dict(labels, target=kw["target"]), finding))
        return finding

    # ------------------------------------------------------------ what Prometheus says

    def active(self, *alerts: Alert) -> List["Active"]:
        """The series of ``alerts`` Prometheus has firing or pending (none without ``--prometheus``)."""
        if self.history is None:
            return []
        return [a for a in self.history.active if a.alert in alerts]

    def add_active(self, active: "Active", summary: str, evidence: Optional[Dict[str, Optional[float]]] = None,
                   fix: Optional[str] = None) -> None:
        """A finding for an alert Prometheus has firing or pending (``active``): the alert's
        severity when it fires, one step lower while it is pending (its condition holds,
        not yet for its ``for:``); ``summary`` with the numbers, then what Prometheus says.
        When a reading's finding is about the same series (the same alert; the target and
        the identifying labels they both carry agree), it joins that finding."""
        from .prometheus import describe, subject_of, target_of

        alert = active.alert
        ev = dict(evidence or {}, **active.numbers())
        for labels, finding in self._read.get(alert, []):
            shared = [k for k in IDENTITY if k in labels and k in active.labels]
            if shared and all(labels[k] == active.labels[k] for k in shared):
                finding.summary = f"{finding.summary} {describe(active, self.t, self.history.at)}"
                finding.evidence.update({k: _num(float(v)) for k, v in ev.items()
                                         if v is not None and math.isfinite(v) and k not in finding.evidence})
                severity = self.t.severity(alert) if active.state == "firing" else finding.severity
                if SEVERITIES.index(severity) < SEVERITIES.index(finding.severity):
                    finding.severity = severity
                return
        severity = self.t.severity(alert)
        if active.state != "firing":
            severity = SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
        state = describe(active, self.t, self.history.at, value=not evidence)  # the rule's value: no other numbers
        self.add(alert, severity=severity, fix=fix, target=target_of(active.labels, self.history),
                 subject=subject_of(alert, active.labels), summary=f"{summary} {state}", evidence=ev)

    def add_rising_count(self, active: "Active", what: str, key: str, meaning: str) -> None:
        """A finding for an alert on a count whose floor rises (the pack's ``rising_floor`` with its
        ``min_increase``, ``floor_window`` and ``trend_window``): the floor now and a trend window ago
        (its ``floor`` and ``floor_before`` evidence), as ``{key}_floor`` and ``{key}_floor_before``."""
        alert = active.alert
        trend, floor_window = self.t.seconds(alert, "trend_window"), self.t.seconds(alert, "floor_window")
        min_increase = self.t.number(alert, "min_increase")
        floor, before = active.evidence.get("floor"), active.evidence.get("floor_before")
        if floor is not None and before is not None:
            text = (f"The floor of {what} (the fewest over {duration(floor_window)}) rose from {count(before)} to "
                    f"{count(floor)} in {duration(trend)}")
        else:
            text = f"The floor of {what} rose by more than {count(min_increase)} in {duration(trend)}"
        self.add_active(active, summary=f"{text}: {meaning}", evidence={
            f"{key}_floor": floor, f"{key}_floor_before": before, "min_increase": min_increase,
            "trend_window_seconds": trend})

    # ------------------------------------------------------------ reading series

    def series(self, reading: Reading, name: str, keys: Iterable[str] = JVM_KEY,
               where: Optional[Callable[[Dict[str, str]], bool]] = None) -> Dict[tuple, Tuple[Dict[str, str], float]]:
        """key -> (labels, value) of a metric in one reading (``where`` filters on the labels)."""
        keys = tuple(keys)
        out = {}
        for _, labels, v in reading.find(name):
            if where is None or where(labels):
                out[key_of(labels, keys)] = (labels, v)
        return out

    def trend(self, name: str, keys: Iterable[str] = JVM_KEY, where=None):
        """key -> (labels, first value or None, last value) of a series in both readings."""
        last = self.series(self.last, name, keys, where)
        first = self.series(self.first, name, keys, where) if self.watching else {}
        return {k: (lv[0], first[k][1] if k in first else None, lv[1]) for k, lv in last.items()}

    def values_of(self, name: str, keys, k) -> List[float]:
        """The values of one series (key ``k``) in every reading that has it."""
        out = []
        for r in self.readings:
            got = self.series(r, name, keys).get(k)
            if got is not None:
                out.append(got[1])
        return out

    def uptime(self, labels: Dict[str, str]) -> Optional[float]:
        """Seconds a JVM (jvm collector labels) has been running."""
        for _, lbl, v in self.last.find("jvm_start_time_seconds"):
            if key_of(lbl, JVM_KEY) == key_of(labels, JVM_KEY):
                return self.last.wall - v
        return None

    # ------------------------------------------------------------ naming what a finding is about

    def jvm_subject(self, labels: Dict[str, str]) -> str:
        s = f"process {labels.get('process') or '?'}"
        extra = []
        if labels.get("app_id"):
            extra.append(f"app {labels['app_id']}")
        if labels.get("executor_id"):
            extra.append(f"executor {labels['executor_id']}")
        pid = labels.get("pid") or ""
        if not pid and self.host is not None:
            pids = self.host.pids_of(labels.get("target", ""), labels.get("process", ""), labels.get("app_id", ""),
                                     labels.get("executor_id", ""))
            if len(pids) == 1:
                pid = str(pids[0])
        if pid:
            extra.append(f"pid {pid}")
        return s + (f" ({', '.join(extra)})" if extra else "")

    @staticmethod
    def app_subject(labels: Dict[str, str]) -> str:
        attempt = f", attempt {labels['attempt_id']}" if labels.get("attempt_id") else ""
        return f"application {labels.get('app_name') or '?'} ({labels.get('app_id') or '?'}{attempt})"

    def app_ended(self, labels: Dict[str, str]) -> Optional[str]:
        """``completed`` or ``stale`` (a history server's: see docs/spark.md) for the
        application (attempt) of ``labels`` in the last reading; None while it runs."""
        k = key_of(labels, APP_KEY)
        for name, state in (("spark_app_completed", "completed"), ("spark_app_stale", "stale")):
            got = self.series(self.last, name, APP_KEY).get(k)
            if got is not None and got[1] == 1:
                return state
        return None

    @staticmethod
    def query_subject(labels: Dict[str, str]) -> str:
        return f"query {labels.get('query') or '?'} of {Judge.app_subject(labels)}"
