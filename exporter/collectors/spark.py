"""Spark collector: a Spark driver UI (port 4040) or a history server (18080).

What it reads and exports is described in :mod:`exporter.sparkui`, which
does the work (the Livy collector uses it too for the UIs it discovers).
"""

from __future__ import annotations

from pydantic import Field

from .. import sparkui
from ..collector import Collector, MetricSet, ScrapeContext, declared_metrics
from ..httpclient import HttpClient
from ..targetconfig import HttpTarget, Interval


class SparkTarget(HttpTarget):
    #: also report applications that have completed (history server)
    include_completed: bool = False
    #: at most this many applications per scrape (a history server may hold thousands)
    max_applications: int = Field(default=50, ge=1)
    #: seconds an application's /environment answer is reused (0 = read it on every scrape)
    environment_refresh: Interval = 300.0
    #: seconds after the last update of its event log that an application which has not
    #: completed is reported as stale (spark_app_stale; history server; 0 = never)
    stale_after: Interval = sparkui.DEFAULT_STALE_AFTER


class SparkCollector(Collector):
    kind = "spark"
    config_model = SparkTarget
    metrics = declared_metrics(vars(sparkui))
    probe_field = "url"

    def __init__(self, config: SparkTarget):
        super().__init__(config)
        self.http = HttpClient(config)
        self.env_cache = sparkui.EnvironmentCache(config.environment_refresh)

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        sparkui.scrape_spark_ui(self.http, self.config.url, out, scrape.deadline,
                                include_completed=self.config.include_completed,
                                max_applications=self.config.max_applications,
                                env_cache=self.env_cache, stale_after=self.config.stale_after)

    def close(self) -> None:
        self.http.close()
