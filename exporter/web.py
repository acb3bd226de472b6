"""The exporter's HTTP endpoints: :class:`App`, the WSGI application that answers
``/metrics``, ``/probe``, the landing page and ``/-/healthy``, and :func:`serve`,
which puts it behind the web configuration (TLS, basic authentication) on the
exporter's own server (:mod:`sparkwatch.httpserver`)."""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import List, Optional, Tuple
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__
from .collectors import COLLECTOR_KINDS, build_collectors
from .config import ConfigError, iter_targets, parse_config
from .httpserver import DEFAULT_HEADER_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Server
from .scrape import Families, ProbeCache, Scraper, Target
from .webconfig import Protected

log = logging.getLogger("sparkwatch")


def target_display(tc) -> str:
    """What the landing page shows for where a target is (never a secret)."""
    for attr in ("url", "hosts", "match"):
        v = getattr(tc, attr, None)
        if v:
            return v if isinstance(v, str) else ",".join(map(str, v))
    return ""


class App:
    """The exporter as a WSGI application: the configured targets, scraped when
    ``/metrics`` is asked for, and the targets probed through ``/probe`` (cached,
    at most ``exporter.probe.max_cached_targets``). :meth:`close` releases what
    the collectors hold."""

    def __init__(self, config):
        self.config = config
        ex = config.exporter
        configured = list(iter_targets(config))
        self.targets: List[Target] = [
            Target(c, target_display(tc)) for c, (_, tc) in zip(build_collectors(configured), configured)
        ]
        self.scraper = Scraper(self.targets, ex.scrape_timeout, ex.timeout_offset)
        self.probes = ProbeCache(ex.probe.max_cached_targets)
        self.started = time.time()

    def close(self) -> None:
        """Close every target's collector (their HTTP sessions, ZooKeeper clients, ...)."""
        for t in self.targets + self.probes.targets():
            try:
                t.collector.close()
            except Exception:
                log.debug("close failed", exc_info=True)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET\n")
        if path == "/metrics":
            return self._metrics(environ, start_response, self.scraper)
        if path == "/probe":
            return self._probe(environ, start_response)
        if path in ("/-/healthy", "/-/ready"):
            return _plain(start_response, "200 OK", "OK\n")
        if path == "/":
            return self._landing(start_response)
        return _plain(start_response, "404 Not Found", "not found: try /metrics\n")

    def _metrics(self, environ, start_response, scraper: Scraper):
        seconds = scraper.deadline_seconds(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"))
        families = scraper.scrape(seconds)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Families(families))
        return make_wsgi_app(registry)(environ, start_response)

    def _probe(self, environ, start_response):
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        module = (qs.get("module") or [""])[0]
        target = (qs.get("target") or [""])[0]
        probe = self.config.exporter.probe
        if module not in COLLECTOR_KINDS or COLLECTOR_KINDS[module].probe_field is None:
            probeable = sorted(k for k, c in COLLECTOR_KINDS.items() if c.probe_field)
            return _plain(start_response, "400 Bad Request",
                          f"module must be one of {', '.join(probeable)}\n")
        if not target:
            return _plain(start_response, "400 Bad Request", "target parameter is missing\n")
        if not probe.allows(target):
            return _plain(start_response, "403 Forbidden",
                          "target is not allowed: add a matching pattern to exporter.probe.allowed_targets\n")
        template = dict(probe.modules.get(module, {}))
        field = COLLECTOR_KINDS[module].probe_field
        template[field] = target if field == "url" else [h for h in target.split(",") if h]
        template.setdefault("name", target)
        if field == "url":  # a probed target's redirects stay inside the allow-list
            template["redirects_allowed_to"] = list(probe.allowed_targets)
        try:
            cfg = parse_config({module: [template]}, f"probe module {module}")
        except ConfigError as e:
            return _plain(start_response, "400 Bad Request", str(e) + "\n")
        tc = getattr(cfg, module)[0]
        t = self.probes.get((module, target), lambda: Target(build_collectors([(module, tc)])[0], target))
        scraper = Scraper([t], self.config.exporter.scrape_timeout, self.config.exporter.timeout_offset)
        return self._metrics(environ, start_response, scraper)

    def _landing(self, start_response):
        rows = []
        now = time.time()
        for t in self.targets + self.probes.targets():
            s = t.state
            if s.up is None:
                status, cls = "not scraped yet", "unknown"
            else:
                status, cls = ("up", "up") if s.up else ("down", "down")
            ago = f"{now - s.last_scrape:.0f}s ago" if s.last_scrape else ""
            took = f"{s.last_duration:.3f}s" if s.last_duration is not None else ""
            rows.append(
                "<tr class='{}'><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                    cls, *(html.escape(x) for x in (s.kind, s.name, s.display, status, ago, took, s.last_error)))
            )
        body = _LANDING.format(version=html.escape(__version__), rows="\n".join(rows) or
                               "<tr><td colspan=7>no targets configured</td></tr>")
        data = body.encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))])
        return [data]


_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>sparkwatch</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} tr.down td{{background:#fdd}}
tr.up td{{background:#efe}}</style></head>
<body><h1>sparkwatch {version}</h1>
<p>Prometheus exporter for long-running Apache Spark services.
<a href="/metrics">Metrics</a> &middot; <a href="/-/healthy">Health</a></p>
<h2>Targets</h2>
<table><tr><th>kind</th><th>target</th><th>where</th><th>status</th><th>last scrape</th><th>took</th><th>last error</th></tr>
{rows}
</table>
<p>Targets are scraped when <a href="/metrics">/metrics</a> is requested.
One target may also be scraped with <code>/probe?module=KIND&amp;target=URL</code>
(allowed targets: <code>exporter.probe.allowed_targets</code>).</p>
</body></html>
"""


def _plain(start_response, status: str, text: str):
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def parse_listen_address(addr: str) -> Tuple[str, int]:
    """``host:port``, ``:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address must be [host]:port, got {addr!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(app, listen: str, ready: Optional[threading.Event] = None, *, web_config=None,
          max_connections: int = DEFAULT_MAX_CONNECTIONS, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
          io_timeout: float = DEFAULT_IO_TIMEOUT, max_pending: Optional[int] = None) -> Server:
    """Bind ``listen`` and return the server (call ``serve_forever`` on it).

    ``web_config`` (:class:`sparkwatch.webconfig.WebConfig`) adds TLS, basic
    authentication and response headers."""
    host, port = parse_listen_address(listen)
    ssl_context = peer_check = gate = None
    if web_config is not None:
        ssl_context = web_config.ssl_context()
        peer_check = web_config.peer_check()
        app = web_config.wrap(app)
        if isinstance(app, Protected) and app.auth is not None:
            gate = app
    httpd = Server((host, port), max_connections=max_connections, header_timeout=header_timeout,
                   io_timeout=io_timeout, max_pending=max_pending, ssl_context=ssl_context, peer_check=peer_check,
                   gate=gate)
    httpd.set_app(app)
    log.info("listening on %s:%d (%s, at most %d connections at once)", host, httpd.server_port,
             "TLS" if ssl_context is not None else "plain HTTP", max_connections)
    if ready is not None:
        ready.set()
    return httpd
