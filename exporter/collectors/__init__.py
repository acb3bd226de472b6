"""The registry of collector kinds: the one place that lists them.

Each kind is one module in this package, one config section, one metric
prefix; the order here is the order of the config sections. A new kind is a
module with a :class:`~exporter.collector.Collector` subclass (``kind``,
``config_model``, ``metrics``) and one line in :data:`COLLECTOR_KINDS`.
"""

from typing import Dict, Iterable, List, Tuple, Type

from ..collector import Collector
from .jvm import JvmCollector
from .livy import LivyCollector
from .spark import SparkCollector
from .zookeeper import ZooKeeperCollector

COLLECTOR_KINDS: Dict[str, Type[Collector]] = {
    "spark": SparkCollector,
    "livy": LivyCollector,
    "zookeeper": ZooKeeperCollector,
    "jvm": JvmCollector,
}


def build_collectors(targets: Iterable[Tuple[str, object]]) -> List[Collector]:
    """One collector per (kind, target config); each is then told its peers."""
    collectors = [COLLECTOR_KINDS[kind](tc) for kind, tc in targets]
    for c in collectors:
        c.bind(collectors)
    return collectors
