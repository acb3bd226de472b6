"""The thresholds the doctor judges with: the alerting pack's own parameters.

There is no second copy of a threshold. Every number comes from an
``Alert``'s ``params`` (``exporter/pack/alerts/``), through the same
substitution the rule generator uses (:func:`sparkwatch.pack.rules.param_values`),
so a rules configuration (``--rules.config``) that changes a threshold for the
rules changes it for the doctor too, as it does an alert's severity and whether
it is enabled. Windows and ``for:`` durations are not used as such: the doctor
takes one or two readings, not a time series (see docs/doctor.md for what each
judgement keeps of its alert).
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from ..pack.model import Alert
from ..pack.promql import parse_duration
from ..pack.rules import for_duration, param_values, severity
from ..pack.rulesconfig import RulesConfig
from ..pack.runbooks import runbook_path


class Thresholds:
    """An alert's parameters, severity and state under a rules configuration
    (the shipped defaults without one). Every method takes the ``Alert`` object."""

    def __init__(self, rules_config: Optional[RulesConfig] = None):
        self.cfg = rules_config or RulesConfig()
        self._values: Dict[Alert, Dict[str, str]] = {}

    def _params(self, alert: Alert) -> Dict[str, str]:
        if alert not in self._values:
            self._values[alert] = param_values(alert, self.cfg)
        return self._values[alert]

    def number(self, alert: Alert, param: str) -> float:
        """A NUMBER parameter (a ratio, a count)."""
        return float(self._params(alert)[param])

    def seconds(self, alert: Alert, param: str) -> float:
        """A DURATION parameter, in seconds (time_scale applied as for the rules)."""
        return float(self._params(alert)[param + "_s"])

    def text(self, alert: Alert, param: str) -> str:
        """A REGEX, LABELS or MATCHERS parameter, or a duration as written (``10m``)."""
        return self._params(alert)[param]

    def regex(self, alert: Alert, param: str) -> "re.Pattern":
        """A REGEX parameter, anchored as PromQL anchors label matchers."""
        return re.compile(f"(?:{self.text(alert, param)})\\Z")

    def for_seconds(self, alert: Alert) -> float:
        """The alert's ``for:``, in seconds (as the rules configuration sets and scales it)."""
        return parse_duration(for_duration(alert, self.cfg))

    def enabled(self, alert: Alert) -> bool:
        return self.cfg.alert(alert.name).enabled

    def severity(self, alert: Alert) -> str:
        return severity(alert, self.cfg)

    @staticmethod
    def runbook(alert: Alert) -> str:
        return runbook_path(alert)
