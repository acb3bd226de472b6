"""Spark collector: a Spark driver UI (port 4040), a history server (18080),
or a cluster manager whose running applications it finds (``discover``).

What it reads and exports of one UI is described in :mod:`sparkwatch.sparkui`,
which does the work (the Livy collector uses it too for the UIs it
discovers); how a standalone master or a YARN ResourceManager is asked for
its applications, in :mod:`sparkwatch.clusters`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import List, Literal, Tuple

from pydantic import Field, model_validator

from .. import clusters, sparkui
from ..collector import Collector, Deadline, MetricSet, ScrapeContext, TargetError, declared_metrics, gauge
from ..httpclient import HttpClient, WithHeaders
from ..logsafe import RateLimitedLog
from ..targetconfig import HttpTarget, Interval

log = logging.getLogger("sparkwatch.spark")
_refused_log = RateLimitedLog(log, interval=600)

CLUSTER_APPS = gauge(
    "spark_cluster_applications",
    "Running applications the cluster manager lists (a spark target with discover: standalone or yarn).")
CLUSTER_APPS_SCRAPED = gauge(
    "spark_cluster_applications_scraped",
    "Of spark_cluster_applications, those whose driver UI was read in this scrape; the rest had no UI "
    "(spark.ui.enabled=false), did not answer in time, were beyond max_applications, or were refused "
    "(spark_cluster_rejected_uis).")
CLUSTER_REJECTED_UIS = gauge(
    "spark_cluster_rejected_uis",
    "Of spark_cluster_applications, those whose driver UI was not read because its URL is not allowed: "
    "not the manager's own proxy path for the application, nor (standalone) a UI on the master's host, "
    "nor matching discovered_ui_allowed.")


#: applications read per scrape: a history server, master or ResourceManager listing 200
#: running applications is read in full (benchmarks/bench_fleet.py; what it costs is
#: bounded by the scrape deadline in any case)
DEFAULT_MAX_APPLICATIONS = 500
#: requests in flight per target: 200 applications answering in 20 ms each are read in
#: about 2 s, and no target gets hundreds of connections at once
DEFAULT_MAX_CONCURRENCY = 8


class SparkTarget(HttpTarget):
    #: what the url is: a driver UI or history server (ui), a standalone master, a YARN ResourceManager
    discover: Literal["ui", "standalone", "yarn"] = "ui"
    #: also report applications that have completed (history server)
    include_completed: bool = False
    #: at most this many applications per scrape (a history server may hold thousands;
    #: with discover, driver UIs read per scrape)
    max_applications: int = Field(default=DEFAULT_MAX_APPLICATIONS, ge=1)
    #: requests to this target (with discover: to its driver UIs) in flight at once, at most
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1, le=64)
    #: with discover: URL patterns (scheme://host[:port][/path], '*' within a host label or as the
    #: port) of driver UIs that may be read besides the manager's own (see docs/spark.md)
    discovered_ui_allowed: clusters.UiPatterns = []
    #: seconds an application's /environment answer is reused (0 = read it on every scrape)
    environment_refresh: Interval = 300.0
    #: seconds after the last update of its event log that an application which has not
    #: completed is reported as stale (spark_app_stale; history server; 0 = never)
    stale_after: Interval = sparkui.DEFAULT_STALE_AFTER

    @model_validator(mode="after")
    def _discovered_ui_allowed_needs_discover(self):
        if self.discovered_ui_allowed and self.discover == "ui":
            raise ValueError("discovered_ui_allowed is only for discover: standalone or yarn")
        return self


class SparkCollector(Collector):
    kind = "spark"
    config_model = SparkTarget
    metrics = declared_metrics(vars(sparkui), globals())
    probe_field = "url"

    def __init__(self, config: SparkTarget):
        super().__init__(config)
        redirect_allowed = None
        if config.discover != "ui":
            # the driver UIs a cluster manager names are read only where the policy allows;
            # a redirect (from the manager or a UI) only to the manager's own origin, where
            # redirects_allowed_to says, or where a discovered UI may be. Credentials go to
            # the manager's origin only (the HttpClient's rule).
            self.ui_policy = clusters.ui_policy(config.discover, config.url, config.discovered_ui_allowed)
            own = clusters.UiPolicy(config.url, config.redirects_allowed_to or (), host_wide=False, roots=True)
            redirect_allowed = lambda url: own.allows_redirect(url) or self.ui_policy.allows_redirect(url)  # noqa: E731
        # every request of this target, whatever thread makes it, takes one of max_concurrency slots
        self.http = HttpClient(config, max_concurrency=config.max_concurrency, redirect_allowed=redirect_allowed)
        self.env_cache = sparkui.EnvironmentCache(config.environment_refresh)
        # the threads that make this target's requests ahead of time, kept between scrapes
        self.pool = sparkui.RequestPool(config.max_concurrency, f"sparkwatch-spark-{self.name}-io")

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        cfg = self.config
        if cfg.discover == "ui":
            sparkui.scrape_spark_ui(self.http, cfg.url, out, scrape.deadline,
                                    include_completed=cfg.include_completed,
                                    max_applications=cfg.max_applications,
                                    env_cache=self.env_cache, stale_after=cfg.stale_after,
                                    max_concurrency=cfg.max_concurrency, pool=self.pool)
            return
        # the cluster manager unreadable: target down
        if cfg.discover == "standalone":
            apps = clusters.standalone_apps(self.http, cfg.url, scrape.deadline, max_lookups=cfg.max_applications,
                                            concurrency=cfg.max_concurrency)
        else:
            apps = clusters.yarn_apps(self.http, cfg.url, scrape.deadline)
        self._scrape_cluster_apps(out, scrape.deadline, apps)

    def _scrape_cluster_apps(self, out: MetricSet, deadline: Deadline, apps: List[clusters.ClusterApp]) -> None:
        cfg = self.config
        out.add(CLUSTER_APPS, len(apps))
        with_ui = [a for a in apps if a.ui]
        allowed: List[clusters.ClusterApp] = []
        refused: List[clusters.ClusterApp] = []
        for i, a in enumerate(with_ui):
            if i % 256 == 0 and deadline.expired():  # some 30 us each: a list of 100,000 takes seconds
                raise TargetError("timeout", f"scrape deadline exceeded checking {len(with_ui)} driver UI URLs")
            (allowed if self.ui_policy.allows(a.ui, a.app_id) else refused).append(a)
        out.add(CLUSTER_REJECTED_UIS, len(refused))
        if refused:
            _refused_log.warning("spark target %s: %d driver UIs not read, their URL is not allowed (e.g. "
                                 "application %s: %r); see discovered_ui_allowed", self.name, len(refused),
                                 refused[0].app_id, refused[0].ui[:200], key=("refused", self.name))
        if len(allowed) < len(apps):
            out.error("partial")  # an application without a UI that may be read cannot be watched
        with_ui = allowed
        if len(with_ui) > cfg.max_applications:
            with_ui = with_ui[: cfg.max_applications]
            out.error("limit")

        # the driver UIs get a deadline that ends a little before the target's, so that one
        # UI that hangs costs that application (partial), not the whole cluster target
        left = deadline.remaining()
        app_deadline = Deadline(max(0.0, left - min(1.0, 0.2 * left)))
        # max_concurrency driver UIs at once; when there are fewer, each one's requests
        # (servlet, jobs, stages, executors, environment) are made concurrently too
        per_ui = max(1, cfg.max_concurrency // max(1, len(with_ui)))

        def one(app: clusters.ClusterApp) -> Tuple[MetricSet, bool]:
            part = MetricSet()
            http = WithHeaders(self.http, dict(app.headers)) if app.headers else self.http
            try:
                sparkui.scrape_spark_ui(http, app.ui, part, app_deadline, max_applications=1,
                                        env_cache=self.env_cache, stale_after=0, max_concurrency=per_ui,
                                        pool=self.pool)
                return part, True
            except TargetError as e:
                # one driver that cannot be read costs that application only
                log.info("spark target %s: application %s (%s) skipped: %s", self.name, app.app_id, app.ui,
                         e.message)
                part = MetricSet()
                part.error("partial")
                return part, False

        scraped = 0
        if with_ui:
            with ThreadPoolExecutor(max_workers=min(cfg.max_concurrency, len(with_ui)),
                                    thread_name_prefix=f"scrape-spark-{self.name}-app") as pool:
                for part, ok in pool.map(one, with_ui):
                    sparkui.merge(out, part)
                    scraped += ok
        self.env_cache.retain_bases(a.ui for a in with_ui)
        out.add(CLUSTER_APPS_SCRAPED, scraped)

    def close(self) -> None:
        self.pool.close()
        self.http.close()
