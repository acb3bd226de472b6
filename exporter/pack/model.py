"""The shapes of the pack's definitions: alerts, their parameters and replays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

# Labels every replayed series carries, as Prometheus would add them.
JOB = "sparkwatch"
INSTANCE = "sparkhost:9951"


# The kinds of parameter (Param.kind). A duration also gives $name_s (in seconds)
# and $name_half, a number $name_pct (times 100); see rules.param_values.
DURATION = "duration"
NUMBER = "number"
REGEX = "regex"  # a regular expression for a label matcher
LABELS = "labels"  # comma-separated label names (on (...), by (...))
MATCHERS = "matchers"  # label matchers, the inside of a selector's braces


@dataclass(frozen=True)
class Param:
    """A setting of an alert, written ``$name`` in its expression (and description):
    a threshold, a window, a label matcher. A rules configuration may override it
    (``alerts.<AlertName>.params.<name>``), checked according to ``kind``; ``help``
    is its line in the runbook. The replays run with ``default``.
    """

    default: Union[str, float]
    kind: str  # DURATION | NUMBER | REGEX | LABELS | MATCHERS
    help: str
    #: durations: does the rules config's time_scale apply? (not to values compared with a setting)
    scales: bool = True


@dataclass
class Replay:
    """Input series replayed through promtool, and what the alert must do.

    ``quiet``: evaluation times at which the alert must not be firing;
    ``fires``: the evaluation time at which it must be firing, with ``labels``
    (besides the alert's static labels, job and instance)."""

    name: str
    series: List[Tuple[str, str]]
    quiet: List[str]
    fires: Optional[str] = None
    labels: List[Dict[str, str]] = field(default_factory=list)
    interval: str = "1m"
    #: when the war story's failure happens in this replay (the alert must fire before it), and what it is
    failure: Optional[str] = None
    failure_is: str = ""


@dataclass(frozen=True)
class Evidence:
    """A number behind an alert, for each series it fires for: the figures its trend
    compares (the floor now and a trend window ago, the use against the limit). Read
    from Prometheus by ``sparkwatch doctor --prometheus`` and reported with the finding.

    ``expr``: PromQL with the alert's ``$param`` placeholders, rendered as the alert's
    expression is (selectors, parameters); build it from the templates the expression
    is built from (``expressions.py``). ``on``: the labels (comma-separated) that tie a
    result to one of the alert's series; the alert's series carry them."""

    expr: str
    on: str


@dataclass(eq=False)
class Alert:
    """One alert of the pack: everything its rule, runbook, promtool tests and
    Alertmanager inhibitions are generated from (see CONTRIBUTING.md, "An alert").

    Each is one object, bound to a module-level name in the module of its
    signature (``exporter/pack/alerts/sN_*.py``); whatever refers to an alert
    (the doctor's judgements) imports that object, never its name as a string.
    Alerts compare (and hash) by identity, so they can key a mapping."""

    name: str
    signature: str  # "S1".."S5" or "targets"
    severity: str  # "critical" pages, "warning" opens a ticket
    problem: str  # alerts about the same problem share it; critical inhibits warning
    component: str  # the collector kind whose target the alert depends on
    summary: str  # static
    description: str  # {{ $labels.x }} and $param only
    expr: str  # PromQL with $param placeholders
    for_: str
    params: Dict[str, Param]
    meaning: str  # runbook: what the signal is and why it precedes the failure
    confirm: List[str]  # runbook: how to confirm (one step per item)
    action: str  # runbook: what to do now (the signature's fix follows)
    story: Replay  # the war story, replayed: must fire, and not too early
    healthy: List[Replay]  # healthy or merely busy: must stay quiet
    #: the numbers behind it, by name (``sparkwatch doctor --prometheus``); the rule's own value is read too
    evidence: Dict[str, Evidence] = field(default_factory=dict)


def series(metric: str, **labels: str) -> str:
    """A replay series with the labels Prometheus adds (job, instance)."""
    lbl = {"job": JOB, "instance": INSTANCE}
    lbl.update(labels)
    inner = ",".join(f'{k}="{v}"' for k, v in lbl.items())
    return f"{metric}{{{inner}}}"


def at(**labels: str) -> Dict[str, str]:
    lbl = {"job": JOB, "instance": INSTANCE}
    lbl.update(labels)
    return lbl


def values(vals) -> str:
    """Explicit sample values in promtool's notation."""
    out = []
    for v in vals:
        if v is None:
            out.append("_")
        elif float(v).is_integer():
            out.append(str(int(v)))
        else:
            out.append(f"{v:.6g}")
    return " ".join(out)


def saw(low: float, high: float, period: int, n: int, base=lambda t: 0.0):
    """n+1 samples of a sawtooth from low to high (period samples), over a moving base."""
    return [base(t) + low + (high - low) * ((t % period) / max(period - 1, 1)) for t in range(n + 1)]


def wiggle(center: float, amplitude: float, n: int):
    """n+1 samples around center, deterministic and small (noise of a healthy gauge)."""
    pattern = (0, 1, -1, 0.5, -0.5, 1, 0, -1)
    return [center + amplitude * pattern[t % len(pattern)] for t in range(n + 1)]
