"""HTTP for the collectors: requests, bounded by the scrape deadline as a whole.

``requests`` timeouts bound each socket operation, not the whole response, so
a server that trickles bytes (the status line, the headers or the body, one a
second) could hold a scrape forever. Every request therefore runs under a
watchdog that shuts the connection's socket down when the deadline passes (one
thread watches every request in flight, and exists only while there is one:
:mod:`sparkwatch.httpwatch`), bodies are read in chunks against the deadline
and capped in size, redirects are followed by hand (each hop under the same
deadline, at most :data:`MAX_REDIRECTS`, and only to URLs the target allows),
and JSON is checked for its cost before it is decoded: the memory of every
answer (its body, the JSON being decoded, the decoded answer while it is used)
is taken from the target's :class:`~sparkwatch.httpbody.MemoryBudget` and the
process', or the request is a ``limit`` error (:mod:`sparkwatch.httpbody`).
Requests made ahead of time by a target's threads go through
:mod:`sparkwatch.httppool`. ``max_concurrency`` bounds the
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
target's own (to a path there that its server relays elsewhere, the target's
``relayed_paths`` as :func:`~sparkwatch.urlpattern.routed_under` reads paths,
the client certificate only); a URL the decision refuses (user info, a
backslash, an escape or a control character where the host is) is an
``invalid_response``, never requested.
"""

from __future__ import annotations

import http.cookiejar
import threading
from typing import Any, Callable, Dict, Optional
from urllib.parse import urljoin

import requests
import urllib3

from . import __version__
from .collector import Deadline, TargetError
from .hadoopauth import auth_hint
# the limits and the count of requests in flight are named here too (F401): the tests and
# benchmarks that check them read them from the client
from .httpbody import (MAX_BODY_BYTES, MAX_HELD_BYTES, MAX_TARGET_BYTES, PROCESS_BUDGET,  # noqa: F401
                       RSS_OVERHEAD_BYTES, TARGET_FLOOR_BYTES, MemoryBudget, decode_json, detached,
                       fix_mmap_threshold, read_body, short_error)
from .httpwatch import MAX_HEAD_BYTES, HeadTooLarge, Watch, WatchedAdapter, caused_by, requests_in_flight  # noqa: F401
from .urlpattern import Origin, ResolvedUrl, resolve, routed_under

MAX_REDIRECTS = 5
#: where the first hop of a URL goes is remembered for URLs up to this long, this many per client
#: (the collectors ask for the same few URLs at every scrape; redirects are decided every time)
RESOLVED_URL_CHARS = 1024
RESOLVED_URLS = 128
#: connections kept per host (urllib3's default), more with a larger max_concurrency
DEFAULT_POOL_SIZE = 10


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
        #: the target's own origins (its url; a ResourceManager HA list's urls): the only ones its
        #: credentials go to (a URL the configuration would refuse: no credentials to anything)
        self._origins: set[Origin] = set()
        for u in target.own_urls() if hasattr(target, "own_urls") else [target.url]:
            try:
                self._origins.add(resolve(u).origin)
            except ValueError:
                pass
        #: paths of those origins that their server relays, headers and all, to an address someone else
        #: chose (a standalone master's reverse proxy): no credentials there either
        self._relayed_paths = tuple(target.relayed_paths()) if hasattr(target, "relayed_paths") else ()
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
        auth = target.session_auth() if hasattr(target, "session_auth") else None
        if auth is not None:  # Kerberos, Hadoop's pseudo authentication (targetconfig.HttpTarget.session_auth)
            s.auth = auth
        token = target.bearer_token()
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        if tls.cert_file is not None:
            s.cert = (str(tls.cert_file), str(tls.key_file)) if tls.key_file else str(tls.cert_file)
        self.session = s
        #: (url, params) -> the decision of :func:`~sparkwatch.urlpattern.resolve` on it (a function of them alone)
        self._resolved: Dict[tuple, ResolvedUrl] = {}
        #: for other origins than the target's: no credentials
        self._bare = _session(verify, pool_size)
        #: for those relayed paths: the client certificate (the TLS connection ends at the target), nothing else
        self._relayed = _session(verify, pool_size)
        self._relayed.cert = s.cert

    def close(self) -> None:
        self.session.close()
        self._bare.close()
        self._relayed.close()

    def _session_for(self, dest: ResolvedUrl) -> requests.Session:
        """Credentials (auth, token, client certificate) only to the target's own origins, decided on
        the URL exactly as it is sent; at a path there that the server relays elsewhere, the client
        certificate only."""
        if dest.origin not in self._origins:
            return self._bare
        if any(routed_under(dest.url, p) for p in self._relayed_paths):
            return self._relayed
        return self.session

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
            raise detached(e)

    def _watched_get(self, url: str, where: str, deadline: Deadline, params, ok_statuses, headers) -> requests.Response:
        with Watch(deadline) as watch:
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

    def _resolve(self, url: str, params, where: str, hop: int) -> ResolvedUrl:
        """:func:`sparkwatch.urlpattern.resolve`, the one decision on where a request goes;
        a URL it refuses is the target's invalid answer. The decision on a first hop is
        remembered (it depends on the URL and the params alone, in their order): a scrape
        asks for the same URLs as the last one."""
        key = _resolve_key(url, params) if hop == 0 and len(url) <= RESOLVED_URL_CHARS else None
        if key is not None:
            hit = self._resolved.get(key)
            if hit is not None:
                return hit
        try:
            dest = resolve(url, params)
        except ValueError as e:
            what = "redirect to a refused URL" if hop else "refused URL"
            raise TargetError("invalid_response", f"GET {where}: {what}: {e}") from None
        if key is not None:
            if len(self._resolved) >= RESOLVED_URLS:
                self._resolved.clear()
            self._resolved[key] = dest
        return dest

    def _get(self, url: str, where: str, deadline: Deadline, params, ok_statuses, headers) -> requests.Response:
        first_origin = None
        for hop in range(MAX_REDIRECTS + 1):
            dest = self._resolve(url, params if hop == 0 else None, where, hop)
            if first_origin is None:
                first_origin = dest.origin
            session = self._session_for(dest)
            # headers: a dict goes to the first request's origin only; a callable says, for each
            # hop's URL as sent, which (cookies scoped to an origin and path: collectors.spark.clusters)
            hop_headers = headers(dest.url) if callable(headers) else headers if dest.origin == first_origin else None
            prep = session.prepare_request(requests.Request("GET", dest.url, headers=hop_headers))
            if prep.url != dest.url:
                raise TargetError("invalid_response", f"GET {where}: URL changed when prepared")
            timeout = deadline.timeout(self.target.timeout)
            try:
                resp = session.send(prep, timeout=timeout, stream=True, allow_redirects=False)
            except requests.exceptions.SSLError as e:
                raise TargetError("tls", f"GET {where}: TLS error: {short_error(e)}") from None
            except requests.exceptions.Timeout:
                raise TargetError("timeout", f"GET {where}: no answer within {timeout:.1f}s") from None
            except requests.exceptions.ConnectionError as e:
                if caused_by(e, HeadTooLarge):
                    raise TargetError("limit", f"GET {where}: response head larger than {MAX_HEAD_BYTES} bytes") from None
                raise TargetError("connection", f"GET {where}: cannot connect: {short_error(e)}") from None
            except requests.exceptions.RequestException as e:
                # e.g. InvalidHeader, whose text quotes the header (a token): say only what it is
                raise TargetError("connection", f"GET {where}: {type(e).__name__}") from None
            location = resp.headers.get("Location") if resp.status_code in (301, 302, 303, 307, 308) else None
            if location is None:
                read_body(resp, where, deadline, self.budget, self.max_body_bytes, self.target.timeout)
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
                hint = auth_hint(resp.status_code, resp.headers, self.target, dest.origin in self._origins,
                                 relayed=session is self._relayed)
                raise TargetError("auth", f"GET {where}: HTTP {resp.status_code} ({hint})")
            raise TargetError("http_status", f"GET {where}: HTTP {resp.status_code}")
        return resp

    def get_json(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
                 expect: type = object, headers: Optional[Dict[str, str]] = None) -> Any:
        """GET and decode JSON; anything else (HTML from a proxy, plain text from a
        starting driver, a cut-off body) is an ``invalid_response``; JSON whose decoding
        would not fit the target's memory budget a ``limit``."""
        resp = self.get(path, deadline, params, headers=headers)
        try:
            return decode_json(resp.content, path, resp.headers.get("Content-Type", ""), expect, budget=self.budget)
        except TargetError as e:
            err = detached(e)
        del resp  # the body is not kept alive by the error
        raise err


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
    adapter = WatchedAdapter(pool_maxsize=pool_size)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def _resolve_key(url: str, params) -> Optional[tuple]:
    """``(url, params)`` as a key, their order kept; None for params of another shape
    than a dict of strings, numbers and lists of them."""
    if params is None:
        return (url, None)
    if not isinstance(params, dict):
        return None
    items = []
    for k, v in params.items():
        if isinstance(v, list):
            v = tuple(v)
        if not (isinstance(k, str) and all(isinstance(x, (str, int)) for x in (v if isinstance(v, tuple) else (v,)))):
            return None
        items.append((k, v))
    return (url, tuple(items))
