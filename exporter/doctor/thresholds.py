"""The thresholds the doctor judges with: the alerting pack's own parameters.

There is no second copy of a threshold. Every number comes from an
``Alert``'s ``params`` (``exporter/pack/alerts/``), through the same
substitution the rule generator uses (:func:`exporter.pack.rules.param_values`),
so a rules configuration (``--rules.config``) that changes a threshold for the
rules changes it for the doctor too. Windows and ``for:`` durations are not
used as such: the doctor takes one or two readings, not a time series (see
docs/doctor.md for what each judgement keeps of its alert).
"""

from __future__ import annotations

import re
from typing import Optional

from ..pack.alerts import BY_NAME
from ..pack.model import Alert
from ..pack.rules import param_values
from ..pack.rulesconfig import RulesConfig

RUNBOOK_DIR = "alerts/runbooks"


class Thresholds:
    def __init__(self, rules_config: Optional[RulesConfig] = None):
        self.cfg = rules_config or RulesConfig()
        self._values = {}

    def alert(self, name: str) -> Alert:
        return BY_NAME[name]

    def _params(self, name: str):
        if name not in self._values:
            self._values[name] = param_values(BY_NAME[name], self.cfg)
        return self._values[name]

    def number(self, alert: str, param: str) -> float:
        """A NUMBER parameter (a ratio, a count)."""
        return float(self._params(alert)[param])

    def seconds(self, alert: str, param: str) -> float:
        """A DURATION parameter, in seconds (time_scale applied as for the rules)."""
        return float(self._params(alert)[param + "_s"])

    def text(self, alert: str, param: str) -> str:
        """A REGEX, LABELS or MATCHERS parameter, or a duration as written (``10m``)."""
        return self._params(alert)[param]

    def regex(self, alert: str, param: str) -> "re.Pattern":
        """A REGEX parameter, anchored as PromQL anchors label matchers."""
        return re.compile(f"(?:{self.text(alert, param)})\\Z")

    def enabled(self, alert: str) -> bool:
        return self.cfg.alert(alert).enabled

    def severity(self, alert: str) -> str:
        return self.cfg.alert(alert).severity or BY_NAME[alert].severity

    @staticmethod
    def runbook(alert: str) -> str:
        return f"{RUNBOOK_DIR}/{alert}.md"
