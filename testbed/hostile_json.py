"""Hostile JSON bodies, and an HTTP server on loopback that answers every request
with one of them: what a target that wants the exporter's memory would send.

Every body is at most ``size`` bytes (by default the exporter's cap,
``MAX_BODY_BYTES``, so that it is read in full) and built to cost as much as
possible once decoded: 16 MiB of ``[1e1,1e1,...]`` is 4 million floats (about
130 MiB of Python objects), of ``[[],[],...]`` 5.6 million lists.

``HostileServer(shape)`` answers the Spark application list with the hostile
body (``where="list"``), or (``where="apps"``) a list of ``apps`` quiet
applications whose every per-application endpoint (jobs, stages, executors,
environment) answers it; ``gzip=True`` sends it gzip-compressed (a few KiB on
the wire).

``LyingServer`` holds, not sends: it lists one application and answers each of
its endpoints (and the metrics servlet) with a ``Content-Length`` it never
honours (by default the exporter's 16 MiB cap), sending a byte now and then
until the client gives up: what a target that wants to spend the exporter's
memory budget without spending memory would send.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from contextlib import ExitStack
from typing import Callable, Dict, Optional

MiB = 1024 * 1024


def _array(item: bytes, size: int) -> bytes:
    """``[item,item,...]`` of at most ``size`` bytes."""
    n = max(1, (size - 2 + 1) // (len(item) + 1))
    return b"[" + b",".join([item] * n) + b"]"


def _one_string(prefix: bytes, size: int) -> bytes:
    """``["<prefix>aaaa..."]`` of ``size`` bytes."""
    return b'["' + prefix + b"a" * (size - 4 - len(prefix)) + b'"]'


#: shape -> body of at most ``size`` bytes
SHAPES: Dict[str, Callable[[int], bytes]] = {
    "floats": lambda size: _array(b"1e1", size),
    "strings": lambda size: _array(b'"ab"', size),
    "nested": lambda size: _array(b"[]", size),
    "objects": lambda size: _array(b'{"a":0}', size),
    "keys": lambda size: b"{" + b",".join(b'"%07x":0' % i for i in range((size - 2) // 12)) + b"}",
    "digits": lambda size: _array(b"9" * 4000 + b"e999999999", size),
    "exponents": lambda size: _array(b"1e99999999999999999999", size),
    "astral": lambda size: _one_string("\U0001F600".encode(), size),  # a 4-byte-per-character string
    "escapes": lambda size: _one_string(b"\\ud83d\\ude00", size),  # the same from an ASCII body
}


def body(shape: str, size: int) -> bytes:
    b = SHAPES[shape](size)
    assert len(b) <= size, (shape, len(b), size)
    return b


def quiet_apps(n: int) -> bytes:
    """A Spark application list of ``n`` running applications."""
    return json.dumps([{"id": f"app-2026-{i:04d}", "name": f"app {i}",
                        "attempts": [{"startTime": "2026-11-30T10:00:00.000GMT", "completed": False,
                                      "lastUpdated": "2026-11-30T10:00:00.000GMT"}]}
                       for i in range(n)]).encode()


class _Handler(BaseHTTPRequestHandler):
    """What the servers below share: HTTP/1.1, quiet, a client that gives up is no error."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle(self):
        try:
            super().handle()
        except OSError:  # the exporter gave up on a connection: that is the point
            pass

    def head(self, length: int, encoding: Optional[str] = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def answer(self, out: bytes, encoding: Optional[str] = None) -> None:
        self.head(len(out), encoding)
        self.wfile.write(out)


class _Server:
    """A threading HTTP server on 127.0.0.1 with ``handler``, serving while entered."""

    def __init__(self, handler: type):
        self.stopped = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class HostileServer(_Server):
    """An HTTP server on 127.0.0.1 answering ``body(shape, size)`` (see the module doc)."""

    def __init__(self, shape: str, size: int, where: str = "list", apps: int = 40, gzip_it: bool = False):
        payload = body(shape, size)
        encoding = None
        if gzip_it:
            payload, encoding = gzip.compress(payload, 9), "gzip"
        listing = quiet_apps(apps)
        self.requests = 0
        me = self

        class Handler(_Handler):
            def do_GET(self):  # noqa: N802
                me.requests += 1
                path = self.path.split("?", 1)[0].rstrip("/")
                if path.endswith("/metrics/json"):
                    self.answer(b"{}")
                elif where == "apps" and path.endswith("/api/v1/applications"):
                    self.answer(listing)
                else:
                    self.answer(payload, encoding)

        super().__init__(Handler)


class LyingServer(_Server):
    """An HTTP server on 127.0.0.1 (see the module doc): the application list is one
    quiet application; every other answer declares ``declared`` bytes, sends ``[``,
    then a space every ``every`` seconds until the connection is closed. ``lying``
    counts the answers being trickled; ``wait_lying(n)`` waits until ``n`` have
    started."""

    def __init__(self, declared: int, every: float = 0.2):
        listing = quiet_apps(1)
        self.lying = 0
        self._cond = threading.Condition()
        me = self

        class Handler(_Handler):
            def do_GET(self):  # noqa: N802
                if self.path.split("?", 1)[0].rstrip("/").endswith("/api/v1/applications"):
                    return self.answer(listing)
                self.close_connection = True
                self.head(declared)
                self.wfile.write(b"[")
                self.wfile.flush()
                with me._cond:
                    me.lying += 1
                    me._cond.notify_all()
                while not me.stopped.wait(every):
                    self.wfile.write(b" ")
                    self.wfile.flush()

        super().__init__(Handler)

    def wait_lying(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.lying >= n, timeout)


def hostile_fleet(stack: ExitStack, size: int, apps: int = 40) -> Dict[str, "HostileServer"]:
    """Started on ``stack``: a server per shape (its application list is the hostile
    body), ``apps`` (a list of ``apps`` applications whose every endpoint answers
    ``size`` bytes of floats) and ``gzip`` (4 x ``size`` of floats, gzip-compressed)."""
    servers = {shape: stack.enter_context(HostileServer(shape, size)) for shape in SHAPES}
    servers["apps"] = stack.enter_context(HostileServer("floats", size, where="apps", apps=apps))
    servers["gzip"] = stack.enter_context(HostileServer("floats", 4 * size, gzip_it=True))
    return servers


def status_bytes(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` (``VmHWM``: the peak resident size,
    ``VmRSS``, ``VmSize``), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)
