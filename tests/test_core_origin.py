"""Credentials go only to the origin the HTTP library connects to.

An origin (scheme, host, port) is decided once, by
:func:`sparkwatch.urlpattern.resolve`, on the URL as requests prepares it and
urllib3 connects with; the request is sent from that prepared form. A URL
whose authority holds a backslash, userinfo (``@``), percent-escapes,
whitespace or control characters is refused.

Real listeners on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (ephemeral ports) record
every connection and request they get. A corpus of awkward URLs is fetched
through an :class:`~sparkwatch.httpclient.HttpClient` whose target is the
listener on 127.0.0.1 (with basic auth, or a bearer token): as an absolute URL
(what collectors/spark/clusters.py passes for a discovered UI) and as the Location of a
redirect from the target. Whatever happens, the bytes only ever reach the
origin decided, and credentials only ever reach the configured origin.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import urljoin

import pytest

from sparkwatch.collector import Deadline, TargetError
from sparkwatch.httpclient import HttpClient
from sparkwatch.httppool import Prefetch
from sparkwatch.targetconfig import HttpTarget
from testbed.exporter import running_exporter, scrape, value

USER, PASSWORD, TOKEN = "spark", "pässwörd-7", "tok-3f9a1c"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = "Bearer " + TOKEN
SECRETS = (PASSWORD, TOKEN, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
COOKIE = "checked_application_1_0001=true"


class Listener:
    """An HTTP server on one loopback address: it records every connection it
    accepts and every request (path, headers) it reads; it answers ``[]``, or
    a redirect to ``redirect_to`` for paths under ``/go``."""

    def __init__(self, host: str, port: int = 0):
        self.connections = 0
        self.requests: List[tuple] = []
        self.redirect_to: Optional[str] = None
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                me.connections += 1

            def do_GET(self):  # noqa: N802
                me.requests.append((self.path, dict(self.headers)))
                if self.path.startswith("/go") and me.redirect_to is not None:
                    self.send_response(302)
                    # as raw bytes (UTF-8, controls included): what a hostile target may send
                    self._headers_buffer.append(b"Location: " + me.redirect_to.encode() + b"\r\n")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.connections = 0
        self.requests = []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def credentials_seen(self) -> List[str]:
        """Every header value that carries a secret (or the proxy cookie), as received."""
        out = []
        for _, h in self.requests:
            for k, v in h.items():
                if k.lower() == "authorization" or any(s in v for s in SECRETS):
                    out.append(v)
        return out


@pytest.fixture(scope="module")
def listeners():
    with ExitStack() as stack:
        ls = [Listener(f"127.0.0.{i}") for i in (1, 2, 3)]
        for li in ls:
            stack.callback(li.close)
        yield ls


# The corpus: {P} {Q} {R} are the ports of the listeners on 127.0.0.1 (the configured
# target), 127.0.0.2 and 127.0.0.3.
CORPUS = [
    # a backslash ends the authority for urllib3 (and WHATWG), not for urllib.parse
    "http://127.0.0.2:{Q}\\@127.0.0.1:{P}/",
    "http://127.0.0.2:{Q}\\\\@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}\\@127.0.0.2:{Q}/",
    "http://127.0.0.2:{Q}\\127.0.0.1:{P}/",
    "http:\\\\127.0.0.2:{Q}\\",
    "http:/\\127.0.0.2:{Q}/",
    "http:\\/127.0.0.2:{Q}/",
    # userinfo, with colons
    "http://127.0.0.1:{P}@127.0.0.2:{Q}/",
    "http://127.0.0.2:{Q}@127.0.0.1:{P}/",
    "http://u:p:x@127.0.0.1:{P}/",
    "http://u@127.0.0.1:{P}/",
    "http://@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}&@127.0.0.2:{Q}#@127.0.0.3:{R}/",
    "http://127.0.0.1:{P} &@127.0.0.2:{Q}# @127.0.0.3:{R}/",
    "http://127.0.0.2:{Q}#\\@127.0.0.1:{P}/",
    "http://127.0.0.2:{Q}?\\@127.0.0.1:{P}/",
    # percent-encoded @ and backslash, encoded host
    "http://127.0.0.1:{P}%40127.0.0.2:{Q}/",
    "http://127.0.0.2:{Q}%5C@127.0.0.1:{P}/",
    "http://127.0.0.2:{Q}%5c%40127.0.0.1:{P}/",
    "http://%31%32%37.0.0.2:{Q}/",
    "http://127.0.0.1%2f@127.0.0.2:{Q}/",
    # tabs, newlines, spaces, NUL, DEL
    "http://127.0.0.2:{Q}\t@127.0.0.1:{P}/",
    "http://127.0.0.2:{Q}\t/@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}\n@127.0.0.2:{Q}/",
    "http://127.0.0.1\r\n:{P}/",
    "http://127.0.0.2:{Q} @127.0.0.1:{P}/",
    " http://127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}/ ",
    "http://127.0.0.1:{P}\x00@127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}\x7f@127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}/a b",
    # non-ASCII look-alikes
    "http://127.0.0.2:{Q}\uff03@127.0.0.1:{P}/",
    "http://127\u30020\u30020\u30021:{P}/",
    # IPv6 literals
    "http://[::1]:{P}/",
    "http://[::ffff:127.0.0.2]:{Q}/",
    "http://[::ffff:7f00:1]:{P}/",
    "http://[127.0.0.2]:{Q}/",
    # case, default ports, leading zeros, odd numeric forms, trailing dots
    "HTTP://127.0.0.1:{P}/x",
    "http://LOCALHOST:{P}/",
    "http://localhost:{P}/",
    "http://127.0.0.1:0{P}/",
    "http://127.0.0.1:+{P}/",
    "http://127.0.0.1:{P}:{Q}/",
    "http://127.0.0.1./",
    "http://127.0.0.1.:{P}/",
    "http://2130706433:{P}/",
    "http://0x7f.0.0.2:{Q}/",
    "http://127.1:{P}/",
    "http://127.0.0.1:80/",
    "http://127.0.0.1/",
    "https://127.0.0.1:{P}/",
    # schemeless, fragments, queries, paths that look like authorities
    "//127.0.0.2:{Q}/",
    "///127.0.0.2:{Q}/",
    "http:127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}#@127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}?@127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}/#@127.0.0.2:{Q}",
    "http://127.0.0.1:{P}/\\@127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}//127.0.0.2:{Q}/",
    "http://127.0.0.1:{P}/%2F%2F127.0.0.2:{Q}",
    "http://127.0.0.1:{P}",
    "http://127.0.0.2:{Q}/",
    "http://127.0.0.3:{R}/x?y=1#z",
]


def _fill(template: str, ls) -> str:
    return template.format(P=ls[0].port, Q=ls[1].port, R=ls[2].port)


def _target(ls, auth: str) -> HttpTarget:
    spec = {"url": ls[0].url, "timeout": 5}
    if auth == "basic":
        spec["basic_auth"] = {"username": USER, "password": PASSWORD}
    else:
        spec["bearer_token_env"] = "SPARKWATCH_TEST_ORIGIN_TOKEN"
    return HttpTarget(**spec)


def _addresses(host: str, port: int) -> set:
    """The (address, port) pairs a connection to host:port may reach (IPv4-mapped
    IPv6 addresses as IPv4)."""
    out = set()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return out
    for *_, sa in infos:
        ip = ipaddress.ip_address(sa[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        out.add((str(ip), sa[1]))
    return out


def _fetch(client, url: str, how: str):
    try:
        return client.get(url, Deadline(5.0)), None
    except TargetError as e:
        return None, e


def _received(ls) -> Dict[tuple, int]:
    return {(li.host, li.port): li.connections for li in ls if li.connections}


@pytest.mark.parametrize("auth", ["basic", "bearer"])
@pytest.mark.parametrize("how", ["absolute", "redirect", "absolute_with_cookie"])
def test_bytes_reach_only_the_origin_decided_and_credentials_only_the_configured_one(
        listeners, how, auth, monkeypatch):
    from sparkwatch.urlpattern import resolve

    monkeypatch.setenv("SPARKWATCH_TEST_ORIGIN_TOKEN", TOKEN)
    ls = listeners
    secret = BASIC if auth == "basic" else BEARER
    configured = resolve(ls[0].url).origin
    failures = []
    same_origin_seen = 0
    for template in CORPUS:
        url = _fill(template, ls)
        for li in ls:
            li.reset()
        client = HttpClient(_target(ls, auth))
        try:
            if how == "redirect":
                if "\r" in url or "\n" in url:
                    continue  # a header line cannot carry them: the client would see another URL
                ls[0].redirect_to = url
                _, err = _fetch(client, "/go", how)
                try:  # the Location as http.client reads it (Latin-1), joined as the client joins it
                    hop = urljoin(ls[0].url + "/go", url.encode().decode("latin-1"))
                except ValueError:
                    hop = None
            elif how == "absolute_with_cookie":
                _, err = _fetch(Prefetch(client, headers={"Cookie": COOKIE}), url, how)
                hop = client.url(url)  # what is not http(s)://... is a path on the target
            else:
                _, err = _fetch(client, url, how)
                hop = client.url(url)
        finally:
            client.close()
            ls[0].redirect_to = None
        if err is not None and err.reason == "internal":
            failures.append(f"{url!r}: internal error {err.message}")
        try:
            decided = resolve(hop).origin if hop is not None else None
        except ValueError:
            decided = None
        # the hop under test: for a redirect, the target's own /go request is not part of it
        reached = _received(ls)
        if how == "redirect":
            first = ls[0].requests[:1]
            assert first and first[0][0] == "/go"
            reached[(ls[0].host, ls[0].port)] -= 1
            reached = {k: v for k, v in reached.items() if v}
            hop_requests = {(li.host, li.port): li.requests[(1 if li is ls[0] else 0):] for li in ls}
        else:
            hop_requests = {(li.host, li.port): li.requests for li in ls}
        if decided is None:
            if reached:
                failures.append(f"{url!r}: refused, yet connections reached {reached}")
            if err is None or err.reason not in ("invalid_response", "partial"):
                failures.append(f"{url!r}: refused URL answered {err!r}")
        else:
            allowed = _addresses(decided.host, decided.port)
            stray = [k for k in reached if k not in allowed]
            if stray:
                failures.append(f"{url!r}: decided {decided}, but bytes reached {stray}")
        # credentials only ever at the configured origin; the target's own /go request carries them
        for li in ls:
            got = [v for _, h in hop_requests[(li.host, li.port)] for k, v in h.items()
                   if k.lower() == "authorization" or any(s in v for s in SECRETS)]
            if got and not (li is ls[0] and decided == configured):
                failures.append(f"{url!r}: credentials reached {li.host}:{li.port}")
            if li is ls[0] and decided == configured and hop_requests[(li.host, li.port)]:
                same_origin_seen += 1
                if secret not in got:
                    failures.append(f"{url!r}: the configured origin got no credentials")
            if how == "absolute_with_cookie":
                cookies = [h.get("Cookie") for _, h in hop_requests[(li.host, li.port)] if h.get("Cookie")]
                if cookies and (decided is None or (li.host, li.port) not in _addresses(decided.host, decided.port)):
                    failures.append(f"{url!r}: the cookie reached {li.host}:{li.port}")
    assert not failures, "\n".join(failures)
    assert same_origin_seen >= 5, "the corpus' same-origin URLs did not reach the target"


@pytest.mark.parametrize("template", [
    "http://127.0.0.2:{Q}\\@127.0.0.1:{P}/",
    "http://127.0.0.2:{Q}\t@127.0.0.1:{P}/",
    "http://127.0.0.1:{P}@127.0.0.2:{Q}/",
    "http://127.0.0.2:{Q}%5C@127.0.0.1:{P}/",
])
def test_an_authority_with_backslash_userinfo_escapes_or_controls_is_refused(listeners, template):
    from sparkwatch.urlpattern import resolve

    url = _fill(template, listeners)
    with pytest.raises(ValueError):
        resolve(url)
    for li in listeners:
        li.reset()
    client = HttpClient(_target(listeners, "basic"))
    try:
        with pytest.raises(TargetError) as e:
            client.get(url, Deadline(5.0))
    finally:
        client.close()
    assert e.value.reason == "invalid_response"
    assert not _received(listeners)
    assert all(s not in e.value.message for s in SECRETS)


def test_the_origin_decided_is_the_prepared_url_requests_sends(listeners):
    """resolve() gives the URL requests will send; an HTTP library that re-parses it
    gets the same scheme, host and port."""
    from urllib3.util import parse_url

    from sparkwatch.urlpattern import resolve

    for template in CORPUS:
        url = _fill(template, listeners)
        try:
            r = resolve(url)
        except ValueError:
            continue
        u = parse_url(r.url)
        assert (u.scheme, (u.host or "").strip("[]").lower(), u.port or {"http": 80, "https": 443}[u.scheme]) \
            == (r.origin.scheme, r.origin.host, r.origin.port), url
        assert u.auth is None
        assert resolve(r.url) == r  # idempotent: the prepared form decides the same


# ---------------------------------------------------------------- through the exporter


def test_a_redirect_from_a_configured_spark_target_takes_no_credentials_to_another_host(listeners):
    ls = listeners
    for li in ls:
        li.reset()
    hostile = f"http://127.0.0.2:{ls[1].port}\\@127.0.0.1:{ls[0].port}/api/v1/applications"
    ls[0].redirect_to = hostile
    try:
        config = {"spark": [{"name": "t", "url": ls[0].url + "/go",
                             "basic_auth": {"username": USER, "password": PASSWORD}}]}
        with running_exporter(config) as (base, _):
            text = scrape(base)
    finally:
        ls[0].redirect_to = None
    assert ls[0].requests and ls[0].requests[0][0].startswith("/go")
    assert ls[1].connections == 0 and ls[2].connections == 0
    assert not ls[1].credentials_seen() and not ls[2].credentials_seen()
    assert value(text, "sparkwatch_target_up", kind="spark", target="t") == 0
    assert value(text, "sparkwatch_target_scrape_errors_total", kind="spark", target="t",
                 reason="invalid_response") == 1


class _ClusterManager:
    """A standalone master (``/json/`` and its home page linking each application's UI)
    and a YARN ResourceManager (``/ws/v1/cluster/apps`` with a ``trackingUrl``), both
    naming ``ui`` as the application's UI."""

    def __init__(self, listener: Listener, ui: str):
        import json

        self.li = listener
        app = "app-20260101000000-0001"
        listing = {"activeapps": [{"id": app, "name": "stream", "state": "RUNNING"}]}
        page = (f'<html><table><tr><td><a href="app?appId={app}">{app}</a></td>'
                f'<td><a href="{ui}">stream</a></td></tr></table></html>')
        yarn = {"apps": {"app": [{"id": "application_1_0001", "name": "stream", "state": "RUNNING",
                                  "trackingUrl": ui}]}}
        self.routes = {"/json/": json.dumps(listing).encode(), "/": page.encode(),
                       "/ws/v1/cluster/apps": json.dumps(yarn).encode()}


@contextmanager
def _manager_on(listener: Listener, ui: str):
    """Serve the cluster manager's pages from ``listener`` (its handler is swapped)."""
    cm = _ClusterManager(listener, ui)
    handler = listener.httpd.RequestHandlerClass
    me = listener

    class Handler(handler):
        def do_GET(self):  # noqa: N802
            me.requests.append((self.path, dict(self.headers)))
            body = cm.routes.get(self.path.split("?", 1)[0])
            if body is None:
                return handler.do_GET(self)
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if self.path == "/" else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    listener.httpd.RequestHandlerClass = Handler
    try:
        yield cm
    finally:
        listener.httpd.RequestHandlerClass = handler


@pytest.mark.parametrize("discover", ["standalone", "yarn"])
def test_a_discovered_ui_url_takes_no_credentials_or_cookie_to_another_host(listeners, discover):
    ls = listeners
    for li in ls:
        li.reset()
    hostile = f"http://127.0.0.2:{ls[1].port}\\@127.0.0.1:{ls[0].port}/proxy/application_1_0001"
    with _manager_on(ls[0], hostile):
        config = {"spark": [{"name": "c", "url": ls[0].url, "discover": discover,
                             "basic_auth": {"username": USER, "password": PASSWORD}}]}
        with running_exporter(config) as (base, _):
            text = scrape(base)
    assert ls[0].requests, "the cluster manager was not read"
    assert not ls[1].credentials_seen() and not ls[2].credentials_seen()
    assert all("Cookie" not in h for _, h in ls[1].requests + ls[2].requests)
    assert value(text, "sparkwatch_target_up", kind="spark", target="c") == 1
    assert value(text, "spark_cluster_applications_scraped", target="c") == 0


# ---------------------------------------------------------------- the client certificate


@contextmanager
def _tls_listener(host: str, pki):
    """An HTTPS server on ``host`` that asks for a client certificate (not requiring
    one) and records, per request, the subject of the certificate it got (None)."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(pki / "ca.pem")
    li = Listener(host)
    li.httpd.socket = ctx.wrap_socket(li.httpd.socket, server_side=True)
    li.url = li.url.replace("http://", "https://")
    handler = li.httpd.RequestHandlerClass

    class Handler(handler):
        def do_GET(self):  # noqa: N802
            cert = self.connection.getpeercert()
            self.headers["X-Client-Cert"] = repr(cert.get("subject")) if cert else "none"
            return handler.do_GET(self)

    li.httpd.RequestHandlerClass = Handler
    try:
        yield li
    finally:
        li.close()


def test_the_client_certificate_goes_only_to_the_configured_origin(pki):
    with _tls_listener("127.0.0.1", pki) as own, _tls_listener("127.0.0.2", pki) as other:
        target = HttpTarget(url=own.url, timeout=5, tls_config={
            "insecure_skip_verify": True,  # so that a handshake with another host goes as far as it can
            "cert_file": str(pki / "client.pem"), "key_file": str(pki / "client.key")})
        client = HttpClient(target)
        try:
            for url in (f"https://127.0.0.2:{other.port}\\@127.0.0.1:{own.port}/",
                        f"https://127.0.0.2:{other.port}/", own.url + "/"):
                try:
                    client.get(url, Deadline(5.0))
                except TargetError as e:
                    assert e.reason == "invalid_response", e.message
            own.redirect_to = f"https://127.0.0.2:{other.port}/after-redirect"
            client.get("/go", Deadline(5.0))
        finally:
            client.close()
    certs_own = [h.get("X-Client-Cert") for _, h in own.requests]
    certs_other = [(p, h.get("X-Client-Cert")) for p, h in other.requests]
    assert certs_own and all(c != "none" for c in certs_own)  # the target gets it
    assert ("/after-redirect", "none") in certs_other  # the redirect was followed, without it
    assert certs_other and all(c == "none" for _, c in certs_other), certs_other
