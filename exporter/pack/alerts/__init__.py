"""Every alert of the pack, one module per failure signature (``s1_livy`` to
``s5_classes_codecache``, and ``targets``): expression, parameters, texts, and
its replays.

One definition per alert. From it come the rule (``rules.py``), its runbook
(``runbooks.py``), its promtool tests (the war story must fire, and not too
early; the healthy or busy series must stay quiet) and the Alertmanager
inhibitions (``alertmanager.py``). An alert goes in the module of the signature
its ``signature`` names, bound to a module-level name (its name in upper snake
case: ``JVM_GC_TIME_HIGH``) and listed in the module's ``ALERTS``; whatever
refers to one alert (the doctor's judgements) imports that object. The target-down
alerts are ``targets.TARGET_DOWN``, by kind. The shared PromQL templates are in
``expressions.py``.
"""

from __future__ import annotations

from typing import Dict, List

from ..model import Alert
from . import s1_livy, s2_restart, s3_leaks, s4_streaming, s5_classes_codecache, targets
from .s1_livy import LIVY_TERMINAL
from .s2_restart import JOIN_LIVY
from .s5_classes_codecache import CODE_POOLS
from .targets import TARGET_KINDS

__all__ = ["ALERTS", "BY_NAME", "Alert", "CODE_POOLS", "JOIN_LIVY", "LIVY_TERMINAL", "TARGET_KINDS"]

# module, the signature of its alerts, in the order of ALERTS
_MODULES = ((s1_livy, "S1"), (s2_restart, "S2"), (s3_leaks, "S3"), (s4_streaming, "S4"),
            (s5_classes_codecache, "S5"), (targets, "targets"))

ALERTS: List[Alert] = [a for module, _ in _MODULES for a in module.ALERTS]
BY_NAME: Dict[str, Alert] = {a.name: a for a in ALERTS}
assert len(BY_NAME) == len(ALERTS), "duplicate alert names"
assert all(a.signature == sig for module, sig in _MODULES for a in module.ALERTS), \
    "an alert is in the module of another signature"
assert all(v in module.ALERTS for module, _ in _MODULES for v in vars(module).values() if isinstance(v, Alert)), \
    "an alert of a module is missing from its ALERTS"
