"""The collector kinds. Each kind is one module, one config section, one
metric prefix; the order here is the order of the config sections."""

from typing import Dict, Type

from ..collector import Collector
from .spark import SparkCollector
from .livy import LivyCollector
from .zookeeper import ZooKeeperCollector
from .jvm import JvmCollector

KINDS: Dict[str, Type[Collector]] = {
    "spark": SparkCollector,
    "livy": LivyCollector,
    "zookeeper": ZooKeeperCollector,
    "jvm": JvmCollector,
}
