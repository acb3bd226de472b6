"""What Prometheus knows and one or two readings cannot: the alerting pack's alerts
that are firing or pending for the targets the doctor checks, and the numbers
behind them (``sparkwatch doctor --prometheus URL``).

A :class:`PrometheusSource` (built from the command line's ``--prometheus*``
flags; a bad one is a :class:`~sparkwatch.config.ConfigError` naming the flag)
asks Prometheus' HTTP API, at one instant:

1. ``/api/v1/rules?type=alert``: which of the pack's alerts Prometheus has
   loaded, and whether their rules evaluate;
2. ``ALERTS{alertstate=~"firing|pending"}`` and ``ALERTS_FOR_STATE`` for the
   pack's alert names (never spelled here: the ``Alert`` objects of
   ``exporter/pack/alerts/`` give them) and the configured targets' names, plus
   the ``--prometheus.selector`` label matchers: the active alerts and since when;
3. for each alert with active series, its own expression (the rule's value) and
   its ``evidence`` expressions (the floor now and a trend window ago, the use
   against its limit...), rendered by the rule generator under the doctor's
   rules configuration and joined to its active series (``and on (...) ALERTS``),
   so the answers hold those series only.

Prometheus' answers are read as any target's are: every request under one
deadline (``--prometheus.timeout``) with a cap per request, bodies capped
(:data:`MAX_ANSWER_BYTES`), JSON decoded within the memory budget of
:func:`sparkwatch.httpclient.decode_json`, no redirects, credentials only to
Prometheus' own origin; at most :data:`MAX_SERIES` series of an answer, label
values made printable and cut to :data:`MAX_LABEL_CHARS`. A Prometheus that
cannot be read gives a :class:`History` with ``error`` set (a setup finding),
never an exception.

Series without a ``target`` label are the doctor's when their ``process`` names
one of its targets or Livy processes (S2's restart alerts join by process), and
those with neither (the exporter's own ``up``) only when
``--prometheus.selector`` says which exporter is this one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pydantic import ValidationError

from ..collector import Deadline, TargetError, safe_text
from ..config import ConfigError, iter_targets
from ..httpclient import HttpClient, decode_json
from ..pack.alerts import ALERTS
from ..pack.model import Alert
from ..pack.promql import check_matchers, join_matchers
from ..pack.rules import render_expr, static_labels
from ..targetconfig import HttpTarget, redact_url
from .thresholds import Thresholds

__all__ = ["Active", "History", "PrometheusSource", "describe", "subject_of", "target_of"]

#: an answer larger than this is refused (``limit``)
MAX_ANSWER_BYTES = 8 * 1024 * 1024
#: series of one answer the doctor reads, at most (the rest are counted, not read)
MAX_SERIES = 1000
#: labels of one series, and characters of a label name or value, kept at most
MAX_LABELS = 64
MAX_LABEL_CHARS = 200
#: characters of an error Prometheus or a rule reports, kept at most
MAX_ERROR_CHARS = 300
#: seconds all of Prometheus' answers may take together (--prometheus.timeout), and one request at most
DEFAULT_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
STATES = ("firing", "pending")
#: the labels of ALERTS and ALERTS_FOR_STATE that are not the alert's
_ALERT_META = ("__name__", "alertname", "alertstate")
#: HTTP statuses with which Prometheus' API still answers JSON that says what is wrong
_API_ERROR_STATUSES = (200, 400, 422, 503)

#: the command line's flags, by the key of the HTTP target model they set
FLAGS = {
    "url": "--prometheus",
    "basic_auth": "--prometheus.user",
    "basic_auth.username": "--prometheus.user",
    "basic_auth.password_file": "--prometheus.password-file",
    "bearer_token_file": "--prometheus.bearer-token-file",
    "tls_config": "--prometheus.ca-file",
    "tls_config.ca_file": "--prometheus.ca-file",
}


@dataclass
class Active:
    """One series of one of the pack's alerts that Prometheus has firing or pending."""

    alert: Alert
    state: str  # firing | pending
    labels: Dict[str, str]  # the alert's labels (its series' and its rule's), without alertname/alertstate
    since: Optional[float] = None  # Unix time it became active (ALERTS_FOR_STATE), if known
    value: Optional[float] = None  # the rule's value now, if Prometheus gave it
    evidence: Dict[str, float] = field(default_factory=dict)  # the alert's evidence, by name

    def numbers(self) -> Dict[str, Optional[float]]:
        """What every finding from Prometheus carries as evidence, besides its own."""
        return {"prometheus_firing": 1.0 if self.state == "firing" else 0.0, "rule_value": self.value}


@dataclass
class History:
    """What Prometheus said, at ``at`` (Unix time)."""

    url: str  # where (redacted), for the findings
    at: float
    active: List[Active] = field(default_factory=list)
    #: why nothing could be read (empty when Prometheus answered); ``reason`` is a TargetError reason
    error: str = ""
    reason: str = ""
    #: what could not be read although Prometheus answered (an evidence query, the rules)
    problems: List[str] = field(default_factory=list)
    #: the pack's alerts (enabled by the rules configuration) Prometheus has no rule of; None: not known
    missing: Optional[List[Alert]] = None
    #: the pack's alerts whose rule Prometheus fails to evaluate, with its error
    failing: List[Tuple[Alert, str]] = field(default_factory=list)


def describe(active: Active, thresholds: Thresholds, at: float, value: bool = False) -> str:
    """What Prometheus says about one active series: its state, since when (and ``value``: the
    rule's value, for a finding that has no numbers of its own)."""
    from .findings import duration

    since = ""
    if active.since is not None and active.since <= at:
        since = f" for {duration(at - active.since)}"
    if active.state == "firing":
        text = f"Prometheus: {active.alert.name} firing{since}"
    else:
        fires = duration(thresholds.for_seconds(active.alert))
        text = f"Prometheus: {active.alert.name} pending{since} (it fires after {fires})"
    if value and active.value is not None and math.isfinite(active.value):
        text += f"; the rule's value: {active.value:.4g}"
    return text + "."


def subject_of(alert: Alert, labels: Dict[str, str]) -> str:
    """What an alert's series is about, from its labels, named as the judgements name it."""
    app = f"application {labels.get('app_name') or '?'} ({labels.get('app_id') or '?'})"
    where = f" on {labels['instance']}" if labels.get("instance") else ""
    if labels.get("query"):
        return f"query {labels['query']} of {app}"
    if labels.get("process") and labels.get("target"):
        extra = [f"{k.replace('_id', '')} {labels[k]}" for k in ("app_id", "executor_id", "pid") if labels.get(k)]
        return f"process {labels['process']}" + (f" ({', '.join(extra)})" if extra else "") + where
    if labels.get("executor_id") and labels.get("app_id"):
        return f"executor {labels['executor_id']} of {app}"
    if labels.get("app_id"):
        return app + "".join(f", {k} {labels[k]}" for k in ("queue", "source") if labels.get(k))
    if alert.problem == "target-down" and labels.get("kind"):
        return f"{labels['kind']} target{where}"
    if labels.get("kind"):
        return f"Livy {labels['kind']} sessions"
    if labels.get("process"):
        return f"Livy process {labels['process']}"
    if labels.get("target"):
        return f"process {labels['target']}{where}"
    if labels.get("instance"):
        return f"exporter {labels['instance']} (job {labels.get('job') or '?'})"
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "?"


def target_of(labels: Dict[str, str], history: "History") -> str:
    """The sparkwatch target a finding from Prometheus is about (the exporter, the process, or
    Prometheus itself for a series that names neither)."""
    return labels.get("target") or labels.get("process") or labels.get("instance") or history.url


def _regex_literal(names: Iterable[str], or_missing: bool = True) -> str:
    """A PromQL string literal: an alternation of ``names`` (RE2 syntax, anchored by PromQL),
    with ``or_missing`` also the empty string (a series without the label)."""
    special = set("\\.+*?()|[]{}^$")
    alts = ["".join("\\" + c if c in special else c for c in n) for n in sorted(set(names))]
    body = "|".join(alts + ([""] if or_missing else []))
    return json.dumps(body, ensure_ascii=False)  # Go's escapes, which PromQL reads, include JSON's


def _api_error(doc, where: str) -> str:
    err = doc.get("error") if isinstance(doc, dict) else None
    kind = doc.get("errorType") if isinstance(doc, dict) else None
    text = safe_text(f"{kind or 'error'}: {err if err is not None else 'no error given'}", MAX_ERROR_CHARS)
    return f"{where}: Prometheus answered {text}"


class PrometheusSource:
    """Prometheus' HTTP API, as the command line's flags describe it."""

    def __init__(self, url: str, selector: str = "", timeout: float = DEFAULT_TIMEOUT, user: Optional[str] = None,
                 password_file: Optional[str] = None, bearer_token_file: Optional[str] = None,
                 ca_file: Optional[str] = None):
        spec: Dict[str, object] = {"url": url, "timeout": min(REQUEST_TIMEOUT, timeout),
                                   "redirects_allowed_to": []}  # no redirect is followed
        if password_file is not None and user is None:
            raise ConfigError("--prometheus.password-file: needs --prometheus.user")
        if user is not None:
            spec["basic_auth"] = {"username": user, **({"password_file": password_file} if password_file else {})}
        if bearer_token_file is not None:
            spec["bearer_token_file"] = bearer_token_file
        if ca_file is not None:
            spec["tls_config"] = {"ca_file": ca_file}
        try:
            self.target = HttpTarget.model_validate(spec)
        except ValidationError as e:
            lines = []
            for err in e.errors(include_url=False, include_input=False):
                key = ".".join(str(p) for p in err["loc"])
                msg = err["msg"][len("Value error, "):] if err["msg"].startswith("Value error, ") else err["msg"]
                flag = FLAGS.get(key, "--prometheus.user / --prometheus.bearer-token-file" if not key else key)
                lines.append(f"{flag}: {msg}")
            raise ConfigError("\n".join(lines)) from None
        try:
            self.selector = check_matchers(selector)
        except ValueError as e:
            raise ConfigError(f"--prometheus.selector: {e}") from None
        self.timeout = timeout
        self.url = redact_url(self.target.url)

    # ------------------------------------------------------------ reading

    def read(self, config, thresholds: Thresholds) -> History:
        """The pack's active alerts for the targets of ``config`` and the numbers behind them."""
        history = History(self.url, time.time())
        client = HttpClient(self.target, max_body_bytes=MAX_ANSWER_BYTES)
        deadline = Deadline(self.timeout)
        try:
            _Reading(self, client, deadline, config, thresholds, history).run()
        except TargetError as e:
            history.error, history.reason = e.message, e.reason
            history.active = []
        finally:
            client.close()
        return history


class _Reading:
    """One reading of Prometheus into a :class:`History`."""

    def __init__(self, source: PrometheusSource, client: HttpClient, deadline: Deadline, config,
                 thresholds: Thresholds, history: History):
        self.source, self.client, self.deadline, self.t, self.history = source, client, deadline, thresholds, history
        self.alerts = {a.name: a for a in ALERTS if thresholds.enabled(a)}
        self.targets = {tc.display_name() for _, tc in iter_targets(config)}
        # the processes target-less alerts may name: S2's restart alerts join by `process`
        self.processes = {tc.display_name() for tc in config.jvm}
        for tc in config.zookeeper:
            if tc.livy_state_store.process:
                self.processes.add(tc.livy_state_store.process)
        for tc in config.livy:
            if getattr(tc, "process", None):
                self.processes.add(tc.process)
        self.rule_labels: Dict[str, List[str]] = {}

    def run(self) -> None:
        if not self.alerts:
            return
        self.rules()
        self.find_active()
        by_alert: Dict[Alert, List[Active]] = {}
        for a in self.history.active:
            by_alert.setdefault(a.alert, []).append(a)
        for alert, active in by_alert.items():
            try:
                self.values(alert, active)
                for name, ev in alert.evidence.items():
                    self.evidence(alert, name, ev, active)
            except TargetError as e:
                if e.reason in ("timeout", "connection", "tls", "auth"):
                    raise
                self.history.problems.append(f"{alert.name}: {e.message}")

    # ------------------------------------------------------------ the API

    def get(self, path: str, params: Dict[str, str]) -> dict:
        resp = self.client.get(path, self.deadline, params, ok_statuses=_API_ERROR_STATUSES)
        doc = decode_json(resp.content, path, resp.headers.get("Content-Type", ""), dict, budget=self.client.budget)
        del resp
        if doc.get("status") != "success":
            raise TargetError("invalid_response", _api_error(doc, f"GET {path}"))
        if not isinstance(doc.get("data"), dict):
            raise TargetError("invalid_response", f"GET {path}: no data in the answer")
        return doc["data"]

    def query(self, expr: str) -> List[Tuple[Dict[str, str], float]]:
        """An instant query at the history's instant: (labels, value) per series, at most
        MAX_SERIES of them, labels printable and cut."""
        data = self.get("/api/v1/query", {"query": expr, "time": f"{self.history.at:.3f}"})
        if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise TargetError("invalid_response", "GET /api/v1/query: not an instant vector")
        result = data["result"]
        if len(result) > MAX_SERIES:
            self.history.problems.append(f"an answer held {len(result):,} series; the first {MAX_SERIES:,} "
                                         "were read (narrow it with --prometheus.selector)")
        out = []
        for item in result[:MAX_SERIES]:
            metric = item.get("metric") if isinstance(item, dict) else None
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2 \
                    or not isinstance(value[1], str):
                continue
            try:
                v = float(value[1][:64])
            except ValueError:
                continue
            labels = {safe_text(k, MAX_LABEL_CHARS): safe_text(lv, MAX_LABEL_CHARS)
                      for k, lv in list(metric.items())[:MAX_LABELS] if isinstance(k, str) and isinstance(lv, str)}
            out.append((labels, v))
        return out

    # ------------------------------------------------------------ the steps

    def rules(self) -> None:
        """Which of the pack's alerts Prometheus has loaded, whether they evaluate, their static labels."""
        try:
            data = self.get("/api/v1/rules", {"type": "alert"})
        except TargetError as e:
            if e.reason in ("timeout", "connection", "tls", "auth", "http_status"):
                raise
            self.history.problems.append(f"the rules Prometheus has loaded: {e.message}")
            return
        loaded: Dict[str, Tuple[str, str]] = {}
        groups = data.get("groups")
        for g in groups if isinstance(groups, list) else []:
            rules = g.get("rules") if isinstance(g, dict) else None
            for r in rules if isinstance(rules, list) else []:
                if not isinstance(r, dict) or r.get("name") not in self.alerts:
                    continue
                name = r["name"]
                labels = r.get("labels")
                if isinstance(labels, dict):
                    self.rule_labels.setdefault(name, [str(k) for k in labels][:MAX_LABELS])
                if r.get("health") == "err":
                    loaded[name] = ("err", safe_text(r.get("lastError") or "", MAX_ERROR_CHARS))
                else:
                    loaded.setdefault(name, ("ok", ""))
        self.history.missing = [a for n, a in self.alerts.items() if n not in loaded]
        self.history.failing = [(self.alerts[n], err) for n, (health, err) in loaded.items() if health == "err"]

    def selector(self, metric: str, alerts: Sequence[Alert], states: bool = True) -> str:
        """``metric`` (ALERTS or ALERTS_FOR_STATE) of ``alerts``, the doctor's targets and the selector."""
        parts = [f"alertname=~{_regex_literal((a.name for a in alerts), or_missing=False)}"]
        if states:
            parts.append(f'alertstate=~"{"|".join(STATES)}"')
        parts.append(f"target=~{_regex_literal(self.targets)}")
        return f"{metric}{{{join_matchers(', '.join(parts), self.source.selector)}}}"

    def ours(self, labels: Dict[str, str]) -> bool:
        if "target" in labels:
            return labels["target"] in self.targets
        if "process" in labels:
            return labels["process"] in self.processes
        return bool(self.source.selector)  # `up` of an exporter: only when the selector says which

    def find_active(self) -> None:
        alerts = list(self.alerts.values())
        for labels, _ in self.query(self.selector("ALERTS", alerts)):
            alert = self.alerts.get(labels.get("alertname", ""))
            state = labels.get("alertstate")
            if alert is None or state not in STATES:
                continue
            own = {k: v for k, v in labels.items() if k not in _ALERT_META}
            if self.ours(own):
                self.history.active.append(Active(alert, state, own))
        if not self.history.active:
            return
        since: Dict[Tuple[str, frozenset], float] = {}
        for labels, v in self.query(self.selector("ALERTS_FOR_STATE", alerts, states=False)):
            own = frozenset((k, v2) for k, v2 in labels.items() if k not in _ALERT_META)
            since[(labels.get("alertname", ""), own)] = v
        for a in self.history.active:
            got = since.get((a.alert.name, frozenset(a.labels.items())))
            if got is not None and math.isfinite(got) and got > 0:
                a.since = got

    def joined(self, alert: Alert, expr: str, on: str) -> List[Tuple[Dict[str, str], float]]:
        """``expr`` for the alert's active series only: ``and on (on)`` (``ignoring (...)`` when
        ``on`` is None: every label but the rule's static ones) its ALERTS series."""
        match = f"on ({on})" if on is not None else \
            f"ignoring ({', '.join(['alertname', 'alertstate'] + self.static(alert))})"
        return self.query(f"(\n{expr}\n)\nand {match}\n{self.selector('ALERTS', [alert])}")

    def static(self, alert: Alert) -> List[str]:
        """The labels the alert's rule adds: as Prometheus has loaded it, else as the rules configuration
        generates it."""
        names = self.rule_labels.get(alert.name)
        return sorted(names if names is not None else static_labels(alert, self.t.cfg))

    def values(self, alert: Alert, active: List[Active]) -> None:
        """The rule's value for each active series: its expression, as the doctor's rules configuration
        renders it."""
        for labels, v in self.joined(alert, render_expr(alert, self.t.cfg), None):
            for a in active:  # some functions keep the metric's name (last_over_time), the alert has none
                if all(a.labels.get(k) == lv for k, lv in labels.items() if k != "__name__"):
                    a.value = v

    def evidence(self, alert: Alert, name: str, ev, active: List[Active]) -> None:
        on = [x.strip() for x in ev.on.split(",") if x.strip()]
        for labels, v in self.joined(alert, render_expr(alert, self.t.cfg, ev.expr), ", ".join(on)):
            for a in active:
                if name not in a.evidence and all(a.labels.get(k, "") == labels.get(k, "") for k in on):
                    a.evidence[name] = v
