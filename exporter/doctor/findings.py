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
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..pack.model import Alert
from ..pack.signatures import SIGNATURE_ORDER
from .reading import HostScan, Reading
from .thresholds import Thresholds

log = logging.getLogger("sparkwatch.doctor")

SEVERITIES = ("critical", "warning", "info")
#: the signature of a finding about what makes sparkwatch blind (the pack's target alerts, and more)
SETUP = "setup"
#: the pack's signature of the target alerts, reported as SETUP
TARGETS = "targets"
JVM_KEY = ("target", "process", "app_id", "executor_id", "pid")
APP_KEY = ("target", "app_id", "app_name")
DOCS_JVM = "docs/jvm.md"
DOCS_LIVY = "docs/livy.md"
DOCS_CONFIG = "docs/configuration.md"


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
    Made with :func:`judges`."""

    def __init__(self, func: Callable[["Judge"], None], alerts: Sequence[Alert]):
        self.func = func
        self.alerts: Tuple[Alert, ...] = tuple(alerts)
        self.name = func.__name__
        self.module = func.__module__
        self.__doc__ = func.__doc__

    def __call__(self, judge: "Judge") -> None:
        self.func(judge)

    def __repr__(self) -> str:
        return f"<judgement {self.module}.{self.name}: {', '.join(a.name for a in self.alerts) or 'setup'}>"


def judges(*alerts: Alert) -> Callable[[Callable[["Judge"], None]], Judgement]:
    """Declare a judgement and the alerts it applies::

        @judges(JVM_GC_TIME_HIGH)
        def s3_gc(j: Judge) -> None:
            ...
            j.add(JVM_GC_TIME_HIGH, target=..., subject=..., summary=..., evidence={...})

    The modules of :mod:`.judgements` are read for the judgements they define, in order."""
    return lambda func: Judgement(func, alerts)


class Judge:
    """The readings and thresholds every judgement reads, and the findings they add.

    ``readings``: one, or two with ``--watch`` (``first`` and ``last``, ``dt`` seconds
    apart); ``thresholds``: the pack's parameters under the rules configuration;
    ``host``: the JVMs of this host (None when not scanned); ``config``: the exporter's
    configuration. :meth:`judge` runs every judgement (those of :mod:`.judgements`
    unless ``judgements`` is given) and returns the findings, worst first."""

    def __init__(self, readings: List[Reading], thresholds: Thresholds, host: Optional[HostScan], config,
                 judgements: Optional[Sequence[Judgement]] = None):
        if judgements is None:
            from .judgements import JUDGEMENTS as judgements
        self.judgements = list(judgements)
        self.readings = readings
        self.first, self.last = readings[0], readings[-1]
        self.watching = len(readings) > 1
        self.dt = self.last.monotonic - self.first.monotonic if self.watching else 0.0
        self.t = thresholds
        self.host = host
        self.config = config
        self.findings: List[Finding] = []
        self._running: Optional[Judgement] = None

    def judge(self) -> List[Finding]:
        for rule in self.judgements:
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
            fix: Optional[str] = None, runbook: Optional[str] = None, **kw) -> None:
        """A finding (``target``, ``subject``, ``summary``, ``evidence`` as keywords).
        For an ``alert``: by default its signature, severity, action and runbook, and
        nothing when the rules configuration disables it. Without one: a setup finding
        that names its own ``signature``, ``severity``, ``fix`` and ``runbook``."""
        if alert is not None:
            if self._running is not None and alert not in self._running.alerts:
                raise ValueError(f"{alert.name} is not an alert of the judgement {self._running.name}")
            if not self.t.enabled(alert):
                return
            signature = signature or (SETUP if alert.signature == TARGETS else alert.signature)
            severity = severity or self.t.severity(alert)
            fix = fix if fix is not None else alert.action
            runbook = runbook or self.t.runbook(alert)
        ev = {k: _num(float(v)) for k, v in kw.pop("evidence", {}).items() if v is not None and math.isfinite(v)}
        self.findings.append(Finding(severity, signature, kw["target"], kw["subject"], kw["summary"], ev,
                                     fix or "", runbook or ""))

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
        return f"application {labels.get('app_name') or '?'} ({labels.get('app_id') or '?'})"

    @staticmethod
    def query_subject(labels: Dict[str, str]) -> str:
        return f"query {labels.get('query') or '?'} of {Judge.app_subject(labels)}"
