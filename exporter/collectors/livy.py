"""Livy collector: an Apache Livy server (default port 8998), Livy 0.3 to 0.9.

What it reads, per scrape:

- ``GET /version`` (``{"version": ...}``; a 404 from a very old server is
  tolerated and reported as version ``unknown``).
- ``GET /batches`` and ``GET /sessions``, paged with ``from`` and ``size``.
  Livy answers ``{"from", "total", "sessions": [...]}`` where ``total`` counts
  every session the server holds and ``size`` defaults to 100 with no upper
  bound. Sessions are listed in the server's insertion order, and the list
  changes while we page through it: a session deleted before our offset shifts
  every later session one place down (one would be skipped), new sessions are
  appended, and states change. Pages are therefore requested with a small
  overlap and deduplicated by session id (the latest observation of an id
  wins); when an overlap finds none of the ids it should repeat, more sessions
  were deleted than the overlap covers and the page is re-read from further
  back. A session is thus never counted twice, and one is only missed if it was
  deleted during the scrape (it is gone anyway).
- ``GET /metrics/threads`` (Dropwizard's thread dump), optional: the number of
  threads and of ``yarnAppMonitorThread-*`` threads (one per monitored YARN
  application: after a recovery, one per recovered batch).
- Optional: the Spark UIs of active sessions (``appInfo.sparkUiUrl``), scraped
  with :func:`sparkwatch.collectors.spark.scrape.scrape_spark_ui`, as the Spark
  collector scrapes its UI.
- Optional: Livy's filesystem state store (a local directory), counted like
  the ZooKeeper one: the sessions a restart would recover.

Livy returns no timestamp for a session, so the age of a finished session is
the time since *this exporter* first saw it in a terminal state. That memory is
one entry per finished session Livy still lists; ids Livy no longer lists are
forgotten.
"""

from __future__ import annotations

import os
import re
import time
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from ..uipolicy import UiPatterns, UiPolicy
from ..collector import Collector, Deadline, MetricSet, ScrapeContext, TargetError, gauge, info
from ..httpclient import HttpClient, decode_json
from ..livystore import RECOVERY_SESSIONS, SESSION_KINDS, count_fs_state_store
from ..targetconfig import HttpTarget, Interval, TLSConfig
from .spark.cache import EnvironmentCache
from .spark.metrics import UI_METRICS
from .spark.scrape import scrape_spark_ui

#: Livy's session states (org.apache.livy.sessions.SessionState), all versions.
STATES = (
    "not_started",
    "starting",
    "recovering",
    "idle",
    "running",
    "busy",
    "shutting_down",
    "error",
    "dead",
    "killed",
    "success",
)
TERMINAL_STATES = frozenset(("error", "dead", "killed", "success"))
#: states in which a session's Spark application (and its UI) is alive
ACTIVE_STATES = frozenset(("idle", "running", "busy"))
#: (session kind, the REST endpoint listing sessions of that kind)
SESSION_ENDPOINTS = (("batch", "/batches"), ("interactive", "/sessions"))

# --------------------------------------------------------------------------
# Metrics

SESSIONS = gauge(
    "livy_sessions",
    "Sessions the Livy server holds, by kind (batch or interactive) and state. Every known Livy state "
    "is always exported (0 when none); a state this exporter does not know is counted as 'unknown'. "
    "Finished sessions (success, dead, killed, error) stay until DELETE or Livy's retention.",
    ["kind", "state"],
)
SESSIONS_REPORTED = gauge(
    "livy_sessions_reported",
    "Sessions the Livy server reports holding (the 'total' field of GET /batches or /sessions), "
    "finished ones included. Exact even when max_sessions stops the per-state count.",
    ["kind"],
)
SESSIONS_LIMIT = gauge(
    "livy_sessions_limit_reached",
    "1 if this scrape stopped reading sessions at max_sessions (livy_sessions then counts only the "
    "sessions read), else 0.",
    ["kind"],
)
FINISHED_OLDEST = gauge(
    "livy_finished_session_oldest_age_seconds",
    "Age of the oldest finished session Livy still holds, measured from when this exporter first saw "
    "it in a terminal state (Livy reports no timestamps): a lower bound that restarts from zero when "
    "the exporter restarts. 0 when there is no finished session.",
    ["kind"],
)
FINISHED_OLD = gauge(
    "livy_finished_sessions_older_than_retention",
    "Finished sessions Livy still holds that this exporter has seen in a terminal state for longer than "
    "the configured finished_retention: sessions Livy should have removed (or that nobody DELETEs).",
    ["kind"],
)
LIVY_INFO = info("livy", "The Livy server's version, and the process name it joins with jvm_process_* metrics.",
                 ["version", "process"])
THREADS = gauge(
    "livy_threads",
    "Threads in the Livy server JVM, counted in its thread dump (GET /metrics/threads).",
)
MONITOR_THREADS = gauge(
    "livy_yarn_app_monitor_threads",
    "Threads named yarnAppMonitorThread-* in the Livy server JVM: one per YARN application Livy "
    "monitors (after a restart, one per recovered batch session).",
)
DISCOVERED_UIS = gauge(
    "livy_discovered_spark_uis",
    "Spark UIs of active Livy sessions scraped through this Livy target in this scrape "
    "(discover_spark_ui), at most max_discovered_uis.",
)
REJECTED_UIS = gauge(
    "livy_rejected_spark_uis",
    "Active Livy sessions whose Spark UI was not scraped because its URL is not allowed: not an http(s) "
    "Spark UI on Livy's own host (the root, or /proxy/<application>), nor matching discovered_ui_allowed.",
)
ACTIVE_UIS = gauge(
    "livy_active_spark_uis",
    "Active Livy sessions that advertise a Spark UI (appInfo.sparkUiUrl); more than "
    "livy_discovered_spark_uis means max_discovered_uis left some out.",
)


# --------------------------------------------------------------------------
# Configuration


class LivyTarget(HttpTarget):
    """A ``livy`` target of the configuration: a Livy server's REST API, and
    optionally its thread dump, its filesystem state store and the Spark UIs of
    its active sessions; see docs/livy.md."""

    #: sessions requested per page (Livy's own default is 100; it has no upper bound)
    page_size: int = Field(default=500, ge=1, le=100000)
    #: at most this many sessions of each kind are read per scrape; beyond, livy_sessions is partial
    #: and the scrape reports a 'limit' error
    max_sessions: int = Field(default=100000, ge=1)
    #: seconds a session may stay in a terminal state before it counts in
    #: livy_finished_sessions_older_than_retention (Livy's default state-retain.sec is 600,
    #: checked by a GC thread once a minute)
    finished_retention: Interval = Field(default=900.0, gt=0)
    #: read GET /metrics/threads (the thread dump can be several MB with many threads)
    thread_dump: bool = True
    #: scrape the Spark UIs of active sessions (appInfo.sparkUiUrl) with the Spark collector
    discover_spark_ui: bool = False
    #: at most this many Spark UIs per scrape (the newest sessions first)
    max_discovered_uis: int = Field(default=10, ge=1, le=1000)
    #: URL patterns (scheme://host[:port][/path], '*' within a host label) of Spark UIs that may be
    #: scraped besides those on Livy's own host (e.g. http://resourcemanager:8088/proxy)
    discovered_ui_allowed: UiPatterns = []
    #: name of the Livy JVM, as the jvm target names it (label 'process' of jvm_process_*)
    process: Optional[str] = Field(default=None, min_length=1)
    #: Livy's filesystem state store (livy.server.recovery.state-store.url), when it is a local
    #: directory: a path or a file:// URL. Needs read access (Livy creates it with mode 700).
    filesystem_state_store: Optional[str] = None

    @field_validator("filesystem_state_store")
    @classmethod
    def _local_dir(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if "://" in v:
            parts = urlsplit(v)
            if parts.scheme != "file":
                raise ValueError(f"must be a local directory or a file:// URL, got {v!r} "
                                 "(for an HDFS state store, this exporter cannot count it)")
            v = parts.path
        if not v.startswith("/"):
            raise ValueError(f"must be an absolute path, got {v!r}")
        return v


# --------------------------------------------------------------------------
# Reading helpers


class _Session:
    __slots__ = ("id", "state", "app_id", "ui")

    def __init__(self, sid: int, state: str, app_id: Optional[str], ui: Optional[str]):
        self.id, self.state, self.app_id, self.ui = sid, state, app_id, ui


def _parse_item(item, where: str) -> _Session:
    if not isinstance(item, dict):
        raise TargetError("invalid_response", f"GET {where}: a session is a {type(item).__name__}, not an object")
    sid = item.get("id")
    if isinstance(sid, bool) or not isinstance(sid, int):
        raise TargetError("invalid_response", f"GET {where}: a session has no integer id")
    state = item.get("state")
    state = state if isinstance(state, str) and state in STATES else "unknown"
    app_id = item.get("appId")
    app_id = app_id if isinstance(app_id, str) else None
    ui = None
    app_info = item.get("appInfo")
    if isinstance(app_info, dict):
        u = app_info.get("sparkUiUrl")
        if isinstance(u, str) and u.startswith(("http://", "https://")):
            ui = u
    return _Session(sid, state, app_id, ui)


def _int_field(data: dict, key: str, where: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TargetError("invalid_response", f"GET {where}: '{key}' is missing or not an integer")
    return v


THREAD_LINE = re.compile(rb'^"((?:[^"\n]|"(?! id=))*)" id=', re.M)


def count_threads(body: bytes) -> Tuple[int, int]:
    """(threads, yarnAppMonitorThread-* threads) in a Dropwizard thread dump."""
    total = monitors = 0
    for m in THREAD_LINE.finditer(body):  # one at a time: a list of every name of a 16 MiB dump is ~100 MiB
        total += 1
        monitors += m.group(1).startswith(b"yarnAppMonitorThread")
    return total, monitors


# --------------------------------------------------------------------------
# The collector

#: ids repeated between consecutive pages (deletions up to this many between
#: two page requests are absorbed without a re-read)
PAGE_OVERLAP = 10
#: re-reads of a page per kind and scrape when the overlap was lost
MAX_REREADS = 5


class LivyCollector(Collector):
    """Reads one ``livy`` target per scrape (what it reads is the module's
    docstring). Keeps between scrapes when it first saw each finished session,
    and, once a Spark UI is to be read, a client without Livy's credentials and
    an environment cache for those UIs."""

    kind = "livy"
    config_model = LivyTarget
    metrics = (RECOVERY_SESSIONS, SESSIONS, SESSIONS_REPORTED, SESSIONS_LIMIT, FINISHED_OLDEST, FINISHED_OLD,
               LIVY_INFO, THREADS, MONITOR_THREADS, DISCOVERED_UIS, REJECTED_UIS, ACTIVE_UIS) + UI_METRICS
    probe_field = "url"

    def __init__(self, config: LivyTarget):
        super().__init__(config)
        self.http = HttpClient(config)
        #: kind -> session id -> (monotonic time first seen in a terminal state, appId)
        self._first_seen: Dict[str, Dict[int, Tuple[float, Optional[str]]]] = {k: {} for k, _ in SESSION_ENDPOINTS}
        self._spark = None  # (HttpClient, EnvironmentCache) for discovered Spark UIs, created lazily
        #: a session's sparkUiUrl is read only when it is a Spark UI root or a proxy path on
        #: Livy's host (any port), or matches discovered_ui_allowed
        self.ui_policy = UiPolicy(config.url, config.discovered_ui_allowed, host_wide=True, roots=True)

    # ---------------------------------------------------------------- collect

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        cfg = self.config
        deadline = scrape.deadline
        version = self._version(deadline)
        active_uis: List[Tuple[int, str]] = []
        for kind, path in SESSION_ENDPOINTS:
            sessions, total, limited = self.read_sessions(path, deadline)
            self._export_sessions(out, kind, sessions, total, limited)
            for s in sessions.values():
                if s.ui and s.state in ACTIVE_STATES:
                    active_uis.append((s.id, s.ui))
        out.add(LIVY_INFO, 1, version=version, process=cfg.process or "")

        if cfg.filesystem_state_store:
            self._fs_state_store(out, deadline)
        # optional parts get a deadline that ends a little earlier, so that a slow
        # thread dump or Spark UI costs a partial error, not the whole target
        optional = Deadline(max(0.0, deadline.remaining() - min(1.0, 0.2 * deadline.remaining())))
        if cfg.thread_dump:
            self._threads(out, optional)
        if cfg.discover_spark_ui:
            self._discover(out, optional, active_uis)

    def _version(self, deadline: Deadline) -> str:
        resp = self.http.get("/version", deadline, ok_statuses=(200, 404))
        if resp.status_code == 404:
            return "unknown"
        data = decode_json(resp.content, "/version", resp.headers.get("Content-Type", ""), dict)
        v = data.get("version")
        return v if isinstance(v, str) and v else "unknown"

    def read_sessions(self, path: str, deadline: Deadline) -> Tuple[Dict[int, _Session], int, bool]:
        """Every session of one kind, deduplicated by id: (sessions, total, limit reached)."""
        cfg = self.config
        size = cfg.page_size
        overlap = min(PAGE_OVERLAP, size // 2)
        seen: Dict[int, _Session] = {}
        frm = 0
        tail: List[int] = []  # ids at the end of the previous page, expected again at the start of this one
        rereads = 0
        total = 0
        while True:
            data = self.http.get_json(path, deadline, params={"from": frm, "size": size}, expect=dict)
            total = _int_field(data, "total", path)
            items = data.get("sessions")
            if not isinstance(items, list):
                raise TargetError("invalid_response", f"GET {path}: 'sessions' is missing or not a list")
            page = [_parse_item(i, path) for i in items]
            if tail and page and rereads < MAX_REREADS:
                head_ids = {s.id for s in page[: len(tail)]}
                if not head_ids.intersection(tail):
                    # more sessions were deleted before our offset than the overlap absorbs:
                    # go back a page (ids already seen are deduplicated)
                    rereads += 1
                    frm = max(0, frm - size)
                    tail = []
                    continue
            refused = False
            for s in page:
                if s.id in seen:
                    seen[s.id] = s  # the latest observation wins
                elif len(seen) < cfg.max_sessions:
                    seen[s.id] = s
                else:
                    refused = True
            end = frm + len(page)
            if refused or (len(seen) >= cfg.max_sessions and end < total):
                return seen, total, True
            if not page or len(page) < size or end >= total:
                return seen, total, False
            tail = [s.id for s in page[-overlap:]] if overlap else []
            frm = max(end - overlap, frm + 1)

    def _export_sessions(self, out: MetricSet, kind: str, sessions: Dict[int, _Session], total: int,
                         limited: bool) -> None:
        cfg = self.config
        counts = {s: 0 for s in STATES}
        for s in sessions.values():
            counts[s.state] = counts.get(s.state, 0) + 1
        for state, n in counts.items():
            out.add(SESSIONS, n, kind=kind, state=state)
        out.add(SESSIONS_REPORTED, total, kind=kind)
        out.add(SESSIONS_LIMIT, limited, kind=kind)
        if limited:
            out.error("limit")

        now = time.monotonic()
        memory = self._first_seen[kind]
        oldest = 0.0
        old = 0
        for s in sessions.values():
            if s.state in TERMINAL_STATES:
                rec = memory.get(s.id)
                # an id Livy reuses (after a restart without recovery) is a new session
                if rec is None or (rec[1] and s.app_id and rec[1] != s.app_id):
                    rec = (now, s.app_id)
                    memory[s.id] = rec
                elif rec[1] is None and s.app_id:
                    memory[s.id] = (rec[0], s.app_id)
                age = now - rec[0]
                oldest = max(oldest, age)
                if age > cfg.finished_retention:
                    old += 1
            else:
                memory.pop(s.id, None)
        if not limited:
            for sid in [i for i in memory if i not in sessions]:  # Livy no longer lists them
                del memory[sid]
        elif len(memory) > 2 * cfg.max_sessions:
            for sid in [i for i in memory if i not in sessions]:
                del memory[sid]
        out.add(FINISHED_OLDEST, round(oldest, 3), kind=kind)
        out.add(FINISHED_OLD, old, kind=kind)

    def _fs_state_store(self, out: MetricSet, deadline: Deadline) -> None:
        root = self.config.filesystem_state_store
        process = self.config.process or ""
        if not os.path.isdir(root):
            out.error("partial")
            return
        for kind in SESSION_KINDS:
            if deadline.expired():
                raise TargetError("timeout", "scrape deadline exceeded while counting the filesystem state store")
            try:
                n = count_fs_state_store(root, kind)
            except PermissionError:
                out.error("auth")
                continue
            except OSError:
                out.error("partial")
                continue
            out.add(RECOVERY_SESSIONS, n, kind=kind, process=process)

    def _threads(self, out: MetricSet, deadline: Deadline) -> None:
        try:
            resp = self.http.get("/metrics/threads", deadline, ok_statuses=(200, 404))
        except TargetError as e:
            out.error(e.reason if e.reason in ("auth", "timeout") else "partial")
            return
        if resp.status_code == 404:
            return
        total, monitors = count_threads(resp.content)
        if total == 0:  # not a thread dump (an HTML page from a proxy, ...)
            out.error("partial")
            return
        out.add(THREADS, total)
        out.add(MONITOR_THREADS, monitors)

    def _discover(self, out: MetricSet, deadline: Deadline, uis: List[Tuple[int, str]]) -> None:
        urls: List[str] = []
        for _, u in sorted(uis, reverse=True):  # newest sessions first
            u = u.rstrip("/")
            if u not in urls:
                urls.append(u)
        out.add(ACTIVE_UIS, len(urls))
        allowed = [u for u in urls if self.ui_policy.allows(u)]
        out.add(REJECTED_UIS, len(urls) - len(allowed))
        chosen = allowed[: self.config.max_discovered_uis]
        scraped = self._scrape_spark_uis(out, deadline, chosen)
        out.add(DISCOVERED_UIS, scraped)

    def _scrape_spark_uis(self, out: MetricSet, deadline: Deadline, urls: List[str]) -> int:
        """Scrape each Spark UI with :func:`~sparkwatch.collectors.spark.scrape.scrape_spark_ui`; a dead or slow UI
        is a partial error (the Livy target stays up). Returns the UIs scraped."""
        if not urls:
            return 0
        if self._spark is None:
            # a client of its own: Livy's credentials (basic auth, token, client certificate) are
            # not sent to the Spark UIs; only how to verify servers is shared; redirects stay
            # within what is allowed
            tls = self.config.tls_config
            ui_tls = TLSConfig(ca_file=tls.ca_file, insecure_skip_verify=tls.insecure_skip_verify)
            ui_target = HttpTarget(url=urls[0], timeout=self.config.timeout, tls_config=ui_tls)
            self._spark = (HttpClient(ui_target, redirect_allowed=self.ui_policy.allows_redirect), EnvironmentCache())
        http, env_cache = self._spark
        scraped = 0
        for i, url in enumerate(urls):
            left = deadline.remaining()
            if left <= 0:
                out.error("timeout")
                break
            # a fair share of what is left, so that one hung UI does not starve the others
            share = Deadline(left / (len(urls) - i))
            try:
                scrape_spark_ui(http, url, out, share, include_completed=False, max_applications=1,
                                env_cache=env_cache)
                scraped += 1
            except TargetError:
                out.error("partial")
        return scraped

    def close(self) -> None:
        self.http.close()
        if self._spark is not None:
            self._spark[0].close()
