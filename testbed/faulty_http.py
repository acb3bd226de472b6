"""A local HTTP server that answers every request with one chosen fault.

Modes: ok (``[]``, an empty Spark application list), http500, html (a YARN
proxy warning page), text (a driver still starting), truncated (JSON cut
off), hang (accepts, never answers), trickle (sends a valid-looking body one
byte at a time, forever), reset (closes the connection without answering),
unauthorized (401 unless the right basic auth or bearer token is sent),
trickle_headers (the status line and headers one byte at a time, forever),
slow_redirects (every answer is a redirect to the next path, after a second),
redirect (a redirect to ``srv.redirect_to``), body (``srv.body`` as the Spark
application list, e.g. a hostile one; empty jobs, stages, executors), containers (12 MB of ``[{},{},...]``), deep
(JSON nested 100,000 levels).
"""

from __future__ import annotations

import base64
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional

YARN_PROXY_HTML = b"""<!DOCTYPE html><html><head><title>WARNING: The following page may not be safe!</title>
</head><body><h3>WARNING: The following page may not be safe!</h3>
<p>click <a href="/proxy/application_1_0001/?proxyapproved=true">here</a> to continue</p></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json", length: Optional[int] = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        srv = self.server
        srv.requests.append((self.path, dict(self.headers)))
        mode = srv.mode
        if mode == "ok":
            return self._send(200, b"[]")
        if mode == "http500":
            return self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
        if mode == "html":
            return self._send(200, YARN_PROXY_HTML, "text/html")
        if mode == "text":
            return self._send(200, b"Spark is starting up. Please wait a while until it's ready.", "text/plain")
        if mode == "truncated":
            body = b'[{"id":"app-1","name":"stream","attempts":[{"startTime":"2026-11-2'
            self.close_connection = True
            return self._send(200, body, length=len(body) + 500)  # promise more than is sent, then close
        if mode == "hang":
            srv.stopped.wait(60)
            return
        if mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"[")
            while not srv.stopped.wait(0.2):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
            return
        if mode == "trickle_headers":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Filler: " + b"a" * 100000
            for i in range(len(head)):
                if srv.stopped.wait(0.2):
                    return
                try:
                    self.wfile.write(head[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return
            return
        if mode == "slow_redirects":
            if srv.stopped.wait(1.0):
                return
            n = int(self.path.rsplit("/r", 1)[-1].split("?")[0]) + 1 if "/r" in self.path else 1
            self.send_response(302)
            self.send_header("Location", f"/r{n}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", srv.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "body":  # srv.body as the application list; the rest of a quiet application
            path = self.path.split("?", 1)[0]
            if path.rstrip("/").endswith("/applications"):
                return self._send(200, srv.body)
            if path.rsplit("/", 1)[-1] in ("jobs", "stages", "executors"):
                return self._send(200, b"[]")
            if path.endswith("/environment"):
                return self._send(200, b"{}")
            return self._send(404, b"{}")
        if mode == "containers":
            return self._send(200, b"[" + b"{}," * (4 * 1024 * 1024) + b"{}]")
        if mode == "deep":
            return self._send(200, b"[" * 100000 + b"]" * 100000)
        if mode == "reset":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "unauthorized":
            auth = self.headers.get("Authorization", "")
            if auth in srv.accepted_auth:
                return self._send(200, b"[]")
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="spark"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(404, b"{}")


class FaultyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str, ssl_context=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.mode = mode
        self.stopped = threading.Event()
        self.requests: List = []
        self.accepted_auth: List[str] = []
        self.redirect_to = "/"
        self.body = b"[]"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def accept_basic(self, user: str, password: str) -> None:
        self.accepted_auth.append("Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())

    def accept_bearer(self, token: str) -> None:
        self.accepted_auth.append("Bearer " + token)


@contextmanager
def faulty_server(mode: str, ssl_context=None) -> Iterator[FaultyServer]:
    srv = FaultyServer(mode, ssl_context)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stopped.set()
        srv.shutdown()
        srv.server_close()
        time.sleep(0)
