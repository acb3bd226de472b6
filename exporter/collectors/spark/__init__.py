"""Spark collector: a Spark driver UI (port 4040), a history server (18080),
or a cluster manager whose running applications it finds (``discover``).

The package: the collector (here), its metrics (:mod:`.metrics`), what it
reads of Spark's answers (:mod:`.model`), scraping one Spark UI
(:mod:`.scrape`, which the Livy collector uses too for the UIs it discovers),
what is remembered between scrapes (:mod:`.cache`), and how a standalone
master or a YARN ResourceManager is asked for its applications
(:mod:`.clusters`); where discovered UIs may be read is
:mod:`sparkwatch.uipolicy`'s, shared with the Livy collector.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import List, Literal, Optional, Tuple

from pydantic import Field, field_validator, model_validator

from ...collector import Collector, Deadline, MetricSet, ScrapeContext, TargetError
from ...httpclient import HttpClient
from ...httppool import RequestPool
from ...logsafe import RateLimitedLog
from ...targetconfig import HttpTarget, Interval, check_http_url
from ...uipolicy import UiPatterns, UiPolicy
from . import clusters
from .cache import EnvironmentCache
from .metrics import CLUSTER_APPS, CLUSTER_APPS_SCRAPED, CLUSTER_METRICS, CLUSTER_REJECTED_UIS, UI_METRICS
from .scrape import DEFAULT_STALE_AFTER, merge, scrape_spark_ui

log = logging.getLogger("sparkwatch.spark")
_refused_log = RateLimitedLog(log, interval=600)

#: applications read per scrape: a history server, master or ResourceManager listing 200
#: running applications is read in full (benchmarks/bench_fleet.py; what it costs is
#: bounded by the scrape deadline in any case)
DEFAULT_MAX_APPLICATIONS = 500
#: requests in flight per target: 200 applications answering in 20 ms each are read in
#: about 2 s, and no target gets hundreds of connections at once
DEFAULT_MAX_CONCURRENCY = 8
#: attempts per application at most (YARN's yarn.resourcemanager.am.max-attempts defaults to 2)
MAX_ATTEMPTS = 10


class SparkTarget(HttpTarget):
    """A ``spark`` target of the configuration: a driver UI or history server
    (``discover: ui``), or a standalone master or YARN ResourceManager whose
    running applications' driver UIs are read (``discover: standalone`` or
    ``yarn``); see docs/spark.md."""

    #: what the url is: a driver UI or history server (ui), a standalone master, a YARN ResourceManager
    discover: Literal["ui", "standalone", "yarn"] = "ui"
    #: also report applications that have completed (history server)
    include_completed: bool = False
    #: attempts read per application, the newest first (history server, YARN); above 1 needs
    #: include_completed, since every attempt but the newest has ended
    max_attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)
    #: at most this many applications per scrape (a history server may hold thousands;
    #: with discover, driver UIs read per scrape)
    max_applications: int = Field(default=DEFAULT_MAX_APPLICATIONS, ge=1)
    #: requests to this target (with discover: to its driver UIs) in flight at once, at most
    max_concurrency: int = Field(default=DEFAULT_MAX_CONCURRENCY, ge=1, le=64)
    #: with discover: URL patterns (scheme://host[:port][/path], '*' within a host label or as the
    #: port) of driver UIs that may be read besides the manager's own (see docs/spark.md)
    discovered_ui_allowed: UiPatterns = []
    #: with discover: standalone: send the target's credentials to the master's reverse proxy
    #: (/proxy/) too, which relays them to each driver unless a front before the master strips
    #: them (docs/spark.md, docs/security.md)
    credentials_through_reverse_proxy: bool = False
    #: seconds an application's /environment answer is reused (0 = read it on every scrape)
    environment_refresh: Interval = 300.0
    #: seconds after the last update of its event log that an application which has not
    #: completed is reported as stale (spark_app_stale; history server; 0 = never)
    stale_after: Interval = DEFAULT_STALE_AFTER

    #: with discover: yarn, instead of url: the ResourceManagers of an HA cluster (each one's
    #: yarn.resourcemanager.webapp.address); the active one is found and remembered
    urls: Optional[List[str]] = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _url_of_urls(cls, data):
        if isinstance(data, dict) and data.get("urls") is not None:
            if data.get("url") is not None:
                raise ValueError("give url (one ResourceManager) or urls (an HA list), not both")
            urls = data["urls"]
            if isinstance(urls, list) and urls and isinstance(urls[0], str):
                data = {**data, "url": urls[0]}
        return data

    @field_validator("urls")
    @classmethod
    def _each_url(cls, v: Optional[List[str]]) -> Optional[List[str]]:
        if v is None:
            return v
        out = [check_http_url(u) for u in v]
        if len(set(out)) < len(out):
            raise ValueError("lists a URL twice")
        return out

    @model_validator(mode="after")
    def _discovered_ui_allowed_needs_discover(self):
        if self.discovered_ui_allowed and self.discover == "ui":
            raise ValueError("discovered_ui_allowed is only for discover: standalone or yarn")
        if self.urls is not None and self.discover != "yarn":
            raise ValueError("urls (a ResourceManager HA list) is only for discover: yarn; give url")
        if self.credentials_through_reverse_proxy and self.discover != "standalone":
            raise ValueError("credentials_through_reverse_proxy is only for discover: standalone")
        if self.max_attempts > 1 and not (self.include_completed and self.discover == "ui"):
            raise ValueError("max_attempts above 1 needs include_completed: true (every attempt but the newest "
                             "has ended) and a history server (discover: ui)")
        return self

    def own_urls(self) -> List[str]:
        return list(self.urls) if self.urls else [self.url]

    def relayed_paths(self) -> List[str]:
        if self.discover != "standalone" or self.credentials_through_reverse_proxy:
            return []
        return clusters.standalone_relayed_paths(self.url)


class SparkCollector(Collector):
    """Reads one ``spark`` target per scrape: its Spark UI (:func:`.scrape.scrape_spark_ui`),
    or the cluster manager's list of applications and then each one's driver UI, at
    most ``max_concurrency`` requests at once. Keeps between scrapes its HTTP client,
    the environment cache and the threads that make its requests ahead of time."""

    kind = "spark"
    config_model = SparkTarget
    metrics = UI_METRICS + CLUSTER_METRICS
    probe_field = "url"

    def __init__(self, config: SparkTarget):
        super().__init__(config)
        redirect_allowed = None
        if config.credentials_through_reverse_proxy and config.auth_names():
            log.warning("spark target %s: credentials_through_reverse_proxy: the master's reverse proxy relays "
                        "the target's credentials to every driver unless a front before the master strips "
                        "them (docs/spark.md)", self.name)
        if config.discover != "ui":
            # the driver UIs a cluster manager names are read only where the policy allows;
            # a redirect (from the manager or a UI) only to the manager's own origin, where
            # redirects_allowed_to says, or where a discovered UI may be. Credentials go to
            # the manager's origin only (the HttpClient's rule).
            self.ui_policy = clusters.ui_policy(config.discover, config.own_urls(), config.discovered_ui_allowed)
            own = UiPolicy(config.own_urls(), config.redirects_allowed_to or (), host_wide=False, roots=True)
            redirect_allowed = lambda url: own.allows_redirect(url) or self.ui_policy.allows_redirect(url)  # noqa: E731
        # every request of this target, whatever thread makes it, takes one of max_concurrency slots
        self.http = HttpClient(config, max_concurrency=config.max_concurrency, redirect_allowed=redirect_allowed)
        # a ResourceManager, or an HA list of them, and which one answered last
        self.yarn = clusters.YarnRms(config.own_urls()) if config.discover == "yarn" else None
        self.env_cache = EnvironmentCache(config.environment_refresh)
        # the threads that make this target's requests ahead of time, kept between scrapes
        self.pool = RequestPool(config.max_concurrency, f"sparkwatch-spark-{self.name}-io")

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        cfg = self.config
        if cfg.discover == "ui":
            scrape_spark_ui(self.http, cfg.url, out, scrape.deadline,
                            include_completed=cfg.include_completed, max_applications=cfg.max_applications,
                            env_cache=self.env_cache, stale_after=cfg.stale_after,
                            max_concurrency=cfg.max_concurrency, pool=self.pool, max_attempts=cfg.max_attempts)
            return
        # the cluster manager unreadable: target down
        if cfg.discover == "standalone":
            apps = clusters.standalone_apps(self.http, cfg.url, scrape.deadline, max_lookups=cfg.max_applications,
                                            concurrency=cfg.max_concurrency)
        else:
            apps = self.yarn.apps(self.http, scrape.deadline)
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
            try:
                scrape_spark_ui(self.http, app.ui, part, app_deadline, max_applications=1,
                                env_cache=self.env_cache, stale_after=0, max_concurrency=per_ui, pool=self.pool,
                                headers=app.headers)  # by URL: clusters.ProxyCookie
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
                    merge(out, part)
                    scraped += ok
        self.env_cache.retain_bases(a.ui for a in with_ui)
        out.add(CLUSTER_APPS_SCRAPED, scraped)

    def close(self) -> None:
        self.pool.close()
        self.http.close()
