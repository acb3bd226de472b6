"""HTTP endpoints: /metrics, /probe, the landing page and /-/healthy."""

from __future__ import annotations

import html
import logging
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import List, Optional, Tuple
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from . import __version__
from .collectors import COLLECTOR_KINDS, build_collectors
from .config import ConfigError, iter_targets, parse_config
from .scrape import Families, ProbeCache, Scraper, Target

log = logging.getLogger("sparkwatch")


def target_display(tc) -> str:
    """What the landing page shows for where a target is (never a secret)."""
    for attr in ("url", "hosts", "match"):
        v = getattr(tc, attr, None)
        if v:
            return v if isinstance(v, str) else ",".join(map(str, v))
    return ""


class App:
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


# ---------------------------------------------------------------------- server


class _Handler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from BaseHTTPRequestHandler
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def parse_listen_address(addr: str) -> Tuple[str, int]:
    """``host:port``, ``:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address must be [host]:port, got {addr!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(app: App, listen: str, ready: Optional[threading.Event] = None):
    host, port = parse_listen_address(listen)
    cls = _Server6 if ":" in host else _Server
    httpd = make_server(host, port, app, server_class=cls, handler_class=_Handler)
    log.info("listening on %s:%d", host, httpd.server_port)
    if ready is not None:
        ready.set()
    return httpd
