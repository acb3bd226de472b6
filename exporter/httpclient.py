"""HTTP for the collectors: requests, bounded by the scrape deadline as a whole.

``requests`` timeouts bound each socket operation, not the whole response, so
a server that trickles bytes (the status line, the headers or the body, one a
second) could hold a scrape forever. Every request therefore runs under a
watchdog that shuts the connection's socket down when the deadline passes (one
thread watches every request in flight, and exists only while there is one),
bodies are read in chunks against the deadline and capped in size, redirects
are followed by hand (each hop under the same deadline, at most
:data:`MAX_REDIRECTS`, and only to URLs the target allows), and JSON is
checked for its cost before it is decoded: the memory of every answer (its
body, the JSON being decoded, the decoded answer while it is used) is taken
from the target's :class:`MemoryBudget` and the process', or the request is a
``limit`` error. ``max_concurrency`` bounds the
requests one client (one target) has in flight at once, whatever the number of
threads that use it; its connection pools are large enough for that many. Every
failure becomes a
:class:`~sparkwatch.collector.TargetError` with a bounded reason; messages never
contain credentials (URLs never carry them: the config rejects that, and
request errors are reported by type, not by text that may quote a header).

Where a request goes is decided once per hop, by
:func:`sparkwatch.urlpattern.resolve`, on the URL as requests prepares and
connects with it; the prepared URL is what is sent. The target's credentials
(basic auth, bearer token, client certificate) go only when that origin is the
target's own; a URL the decision refuses (user info, a backslash, an escape or
a control character where the host is) is an ``invalid_response``, never
requested.
"""

from __future__ import annotations

import heapq
import http.client
import http.cookiejar
import itertools
import json
import os
import socket
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import __version__
from .collector import Deadline, TargetError
from .urlpattern import Origin, resolve

MiB = 1024 * 1024
#: a response body larger than this (decompressed) is refused (``limit``)
MAX_BODY_BYTES = 16 * MiB
#: a response's status line and headers larger than this are refused (``limit``)
MAX_HEAD_BYTES = 64 * 1024
#: what the answers of one target (bodies being read or held, JSON being decoded, decoded
#: answers in use) may hold at once: a response that does not fit is that request's ``limit``
MAX_TARGET_BYTES = 48 * MiB
#: ... and of every target of the process together, beyond each target's floor
MAX_HELD_BYTES = 96 * MiB
#: what each target may hold whatever the others hold: a healthy target's small answers
#: never fail because hostile neighbours spent the process' budget
TARGET_FLOOR_BYTES = 1 * MiB
#: resident memory the interpreter needs besides the answers budgeted above, at most, for a
#: scrape of a few dozen targets: request threads' stacks, connections and their buffers,
#: response heads being read (MAX_HEAD_BYTES each), metrics
RSS_OVERHEAD_BYTES = 32 * MiB
#: what decoding JSON costs per value, at most, besides the text of strings and numbers
#: (a float: 24 bytes and its slot; a small dict: ~200 bytes; a key: its str and entries in
#: the object and in the decoder's memo); measured with tracemalloc for every shape in
#: tests/test_core_memory.py
JSON_VALUE_COST = 96
MAX_REDIRECTS = 5
#: connections kept per host (urllib3's default), more with a larger max_concurrency
DEFAULT_POOL_SIZE = 10
CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# The watchdog: the connections a thread's current request uses are shut
# down when its deadline passes. One thread watches every request in flight
# (a timer thread per request cost ~10% of a request's CPU); it ends as soon
# as no request is in flight, so that no thread outlives a scrape.

_current = threading.local()


class _Watchdog:
    """Fires each registered :class:`_Watch` when its time comes, from one thread
    (named ``sparkwatch-http-deadline``) that exists only while requests are in
    flight."""

    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._heap: List[list] = []  # [at (monotonic), seq, watch or None once done]
        self._seq = itertools.count()
        self._active = 0
        self._thread: Optional[threading.Thread] = None

    def add(self, watch: "_Watch", at: float) -> list:
        with self._cv:
            entry = [at, next(self._seq), watch]
            heapq.heappush(self._heap, entry)
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sparkwatch-http-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cv.notify()  # earlier than what the thread sleeps for
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
                        self._thread = None
                        return
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        entry = heapq.heappop(self._heap)
                        watch = entry[2]
                        entry[2] = None
                        self._active -= 1
                        break
                    self._cv.wait(delay)
            watch._fire()  # outside the lock: shutting sockets down may take a moment


_WATCHDOG = _Watchdog()


def requests_in_flight() -> int:
    """Requests of any :class:`HttpClient` of this process now in flight (every one of
    them ends by its deadline)."""
    with _WATCHDOG._cv:
        return _WATCHDOG._active


class _Watch:
    def __init__(self, deadline: Deadline):
        self._lock = threading.Lock()
        self._conns: List[HTTPConnection] = []
        self.fired = False
        self._at = time.monotonic() + max(0.0, deadline.remaining())
        self._entry: Optional[list] = None

    def __enter__(self) -> "_Watch":
        self._outer = getattr(_current, "watch", None)
        _current.watch = self
        self._entry = _WATCHDOG.add(self, self._at)
        return self

    def __exit__(self, *exc) -> None:
        if self._entry is not None:
            _WATCHDOG.remove(self._entry)
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


class _HeadTooLarge(http.client.HTTPException):
    pass


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
            raise _HeadTooLarge(f"response head larger than {MAX_HEAD_BYTES} bytes")
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


def _caused_by(e: BaseException, cls: type, depth: int = 6) -> bool:
    """Whether ``cls`` is among what ``e`` wraps (requests and urllib3 wrap errors in
    their arguments)."""
    if isinstance(e, cls):
        return True
    if depth == 0:
        return False
    inner = [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    inner += [x for x in (e.__cause__, e.__context__) if x is not None]
    return any(_caused_by(x, cls, depth - 1) for x in inner)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# --------------------------------------------------------------------------
# Memory: every answer's bytes are taken from its target's budget and the
# process', and given back when the answer is dropped. Decoding JSON costs far
# more than the body (16 MiB of floats is ~130 MiB of Python objects), so its
# cost is estimated from the body before it is decoded (json_cost).


class MemoryBudget:
    """Bytes that may be held at once: ``limit`` in all; with a ``parent`` (the
    process' budget), what is held beyond ``floor`` is taken from the parent too."""

    _lock = threading.Lock()  # one for every budget: a take is checked against both levels at once

    def __init__(self, limit: int, floor: int = 0, parent: Optional["MemoryBudget"] = None):
        self.limit, self.floor, self.parent = limit, floor, parent
        self.used = 0

    def _beyond_floor(self, used: int) -> int:
        return max(0, used - self.floor)

    def take(self, n: int) -> Optional[str]:
        """Take ``n`` bytes; None when granted, else what refused: "target" or "exporter"."""
        with self._lock:
            used = self.used + n
            if used > self.limit:
                return "target"
            if self.parent is not None:
                more = self._beyond_floor(used) - self._beyond_floor(self.used)
                if self.parent.used + more > self.parent.limit:
                    return "exporter"
                self.parent.used += more
            self.used = used
            return None

    def give(self, n: int) -> None:
        with self._lock:
            used = max(0, self.used - n)
            if self.parent is not None:
                self.parent.used -= self._beyond_floor(self.used) - self._beyond_floor(used)
            self.used = used


#: every target's answers together
PROCESS_BUDGET = MemoryBudget(MAX_HELD_BYTES)


class _Hold:
    """Bytes taken from a budget for one answer; given back by :meth:`release` (or when
    the object it is tied to with :meth:`tie` is dropped)."""

    __slots__ = ("budget", "n", "__weakref__")

    def __init__(self, budget: MemoryBudget):
        self.budget, self.n = budget, 0

    def resize(self, n: int, where: str) -> None:
        if n > self.n:
            refused = self.budget.take(n - self.n)
            if refused is not None:
                raise TargetError("limit", f"{where}: the answer does not fit in the {refused}'s memory "
                                           f"budget ({_budget_text(self.budget, refused)})")
        elif n < self.n:
            self.budget.give(self.n - n)
        self.n = n

    def release(self) -> None:
        n, self.n = self.n, 0
        if n:
            self.budget.give(n)

    def tie(self, obj) -> None:
        """Release when ``obj`` is garbage (now, if it cannot be watched)."""
        try:
            weakref.finalize(obj, self.release)
        except TypeError:
            self.release()


def _budget_text(budget: MemoryBudget, refused: str) -> str:
    b = budget if refused == "target" or budget.parent is None else budget.parent
    return f"{b.limit // MiB} MiB"


class _JsonList(list):
    __slots__ = ("__weakref__",)


class _JsonDict(dict):
    __slots__ = ("__weakref__",)


def json_cost(body: bytes) -> int:
    """At most what decoding ``body`` takes at its peak, in bytes (besides the body): the
    text it is decoded from (4 bytes per character when it is not ASCII), the text of its
    strings and numbers again (twice, 4 bytes per character, when escapes may make them
    wide: a string with escapes is built, not sliced) and
    :data:`JSON_VALUE_COST` per value (keys, values, objects and arrays, counted from the
    commas, colons and brackets: those inside strings only make it larger)."""
    n = len(body)
    text = n + 64 if body.isascii() else 4 * n + 80
    strings = text
    if b"\\" in body:  # strings with escapes are built, not sliced: twice their size at a moment
        strings = 2 * (4 * n if b"\\u" in body else text)
    values = 1 + n - len(body.translate(None, b",:[{"))  # one pass (four counts take twice as long)
    return 4096 + text + strings + values * JSON_VALUE_COST


#: glibc's M_MMAP_THRESHOLD (malloc.h)
_M_MMAP_THRESHOLD = -3
#: allocations from this size up get mappings of their own, returned to the system when freed
MMAP_THRESHOLD = 1 * MiB
_malloc_tuned = False


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep large allocations (bodies, the arrays and tables of decoded JSON) out of
    glibc's heap. glibc raises its threshold to the largest block freed (up to 32 MiB):
    after one 16 MiB body, bodies come from the heap, whose freed memory stays resident
    and fragmented (two scrapes of a hostile target left the exporter 75 MiB larger, its
    peak 130 MiB above idle against a budget of 48 MiB). A fixed threshold ends that.
    ``MALLOC_MMAP_THRESHOLD_`` in the environment wins; on another C library this does
    nothing. Returns whether it applied. Called once, by the first :class:`HttpClient`."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    _malloc_tuned = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):  # not glibc
        return False


class HttpClient:
    """GETs against one target. ``redirect_allowed(url)`` decides whether a
    redirect may be followed (default: any http(s) URL); credentials (basic
    auth, bearer token, client certificate) are only sent to the target's own
    origin as :func:`~sparkwatch.urlpattern.resolve` decides it, for the first
    request, each redirect hop and absolute URLs alike."""

    def __init__(self, target, max_body_bytes: int = MAX_BODY_BYTES,
                 redirect_allowed: Optional[Callable[[str], bool]] = None,
                 max_concurrency: Optional[int] = None):
        self.target = target
        #: requests in flight at once, at most (None: unbounded); a request waits for a
        #: slot at most until its deadline
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        # enough pooled connections per host for every request in flight: no "Connection
        # pool is full, discarding connection" (and a new connection per request) under load
        pool_size = max(DEFAULT_POOL_SIZE, max_concurrency or 0)
        self.base_url = target.url
        self.max_body_bytes = max_body_bytes
        #: what this target's answers may hold at once (see :class:`MemoryBudget`)
        self.budget = MemoryBudget(MAX_TARGET_BYTES, TARGET_FLOOR_BYTES, PROCESS_BUDGET)
        fix_mmap_threshold()
        patterns = getattr(target, "redirects_allowed_to", None)
        if redirect_allowed is None and patterns is not None:
            from .urlpattern import parse_pattern

            parsed = [parse_pattern(p) for p in patterns]
            redirect_allowed = lambda url: any(p.matches(url) for p in parsed)  # noqa: E731
        self.redirect_allowed = redirect_allowed
        try:
            #: the target's own origin: the only one its credentials go to
            self._origin: Optional[Origin] = resolve(target.url).origin
        except ValueError:
            self._origin = None  # the configuration refuses such a URL; no credentials to anything
        tls = target.tls_config
        verify: Any = True
        if tls.insecure_skip_verify:
            verify = False  # asked for explicitly; no warning on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        elif tls.ca_file is not None:
            verify = str(tls.ca_file)
        s = _session(verify, pool_size)
        if target.basic_auth is not None:
            # as UTF-8 bytes: requests would encode str as Latin-1 and quote what it cannot
            s.auth = (target.basic_auth.username.encode(), target.basic_auth.resolve_password().encode())
        token = target.bearer_token()
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        if tls.cert_file is not None:
            s.cert = (str(tls.cert_file), str(tls.key_file)) if tls.key_file else str(tls.cert_file)
        self.session = s
        #: for other origins than the target's: no credentials
        self._bare = _session(verify, pool_size)

    def close(self) -> None:
        self.session.close()
        self._bare.close()

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def get(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
            ok_statuses=(200,), headers: Optional[Dict[str, str]] = None) -> requests.Response:
        """GET with the body read in full (``resp.content``) within the deadline.

        Statuses outside ``ok_statuses`` raise TargetError; pass e.g. (200, 404)
        to handle a 404 yourself. ``headers`` go with the request (not with a
        redirect to another origin).
        """
        url = self.url(path)
        where = path.split("?", 1)[0]
        try:
            if self._slots is None:
                return self._watched_get(url, where, deadline, params, ok_statuses, headers)
            # a slot of the target's max_concurrency, waited for at most until the deadline
            if not self._slots.acquire(timeout=max(0.0, deadline.remaining())):
                raise TargetError("timeout", f"GET {where}: no free connection slot "
                                             f"({self.max_concurrency} in use) within the deadline")
            try:
                return self._watched_get(url, where, deadline, params, ok_statuses, headers)
            finally:
                self._slots.release()
        except TargetError as e:
            raise _detached(e)

    def _watched_get(self, url: str, where: str, deadline: Deadline, params, ok_statuses, headers) -> requests.Response:
        with _Watch(deadline) as watch:
            try:
                return self._get(url, where, deadline, params, ok_statuses, headers)
            except TargetError as e:
                if watch.fired and e.reason != "timeout":
                    raise TargetError("timeout", f"GET {where}: response not complete within the deadline") from None
                raise
            except Exception as e:  # whatever a cut connection raises
                if watch.fired:
                    raise TargetError("timeout", f"GET {where}: response not complete within the deadline") from None
                raise TargetError("invalid_response", f"GET {where}: {type(e).__name__}") from None

    def _resolve(self, url: str, params, where: str, hop: int):
        """:func:`sparkwatch.urlpattern.resolve`, the one decision on where a request goes;
        a URL it refuses is the target's invalid answer."""
        try:
            return resolve(url, params)
        except ValueError as e:
            what = "redirect to a refused URL" if hop else "refused URL"
            raise TargetError("invalid_response", f"GET {where}: {what}: {e}") from None

    def _get(self, url: str, where: str, deadline: Deadline, params, ok_statuses, headers) -> requests.Response:
        first_origin = None
        for hop in range(MAX_REDIRECTS + 1):
            dest = self._resolve(url, params if hop == 0 else None, where, hop)
            if first_origin is None:
                first_origin = dest.origin
            # credentials (auth, token, client certificate) only to the target's own origin,
            # decided on the URL exactly as it is sent
            session = self.session if dest.origin == self._origin else self._bare
            prep = session.prepare_request(requests.Request(
                "GET", dest.url, headers=headers if dest.origin == first_origin else None))
            if prep.url != dest.url:
                raise TargetError("invalid_response", f"GET {where}: URL changed when prepared")
            timeout = deadline.timeout(self.target.timeout)
            try:
                resp = session.send(prep, timeout=timeout, stream=True, allow_redirects=False)
            except requests.exceptions.SSLError as e:
                raise TargetError("tls", f"GET {where}: TLS error: {_short(e)}") from None
            except requests.exceptions.Timeout:
                raise TargetError("timeout", f"GET {where}: no answer within {timeout:.1f}s") from None
            except requests.exceptions.ConnectionError as e:
                if _caused_by(e, _HeadTooLarge):
                    raise TargetError("limit", f"GET {where}: response head larger than {MAX_HEAD_BYTES} bytes") from None
                raise TargetError("connection", f"GET {where}: cannot connect: {_short(e)}") from None
            except requests.exceptions.RequestException as e:
                # e.g. InvalidHeader, whose text quotes the header (a token): say only what it is
                raise TargetError("connection", f"GET {where}: {type(e).__name__}") from None
            location = resp.headers.get("Location") if resp.status_code in (301, 302, 303, 307, 308) else None
            if location is None:
                self._read_body(resp, where, deadline)
                break
            resp.close()
            try:
                nxt = urljoin(dest.url, location)
            except ValueError:  # e.g. a host that is not one under NFKC normalization
                raise TargetError("invalid_response", f"GET {where}: redirect to a refused URL") from None
            self._resolve(nxt, None, where, hop + 1)  # refused before it is matched against the allow-list
            if self.redirect_allowed is not None and not self.redirect_allowed(nxt):
                raise TargetError("invalid_response", f"GET {where}: redirect to a URL that is not allowed")
            url = nxt
        else:
            raise TargetError("invalid_response", f"GET {where}: more than {MAX_REDIRECTS} redirects")
        if resp.status_code not in ok_statuses:
            if resp.status_code in (401, 403):
                raise TargetError("auth", f"GET {where}: HTTP {resp.status_code} (check basic_auth / bearer token)")
            raise TargetError("http_status", f"GET {where}: HTTP {resp.status_code}")
        return resp

    def _read_body(self, resp: requests.Response, where: str, deadline: Deadline) -> None:
        """Read the body into ``resp.content`` (a bytearray: no copy of it is made), its
        memory taken from the target's budget before it is read (a body that does not fit
        is a ``limit``) and given back when ``resp`` is dropped."""
        hold = _Hold(self.budget)
        body = bytearray()
        what = f"GET {where}"
        try:
            # the headers are in memory already: what they hold counts while the response is kept
            head = sum(len(k) + len(v) for k, v in resp.headers.items())
            declared = resp.headers.get("Content-Length", "")
            declared = int(declared) if declared.isdigit() and not resp.headers.get("Content-Encoding") else 0
            if declared > self.max_body_bytes:
                raise TargetError("limit", f"{what}: response larger than {self.max_body_bytes} bytes")
            while True:
                # what the body will hold: the bytearray's spare capacity (an eighth) and the
                # next chunk included; taken before it is read
                hold.resize(head + max(declared, len(body)) * 9 // 8 + CHUNK, what)
                # each read may block at most for what is left of the deadline
                _set_read_timeout(resp, deadline.timeout(self.target.timeout))
                try:
                    chunk = resp.raw.read1(CHUNK, decode_content=True)
                except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, ...
                    if "timed out" in str(e).lower():
                        raise TargetError("timeout", f"{what}: response not complete within the deadline") from None
                    raise TargetError("invalid_response", f"{what}: response cut off: {_short(e)}") from None
                if not chunk:
                    break
                if len(body) + len(chunk) > self.max_body_bytes:
                    raise TargetError("limit", f"{what}: response larger than {self.max_body_bytes} bytes")
                body += chunk
            resp._content = body
            resp._content_consumed = True
            hold.resize(head + len(body) * 9 // 8, what)
            hold.tie(resp)
        except BaseException:
            body.clear()  # not kept alive by a traceback
            hold.release()
            raise
        finally:
            resp.close()

    def get_json(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
                 expect: type = object, headers: Optional[Dict[str, str]] = None) -> Any:
        """GET and decode JSON; anything else (HTML from a proxy, plain text from a
        starting driver, a cut-off body) is an ``invalid_response``; JSON whose decoding
        would not fit the target's memory budget a ``limit``."""
        resp = self.get(path, deadline, params, headers=headers)
        try:
            return decode_json(resp.content, path, resp.headers.get("Content-Type", ""), expect, budget=self.budget)
        except TargetError as e:
            err = _detached(e)
        del resp  # the body is not kept alive by the error
        raise err


class WithHeaders:
    """An HttpClient whose every request carries ``headers`` (e.g. the YARN
    proxy's cookie for one application)."""

    def __init__(self, http: HttpClient, headers: Dict[str, str]):
        self.http, self.headers = http, headers

    def get(self, path, deadline, params=None, ok_statuses=(200,)):
        return self.http.get(path, deadline, params, ok_statuses, headers=self.headers)

    def get_json(self, path, deadline, params=None, expect=object):
        return self.http.get_json(path, deadline, params, expect, headers=self.headers)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request) -> bool:
        return False


_NO_COOKIES = _NoCookies()


def _session(verify, pool_size: int = DEFAULT_POOL_SIZE) -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = f"sparkwatch/{__version__}"
    s.headers["Accept"] = "application/json"
    s.trust_env = False  # no proxy or netrc surprises: the config says everything
    # no cookie is kept from an answer: a target could fill the jar (memory that outlives the
    # scrape) or plant a cookie for another origin; what must be sent is sent as a header
    s.cookies.set_policy(_NO_COOKIES)
    s.verify = verify
    adapter = _WatchedAdapter(pool_maxsize=pool_size)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def decode_json(body: bytes, path: str, content_type: str = "", expect: type = object,
                budget: Optional[MemoryBudget] = None) -> Any:
    """Decode a JSON body: its cost (:func:`json_cost`) is taken from ``budget`` (the
    process' when none is given) before anything is decoded, and the decoded answer
    holds what it holds of it until it is dropped. TargetError: ``limit`` when it does
    not fit, ``invalid_response`` when it is not JSON (of type ``expect``)."""
    where = f"GET {path.split('?', 1)[0]}"
    hold = _Hold(budget if budget is not None else PROCESS_BUDGET)
    try:
        hold.resize(len(body), where)  # what json_cost itself takes a moment (and the least it says)
        cost = json_cost(body)
        hold.resize(cost, where)
        try:
            # as json.loads decodes bytes, with the text's lifetime in hand
            text = body.decode(json.detect_encoding(body), "surrogatepass")
            data = json.loads(text)
        except RecursionError:
            raise TargetError("invalid_response", f"{where}: JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            snippet = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
            kind = "HTML" if snippet.lower().startswith(("<!doctype", "<html")) or "html" in content_type else "not JSON"
            raise TargetError("invalid_response", f"{where}: expected JSON, got {kind}: {snippet!r}") from None
        hold.resize(cost - sys.getsizeof(text), where)  # the text is gone
        del text
        if expect is not object and not isinstance(data, expect):
            raise TargetError("invalid_response", f"{where}: expected a JSON {expect.__name__}, got {type(data).__name__}")
        # the answer holds its share until the caller drops it
        if isinstance(data, list):
            data = _JsonList(data)
        elif isinstance(data, dict):
            data = _JsonDict(data)
        hold.tie(data)
        return data
    except BaseException:
        hold.release()
        raise


def _detached(e: TargetError) -> TargetError:
    """``e`` without its traceback and context: an error kept (by a future, until the
    scrape ends) must not keep the frames of its request alive, nor the body they read."""
    e.__context__ = e.__cause__ = None
    return e.with_traceback(None)


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _short(e: Exception) -> str:
    s = str(e)
    # requests wraps urllib3 errors in long reprs; keep the informative tail
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in s:
            s = s.split(marker, 1)[1]
    return s.rstrip("'\")").strip()[:200]
