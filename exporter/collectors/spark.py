"""Spark collector: a Spark driver UI (port 4040) or a history server (18080).

WORK IN PROGRESS: the config model is final; collect() is being written.
"""

from __future__ import annotations

from pydantic import Field

from ..collector import Collector, Deadline, MetricSet
from ..config import HttpTarget
from ..httpclient import HttpClient


class SparkTarget(HttpTarget):
    #: also report applications that have completed (history server)
    include_completed: bool = False
    #: at most this many applications per scrape (a history server may hold thousands)
    max_applications: int = Field(default=50, ge=1)


class SparkCollector(Collector):
    kind = "spark"
    config_model = SparkTarget
    probe_field = "url"

    def __init__(self, config: SparkTarget):
        super().__init__(config)
        self.http = HttpClient(config)

    def collect(self, out: MetricSet, deadline: Deadline) -> None:
        self.http.get_json("/api/v1/applications", deadline, expect=list)

    def close(self) -> None:
        self.http.close()
