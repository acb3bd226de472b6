"""Every judgement of the doctor, one module per failure signature as the pack's
alerts are (``exporter/pack/alerts/``): ``targets`` (what makes sparkwatch
blind, reported as ``setup``), ``s1_livy`` to ``s5_classes_codecache``.

A judgement is a function of the :class:`~sparkwatch.doctor.findings.Judge`,
declared with ``@judges(ALERT, ...)`` against the ``Alert`` objects it applies
(imported from the pack, never named). What one or two readings cannot judge is
in its module's ``NOT_JUDGED``: the alert and the reason, and a judgement that
reads it from Prometheus (``@judges(ALERT, prometheus=True)``, with
``--prometheus``). Every alert of the pack is judged from the readings or is in
``NOT_JUDGED`` with its Prometheus judgement (``tests/test_doctor.py`` checks): a
new alert gets a judgement in the module of its signature, or both. With
``--prometheus``, ``history`` reports every other alert Prometheus has firing or
pending.
"""

from __future__ import annotations

from typing import Dict, List

from ...pack.model import Alert
from ..findings import Judgement
from . import history, s1_livy, s2_restart, s3_leaks, s4_streaming, s5_classes_codecache, targets

__all__ = ["JUDGEMENTS", "NOT_JUDGED"]

#: in the order they run: the setup first, then S1 to S5, then what Prometheus has and no other reads
_MODULES = (targets, s1_livy, s2_restart, s3_leaks, s4_streaming, s5_classes_codecache, history)

#: every judgement, in the order of its module and, within it, of its definition
JUDGEMENTS: List[Judgement] = [v for m in _MODULES for v in vars(m).values()
                               if isinstance(v, Judgement) and v.module == m.__name__]
#: alert -> why the doctor cannot judge it from one or two readings (only from Prometheus)
NOT_JUDGED: Dict[Alert, str] = {a: why for m in _MODULES for a, why in getattr(m, "NOT_JUDGED", {}).items()}
