"""HTTP for the collectors: requests, bounded by the scrape deadline as a whole.

``requests`` timeouts bound each socket operation, not the whole response, so
a server that trickles bytes (the status line, the headers or the body, one a
second) could hold a scrape forever. Every request therefore runs under a
watchdog that shuts the connection's socket down when the deadline passes (one
thread watches every request in flight, and exists only while there is one),
bodies are read in chunks against the deadline and capped in size, redirects
are followed by hand (each hop under the same deadline, at most
:data:`MAX_REDIRECTS`, and only to URLs the target allows), and JSON is
checked for its cost before it is decoded. ``max_concurrency`` bounds the
requests one client (one target) has in flight at once, whatever the number of
threads that use it; its connection pools are large enough for that many. Every
failure becomes a
:class:`~exporter.collector.TargetError` with a bounded reason; messages never
contain credentials (URLs never carry them: the config rejects that, and
request errors are reported by type, not by text that may quote a header).

Where a request goes is decided once per hop, by
:func:`exporter.urlpattern.resolve`, on the URL as requests prepares and
connects with it; the prepared URL is what is sent. The target's credentials
(basic auth, bearer token, client certificate) go only when that origin is the
target's own; a URL the decision refuses (user info, a backslash, an escape or
a control character where the host is) is an ``invalid_response``, never
requested.
"""

from __future__ import annotations

import heapq
import http.cookiejar
import itertools
import json
import socket
import threading
import time
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

MAX_BODY_BYTES = 16 * 1024 * 1024
#: JSON containers (objects and arrays) one response may hold: decoding costs
#: memory per container (a body of ``[{},{},...]`` is ~100 bytes of Python per
#: 3 bytes of JSON), so the count is bounded before anything is decoded
MAX_JSON_CONTAINERS = 500_000
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


class _Watched:
    """Mix-in for urllib3 connections: every request registers its connection
    with the watchdog of the calling thread (new and reused connections alike)."""

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


class HttpClient:
    """GETs against one target. ``redirect_allowed(url)`` decides whether a
    redirect may be followed (default: any http(s) URL); credentials (basic
    auth, bearer token, client certificate) are only sent to the target's own
    origin as :func:`~exporter.urlpattern.resolve` decides it, for the first
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
        """:func:`exporter.urlpattern.resolve`, the one decision on where a request goes;
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
        try:
            body = bytearray()
            while True:
                # each read may block at most for what is left of the deadline
                _set_read_timeout(resp, deadline.timeout(self.target.timeout))
                try:
                    chunk = resp.raw.read1(CHUNK, decode_content=True)
                except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, ...
                    if "timed out" in str(e).lower():
                        raise TargetError("timeout", f"GET {where}: response not complete within the deadline") from None
                    raise TargetError("invalid_response", f"GET {where}: response cut off: {_short(e)}") from None
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise TargetError("invalid_response", f"GET {where}: response larger than {self.max_body_bytes} bytes")
            resp._content = bytes(body)
            resp._content_consumed = True
        finally:
            resp.close()

    def get_json(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
                 expect: type = object, headers: Optional[Dict[str, str]] = None) -> Any:
        """GET and decode JSON; anything else (HTML from a proxy, plain text from a
        starting driver, a cut-off body) is an ``invalid_response``."""
        resp = self.get(path, deadline, params, headers=headers)
        return decode_json(resp.content, path, resp.headers.get("Content-Type", ""), expect)


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
                max_containers: int = MAX_JSON_CONTAINERS) -> Any:
    where = path.split("?", 1)[0]
    if body.count(b"{") + body.count(b"[") > max_containers:
        raise TargetError("invalid_response", f"GET {where}: JSON with more than {max_containers} objects and arrays")
    try:
        data = json.loads(body)
    except RecursionError:
        raise TargetError("invalid_response", f"GET {where}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        snippet = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        kind = "HTML" if snippet.lower().startswith(("<!doctype", "<html")) or "html" in content_type else "not JSON"
        raise TargetError("invalid_response", f"GET {where}: expected JSON, got {kind}: {snippet!r}") from None
    if expect is not object and not isinstance(data, expect):
        raise TargetError("invalid_response", f"GET {where}: expected a JSON {expect.__name__}, got {type(data).__name__}")
    return data


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
