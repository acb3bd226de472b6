"""The scenarios: each reproduces one war story on real software and watches the
shipped alerts catch it. Each returns one or more :class:`~lab.core.Result`.

- ``local.py``: the scenarios that each run on their own (S1, S2, S4, and the
  local-mode S3, S5 and baseline);
- ``cluster.py``: the standalone cluster, S3a, S3b, S4c and S5 in its executors
  next to the healthy baseline;
- ``common.py``: what they share (a scenario's exporter, Prometheus and alert
  watcher; the lab's Spark driver; a busy Livy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

from ..core import Result
from .cluster import cluster
from .local import baseline, s1, s2, s3_heap, s3_threads, s4, s5

#: every scenario by its command-line name; `all` runs those of lab.__main__.PHASES
SCENARIOS: Dict[str, Callable[[Path], List[Result]]] = {
    "s1": s1,
    "s2": s2,
    "s4": s4,
    "cluster": cluster,
    "s3-heap": s3_heap,
    "s3-threads": s3_threads,
    "s5": s5,
    "baseline": baseline,
}

__all__ = ["SCENARIOS", "baseline", "cluster"]
