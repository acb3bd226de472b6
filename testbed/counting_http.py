"""An HTTP server that counts what a client does to it: for the tests and the
benchmarks of the exporter's request bounds.

HTTP/1.1 with keep-alive and no Nagle, as Jetty (Spark's UI server) answers.
Every answer is ``answer(path, query)`` -> (status, body, content type), after
``delay`` seconds; a body may be a callable (called when the answer is sent,
so that it can take its time). It records every path requested, and counts
requests, the most in flight at once and the most connections open at once
(a connection counts from its first request).

In a thread of this process (``with CountingServer(...) as srv``), or served
from a process of its own (``serve()`` after a fork), where the counts are read
over HTTP at ``/_counts`` (``/_counts/reset`` resets them); those requests are
not counted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List
from urllib.parse import parse_qs, urlsplit

Answer = Callable[[str, Dict[str, List[str]]], tuple]
COUNTS_PATH = "/_counts"


class CountingServer:
    def __init__(self, answer: Answer, delay: float = 0.0):
        self.answer, self.delay = answer, delay
        self.lock = threading.Lock()
        self.paths: List[str] = []
        self.requests = 0
        self.in_flight = self.max_in_flight = 0
        self.conns = self.max_conns = 0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # as Jetty: no Nagle (headers and body are two writes; with Nagle and the client's
                # delayed ACK every keep-alive answer would wait 40 ms more)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.counted = False

            def finish(self):
                if self.counted:
                    with srv.lock:
                        srv.conns -= 1
                super().finish()

            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path in (COUNTS_PATH, COUNTS_PATH + "/reset"):
                    if parts.path.endswith("/reset"):
                        srv.reset_counts()
                    self._send(200, json.dumps(srv.counts()).encode(), "application/json")
                    return
                with srv.lock:
                    if not self.counted:
                        self.counted = True
                        srv.conns += 1
                        srv.max_conns = max(srv.max_conns, srv.conns)
                    srv.paths.append(self.path)
                    srv.requests += 1
                    srv.in_flight += 1
                    srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
                try:
                    if srv.delay:
                        time.sleep(srv.delay)
                    status, body, ctype = srv.answer(parts.path, parse_qs(parts.query))
                    if callable(body):
                        body = body()
                    self._send(status, body, ctype)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with srv.lock:
                        srv.in_flight -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # no dropped SYN (a 1 s retransmit) whatever the client does
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def counts(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "max_in_flight": self.max_in_flight, "max_connections": self.max_conns}

    def reset_counts(self) -> None:
        with self.lock:
            self.paths.clear()
            self.requests = self.max_in_flight = 0
            self.max_conns = self.conns

    def serve(self) -> None:
        self.httpd.serve_forever(poll_interval=0.05)

    def __enter__(self) -> "CountingServer":
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
