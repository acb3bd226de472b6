"""The registry of collectors: one per target kind of :mod:`sparkwatch.kinds`.

Each kind is one module in this package, one config section, one metric
prefix; the order of :data:`sparkwatch.kinds.KINDS` is the order of the config
sections. A new kind is a row in that table, and a module here with a
:class:`~sparkwatch.collector.Collector` subclass (``kind``, ``config_model``,
``metrics``) imported below.
"""

from typing import Dict, Iterable, List, Tuple, Type

from ..collector import Collector
from ..kinds import KINDS
from .jvm import JvmCollector
from .livy import LivyCollector
from .spark import SparkCollector
from .zookeeper import ZooKeeperCollector

_BY_KIND: Dict[str, Type[Collector]] = {
    c.kind: c for c in (SparkCollector, LivyCollector, ZooKeeperCollector, JvmCollector)}
if set(_BY_KIND) != {k.name for k in KINDS}:  # pragma: no cover - a kind added on one side only
    raise ImportError(f"the collectors {sorted(_BY_KIND)} are not the kinds of exporter/kinds.py "
                      f"{[k.name for k in KINDS]}")

COLLECTOR_KINDS: Dict[str, Type[Collector]] = {k.name: _BY_KIND[k.name] for k in KINDS}


def build_collectors(targets: Iterable[Tuple[str, object]]) -> List[Collector]:
    """One collector per (kind, target config); each is then told its peers."""
    collectors = [COLLECTOR_KINDS[kind](tc) for kind, tc in targets]
    for c in collectors:
        c.bind(collectors)
    return collectors
