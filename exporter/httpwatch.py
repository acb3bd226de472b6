"""Every request bounded in time and in the size of its head.

``requests`` timeouts bound each socket operation, not the whole response, so
a server that trickles bytes (the status line, the headers or the body, one a
second) could hold a scrape forever. Every request of an
:class:`~sparkwatch.httpclient.HttpClient` therefore runs under a :class:`Watch`:
the connections it uses (new and reused alike) are shut down when its deadline
passes. One thread watches every request in flight (:class:`Watchdog`), and
exists only while there is one. A response's status line and headers are read
within :data:`MAX_HEAD_BYTES` (:class:`WatchedAdapter`'s connections).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import math
import socket
import threading
import time
from typing import List, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .collector import Deadline

#: a response's status line and headers larger than this are refused (``limit``)
MAX_HEAD_BYTES = 64 * 1024


# --------------------------------------------------------------------------
# The watchdog: the connections a thread's current request uses are shut
# down when its deadline passes. One thread watches every request in flight
# (a timer thread per request cost ~10% of a request's CPU); it ends as soon
# as no request is in flight, so that no thread outlives a scrape.

_current = threading.local()


class Watchdog:
    """Fires each registered :class:`Watch` when its time comes, from one thread
    (named ``sparkwatch-http-deadline``) that exists only while requests are in
    flight."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._heap: List[list] = []  # [at (monotonic), seq, watch or None once done]
        self._seq = itertools.count()
        self._active = 0
        self._thread: Optional[threading.Thread] = None
        #: when the thread wakes up next (monotonic; inf while it is not waiting)
        self._wakes_at = math.inf

    def add(self, watch: "Watch", at: float) -> list:
        start = None
        with self._cv:
            entry = [at, next(self._seq), watch]
            heapq.heappush(self._heap, entry)
            self._active += 1
            if self._thread is None:
                self._thread = start = threading.Thread(target=self._run, name="sparkwatch-http-deadline",
                                                        daemon=True)
            elif at < self._wakes_at:
                self._cv.notify()  # earlier than what the thread sleeps for
        if start is not None:
            # started outside the lock: the other requests of the scrape register meanwhile
            # (Thread.start waits until the thread runs, which takes a while on a busy machine)
            try:
                start.start()
            except BaseException:
                with self._cv:
                    if self._thread is start:
                        self._thread = None
                raise
        return entry

    def remove(self, entry: list) -> None:
        with self._cv:
            if entry[2] is None:
                return
            entry[2] = None
            self._active -= 1
            if self._active == 0:
                self._heap.clear()  # only finished entries left: let the thread go
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    while self._heap and self._heap[0][2] is None:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        if self._thread is threading.current_thread():
                            self._thread = None
                        return
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        entry = heapq.heappop(self._heap)
                        watch = entry[2]
                        entry[2] = None
                        self._active -= 1
                        break
                    self._wakes_at = self._heap[0][0]
                    self._cv.wait(delay)
                    self._wakes_at = math.inf
            watch._fire()  # outside the lock: shutting sockets down may take a moment


WATCHDOG = Watchdog()


def requests_in_flight() -> int:
    """Requests of any :class:`HttpClient` of this process now in flight (every one of
    them ends by its deadline)."""
    with WATCHDOG._cv:
        return WATCHDOG._active


class Watch:
    """One request under its deadline (``with Watch(deadline):`` around it): the
    connections the calling thread uses meanwhile are shut down when the deadline
    passes, and :attr:`fired` says it did."""

    def __init__(self, deadline: Deadline):
        self._lock = threading.Lock()
        self._conns: List[HTTPConnection] = []
        self.fired = False
        self._at = time.monotonic() + max(0.0, deadline.remaining())
        self._entry: Optional[list] = None

    def __enter__(self) -> "Watch":
        self._outer = getattr(_current, "watch", None)
        _current.watch = self
        self._entry = WATCHDOG.add(self, self._at)
        return self

    def __exit__(self, *exc) -> None:
        if self._entry is not None:
            WATCHDOG.remove(self._entry)
        _current.watch = self._outer

    def add(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._conns.append(conn)
            fired = self.fired
        if fired:
            _shutdown(conn)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            conns = list(self._conns)
        for c in conns:
            _shutdown(c)


def _shutdown(conn: HTTPConnection) -> None:
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HeadTooLarge(http.client.HTTPException):
    """A response's status line and headers larger than :data:`MAX_HEAD_BYTES`."""


class _HeadReader:
    """A response's socket file while its status line and headers are read: at most
    :data:`MAX_HEAD_BYTES` of them (http.client alone reads 100 lines of 64 KiB, 6.4 MiB
    per request in flight, before anything could count it)."""

    def __init__(self, fp):
        self._fp, self._left = fp, MAX_HEAD_BYTES

    def readline(self, size: int = -1) -> bytes:
        cap = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        line = self._fp.readline(cap)
        self._left -= len(line)
        if self._left < 0:
            raise HeadTooLarge(f"response head larger than {MAX_HEAD_BYTES} bytes")
        return line

    def __getattr__(self, name):
        return getattr(self._fp, name)


class _BoundedHTTPResponse(http.client.HTTPResponse):
    def begin(self):
        fp = self.fp
        reader = self.fp = _HeadReader(fp)
        try:
            super().begin()
        finally:
            if self.fp is reader:  # (http.client sets it to None when it closes the response)
                self.fp = fp


class _Watched:
    """Mix-in for urllib3 connections: every request registers its connection
    with the watchdog of the calling thread (new and reused connections alike);
    a response's head is read within :data:`MAX_HEAD_BYTES`."""

    response_class = _BoundedHTTPResponse

    def connect(self):
        watch = getattr(_current, "watch", None)
        if watch is not None and watch.fired:
            raise socket.timeout("scrape deadline exceeded")
        super().connect()
        if watch is not None:
            watch.add(self)

    def request(self, *args, **kwargs):
        watch = getattr(_current, "watch", None)
        if watch is not None and self.sock is not None:
            watch.add(self)
        return super().request(*args, **kwargs)


def caused_by(e: BaseException, cls: type, depth: int = 6) -> bool:
    """Whether ``cls`` is among what ``e`` wraps (requests and urllib3 wrap errors in
    their arguments)."""
    if isinstance(e, cls):
        return True
    if depth == 0:
        return False
    inner = [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    inner += [x for x in (e.__cause__, e.__context__) if x is not None]
    return any(caused_by(x, cls, depth - 1) for x in inner)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections that register with the calling thread's
    :class:`Watch` and read a response's head within :data:`MAX_HEAD_BYTES`."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
