"""Small PromQL helpers for the pack: durations, templates, selector injection.

Alert expressions are written as plain PromQL with ``$param`` placeholders
(``$window``; a duration parameter also gives ``$window_s``, its value in
seconds). Every metric the exporter exports (one prefix per target kind of
``exporter/kinds.py``, and ``sparkwatch_``) gets the configured label matchers
injected into its selector, so the user's ``job="..."`` reaches every series
an alert or a panel reads, without anyone editing the expressions.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Mapping, Set

from ..kinds import metric_sources

PREFIXES = tuple(k.name for k in metric_sources())

# Series Prometheus itself generates, which rules and panels may also read.
PROMETHEUS_METRICS = ("up", "ALERTS", "ALERTS_FOR_STATE")

_DURATION_UNITS = (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")

# name op "value", comma separated (the inside of a PromQL selector's braces)
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
MATCHERS_RE = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?)?\s*$")

METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:\"$.])((?:%s)_[a-zA-Z0-9_]+)(\{[^}]*\})?" % "|".join(PREFIXES))
PARAM_RE = re.compile(r"\$(?!labels\b|value\b|externalLabels\b|externalURL\b)([a-z][a-z0-9_]*)")


def parse_duration(text: str) -> float:
    """Prometheus duration ("1h30m", "90s", "500ms") to seconds."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a duration: {text!r}")
    m = _DURATION_RE.match(text.strip())
    if not m or not any(m.groups()):
        raise ValueError(f"not a Prometheus duration (like 30s, 5m, 6h, 1d): {text!r}")
    total = 0.0
    for value, (_, secs) in zip(m.groups()[:6], _DURATION_UNITS):
        if value:
            total += int(value) * secs
    if m.group(7):
        total += int(m.group(7)) / 1000
    return total


def format_duration(seconds: float) -> str:
    """Seconds to the shortest exact Prometheus duration ("6h", "90s", "150ms")."""
    ms = int(round(seconds * 1000))
    if ms <= 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    for unit, size in _DURATION_UNITS[1:]:  # no "y": not exact
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"  # pragma: no cover


def check_matchers(text: str) -> str:
    if not MATCHERS_RE.match(text or ""):
        raise ValueError(f'not a list of label matchers like job="spark", instance=~"host.*": {text!r}')
    return (text or "").strip().rstrip(",").strip()


def join_matchers(*parts: str) -> str:
    return ", ".join(p.strip().rstrip(",").strip() for p in parts if p and p.strip().rstrip(",").strip())


def inject(expr: str, matchers: Mapping[str, str]) -> str:
    """Add ``matchers[prefix]`` to every selector of a metric with that prefix."""

    def repl(m: "re.Match[str]") -> str:
        name, braces = m.group(1), m.group(2)
        extra = matchers.get(name.split("_", 1)[0], "")
        if not extra:
            return m.group(0)
        inner = braces[1:-1] if braces else ""
        return f"{name}{{{join_matchers(inner, extra)}}}"

    return METRIC_RE.sub(repl, expr)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    def repl(m: "re.Match[str]") -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"expression uses ${key}, which is not a parameter")
        return values[key]

    return PARAM_RE.sub(repl, expr)


def params_used(expr: str) -> Set[str]:
    return set(PARAM_RE.findall(expr))


def metrics_used(expr: str) -> Set[str]:
    """Every exporter metric name in an expression, plus the Prometheus-generated ones."""
    names = {m.group(1) for m in METRIC_RE.finditer(expr)}
    for pm in PROMETHEUS_METRICS:
        if re.search(rf"(?<![A-Za-z0-9_:\"$]){pm}(?:\{{|\[|\s|\)|$)", expr):
            names.add(pm)
    return names


def format_number(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def render_description_labels(template: str, labels: Mapping[str, str]) -> str:
    """What Prometheus makes of ``{{ $labels.x }}`` (the only template the pack uses)."""

    def repl(m):
        return labels.get(m.group(1), "<no value>")

    return re.sub(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", repl, template)


def template_labels(template: str) -> List[str]:
    return re.findall(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", template)


def all_template_actions(template: str) -> List[str]:
    return re.findall(r"\{\{.*?\}\}", template)


def grafana_free(expr: str, rate_interval: str = "1m") -> str:
    """A dashboard expression made runnable against Prometheus (for tests)."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?([a-z_]+)(?::\w+)?\}?", ".*", expr)


def dedupe(items: Iterable[str]) -> List[str]:
    seen: Dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)
