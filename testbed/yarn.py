"""A YARN ResourceManager stand-in that behaves as Hadoop's does: its REST list of
applications, its web proxy to the ApplicationMasters' UIs, the AmIpFilter of the AM
side, high availability (an active and a standby RM), and security (the proxy's
warning page, Hadoop's pseudo authentication, Kerberos SPNEGO in front).

No Hadoop runs here (it would need HDFS, a NodeManager and a JVM per daemon): each
behaviour is rebuilt from Hadoop's own code, named in the docstring that implements
it so that the next reader can check it (paths below
``hadoop-yarn-project/hadoop-yarn/``; ``hadoop-auth`` is
``hadoop-common-project/hadoop-auth``):

- ``GET /ws/v1/cluster/apps``: ``RMWebServices.getApps`` with
  ``ApplicationsRequestBuilder`` and ``WebServices.parseQueries`` (the ``states``,
  ``state``, ``applicationTypes``, ``user``, ``queue`` and ``limit`` filters; an
  unknown state is a ``400`` with Hadoop's ``RemoteException`` JSON,
  ``GenericExceptionHandler``), ``ClientRMService.getApplications`` (the matching),
  each record an ``AppInfo`` (``resourcemanager/webapp/dao/AppInfo.java``), its
  ``trackingUrl`` as ``RMAppAttemptImpl`` makes it (:meth:`YarnApp.tracking_fields`).
- ``/proxy/<app>/...``: ``WebAppProxyServlet`` and ``ProxyUtils``
  (``hadoop-yarn-server-web-proxy``): the warning page and the ``checked_<app>``
  cookie, the proxy fetching the AM itself (from the proxy's address, following the
  AM's redirects, passing only some request headers, copying the answer's headers),
  the redirects of finished applications and of applications without a tracking URL,
  ``/proxy/redirect/<app>/...`` (:class:`ResourceManager`).
- The AM side (:class:`AmWebServer`): ``AmIpFilter`` (``webproxy/amfilter``): a request
  that does not come from a proxy host is redirected (``302``) to
  ``<proxy>/proxy/redirect/<app>/...``; one that does is served, as the user the
  ``proxy-user`` cookie names.
- HA: ``RMWebAppFilter`` (a standby answers ``307`` with ``Location`` on the active,
  or, when there is none, "Can not find any active RM..." with ``Refresh``),
  ``IsActiveServlet`` (``/isActive``).
- Authentication: ``StaticUserWebFilter`` (no authentication: every request is
  ``dr.who``), ``AuthenticationFilter`` + ``PseudoAuthenticationHandler``
  (``?user.name=``, the ``hadoop.auth`` cookie), and Kerberos SPNEGO through
  :class:`testbed.kerberos.SpnegoFront` (a real Apache with mod_auth_gssapi in
  front of each RM; it passes the authenticated principal on as ``X-Remote-User``).

The files (in apache/hadoop; ``.../`` is ``src/main/java/org/apache/hadoop/``):

- ``hadoop-yarn-project/hadoop-yarn/hadoop-yarn-server/hadoop-yarn-server-resourcemanager/``
  ``.../yarn/server/resourcemanager/``: ``webapp/RMWebServices.java``, ``webapp/ApplicationsRequestBuilder.java``,
  ``webapp/RMWebAppFilter.java``, ``webapp/RMWebApp.java``, ``webapp/dao/AppInfo.java``,
  ``ClientRMService.java``, ``ResourceManager.java`` (``startWepApp``),
  ``rmapp/attempt/RMAppAttemptImpl.java``; its test ``webapp/TestRMWebServicesApps.java``;
- ``.../hadoop-yarn-server-common/.../yarn/server/webapp/WebServices.java`` (``parseQueries``);
- ``.../hadoop-yarn-common/.../yarn/``: ``webapp/GenericExceptionHandler.java``,
  ``webapp/BadRequestException.java``, ``webapp/util/WebAppUtils.java``, ``util/Apps.java``,
  ``util/StringHelper.java``;
- ``.../hadoop-yarn-server-web-proxy/.../yarn/server/webproxy/``: ``WebAppProxyServlet.java``,
  ``ProxyUtils.java``, ``ProxyUriUtils.java``, ``amfilter/AmIpFilter.java``;
- ``hadoop-common-project/hadoop-common/.../http/``: ``IsActiveServlet.java``,
  ``HtmlQuoting.java``, ``lib/StaticUserWebFilter.java``;
- ``hadoop-common-project/hadoop-auth/.../security/authentication/``:
  ``server/AuthenticationFilter.java``, ``server/PseudoAuthenticationHandler.java``,
  ``util/AuthToken.java``, ``util/Signer.java``.

What differs from a real cluster, on purpose:

- One loopback host plays every host. The web proxy fetches the AMs from its own
  address, :data:`PROXY_ADDRESS` (``127.0.0.2``, as ``WebAppProxyServlet.proxyLink``
  binds its client to the proxy host's address), and that is the address the AMs'
  ``AmIpFilter`` knows as the proxy host; a test (or the exporter) connects from
  ``127.0.0.1``: a "direct" request to an AM. The proxy's loop detection
  (``handleRedirect``) takes a request from :data:`PROXY_ADDRESS` as "from myself".
- With Kerberos, Apache (not Hadoop's ``AuthenticationFilter``) answers the ``401``
  and the SPNEGO exchange, and sets no ``hadoop.auth`` cookie: every request
  authenticates anew. A stopped RM is a stopped backend and front (connection
  refused), as a stopped RM is.
- Only ``GET`` is served. The proxy's standby RM asks the active RM for its reports
  (``AppReportFetcher`` with RM failover); with no active RM it answers ``500`` at
  once (Hadoop's client would retry for minutes first).
- Taken from the servlet container rather than from Hadoop, so not exact: the
  format of a Set-Cookie and of an error page (Jetty 9.4's), the content type of the
  standby's message (Hadoop sets none), the case of header names.

Use::

    with YarnCluster(ha=True, security=True, http_auth="simple") as yarn:
        etl = yarn.add_app("etl", user="alice", routes=routes_from_recording(d))  # an AmIpFilter'd AM
        yarn.add_app("wordcount", application_type="MAPREDUCE", state="FINISHED",
                     final_tracking_url=f"{history}/jobhistory/job/job_1_1")
        yarn.url, yarn.rms[1].url, etl.am.url       # the active RM, the standby, the AM itself
        etl.am.requests, yarn.rms[0].requests       # what reached the AM, the RM (and as whom)
        etl.am.received, yarn.rms[0].received       # every request as it arrived, with its headers
        yarn.failover("rm2"); yarn.stop_rm("rm1"); etl.state = "FINISHED"

Everything listens on 127.0.0.1 on ephemeral ports and stops when the context ends;
nothing off the loopback is ever contacted.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import html
import http.client
import ipaddress
import json
import random
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote_plus, unquote_plus, urljoin, urlsplit

from .kerberos import KerberosRealm, SpnegoFront, kerberos_realm

#: YarnApplicationState, in its declaration order (the order of the 400's message)
YARN_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED")
#: the states in which AppInfo hides the tracking URL (trackingUI UNASSIGNED)
NOT_READY_STATES = frozenset(("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED"))
FINAL_STATES = frozenset(("FINISHED", "FAILED", "KILLED"))
#: the address the web proxy fetches AMs from, and the proxy host of every AM's AmIpFilter
PROXY_ADDRESS = "127.0.0.2"
#: the user every request is, without authentication (hadoop.http.staticuser.user's default)
STATIC_USER = "dr.who"
#: MimeType.HTML (WebAppProxyServlet, ProxyUtils) and RMWebServices' JSON
HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=utf-8"
#: the request headers WebAppProxyServlet passes on to the AM (PASS_THROUGH_HEADERS; Jetty gives known
#: header names in this case, whatever case the client wrote them in)
PASS_THROUGH_HEADERS = frozenset((
    "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Accept-Charset", "Content-Type", "Origin",
    "Access-Control-Request-Method", "Access-Control-Request-Headers"))
PROXY_USER_COOKIE = "proxy-user"
CHECK_COOKIE_MAX_AGE = 2 * 60 * 60  # makeCheckCookie: 2 hours
AUTH_COOKIE = "hadoop.auth"
TOKEN_VALIDITY = 36000  # hadoop.http.authentication.token.validity's default, seconds
MAX_REDIRECTS = 50  # Apache HttpClient's default, which the proxy's client keeps
CLUSTER_TIMESTAMP = 1764400000000
# the headers the stand-in's servers set themselves (never copied from an answer being relayed)
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"))


# --- the pieces of Hadoop's text formats --------------------------------------------------------------------------

def _escape_attr(s: str) -> str:
    """Hamlet's attribute escaping (StringEscapeUtils.escapeHtml4: & < > \")."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def quote_html_chars(s: str) -> str:
    """org.apache.hadoop.http.HtmlQuoting.quoteHtmlChars."""
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&apos;"))


def _parse_query(query: str) -> List[Tuple[str, Optional[str]]]:
    """URLEncodedUtils.parse: pairs split on ``&`` and ``;``, form-decoded; a name without ``=`` has no value."""
    out = []
    for part in re.split(r"[&;]", query or ""):
        if not part:
            continue
        name, eq, value = part.partition("=")
        out.append((unquote_plus(name), unquote_plus(value) if eq else None))
    return out


def _form_encode(s: str) -> str:
    # URLEncodedUtils' form encoding: unreserved a-z A-Z 0-9 and "-_.*" kept, space as "+"
    return quote_plus(s, safe="-_.*")


def _format_query(pairs: Iterable[Tuple[str, Optional[str]]]) -> str:
    """URLEncodedUtils.format (what WebAppUtils.appendQueryParams re-encodes a request's query with)."""
    return "&".join(_form_encode(n) + ("" if v is None else "=" + _form_encode(v)) for n, v in pairs)


def _parse_cookies(header: str) -> List[Tuple[str, str]]:
    """The request's cookies, as the servlet container's getCookies gives them (name, value unquoted)."""
    out = []
    for part in (header or "").split(";"):
        name, eq, value = part.strip().partition("=")
        if name and eq:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            out.append((name, value))
    return out


def _java_bool(s: Optional[str]) -> bool:
    """Boolean.parseBoolean."""
    return s is not None and s.lower() == "true"


def _cookie_date(t: float) -> str:
    """Jetty's cookie date, EEE, dd-MMM-yyyy HH:mm:ss 'GMT'."""
    return time.strftime("%a, %d-%b-%Y %H:%M:%S GMT", time.gmtime(t))


def check_cookie(app_id: str, value: bool) -> str:
    """``WebAppProxyServlet.makeCheckCookie``: ``checked_<app>=<true|false>``, HttpOnly, its path
    ``ProxyUriUtils.getPath(id)`` (``/proxy/<app>``, no trailing slash), for 2 hours; as Jetty 9
    writes a Set-Cookie."""
    return (f"checked_{app_id}={'true' if value else 'false'}; Path=/proxy/{app_id}; "
            f"Expires={_cookie_date(time.time() + CHECK_COOKIE_MAX_AGE)}; Max-Age={CHECK_COOKIE_MAX_AGE}; HttpOnly")


def warning_page(link: str, user: str) -> str:
    """``WebAppProxyServlet.warnUserPage``'s Hamlet page, as Hadoop renders it (the same text as
    DataDog's recorded ``html_warning_page``)."""
    return ("<html>\n  <h1>\n    WARNING: The following page may not be safe!\n  </h1>\n  <h3>\n    click\n"
            f'    <a href="{_escape_attr(link)}">here</a>\n'
            f"     to continue to an Application Master web interface owned by\n    {html.escape(user, quote=False)}\n"
            "  </h3>\n</html>\n")


def moved_page(location: str) -> str:
    """``ProxyUtils.sendRedirect``'s body (the ``Moved`` page)."""
    return ("<html>\n  <head>\n    <title>\n      Moved\n    </title>\n  </head>\n  <body>\n    <h1>\n      Moved\n"
            "    </h1>\n    <div>\n      Content has moved\n"
            f'      <a href="{_escape_attr(location)}">here</a>\n    </div>\n  </body>\n</html>\n')


def not_found_page(message: str) -> str:
    """``ProxyUtils.notFound``'s body."""
    return f"<html>\n  <h1>\n    {html.escape(message, quote=False)}\n  </h1>\n</html>\n"


def jetty_error_page(status: int, reason: str) -> str:
    """The servlet container's error page (the body of a ``sendError`` or of an uncaught exception)."""
    r = html.escape(reason, quote=False)
    return (f"<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n"
            f"<title>Error {status} {r}</title>\n</head>\n<body><h2>HTTP ERROR {status}</h2>\n"
            f"<p>Problem accessing the page. Reason:\n<pre>    {r}</pre></p>\n</body>\n</html>\n")


def remote_exception(exception: str, message: str, java_package: str = "org.apache.hadoop.yarn.webapp") -> dict:
    """``GenericExceptionHandler``'s body: ``RemoteExceptionData`` (exception, message, javaClassName)."""
    return {"RemoteException": {"exception": exception, "message": message,
                                "javaClassName": f"{java_package}.{exception}"}}


def bad_request_message(message: str) -> str:
    """What ``GenericExceptionHandler`` says of ``new BadRequestException(message)`` in Hadoop 2 and 3
    (Jersey 1): ``e.getMessage()`` of a WebApplicationException whose cause is ``new
    Exception(message)``, that is ``java.lang.Exception: <message>``. (Hadoop trunk, on Jersey 2,
    sends the cause's own message; not modelled.)"""
    return f"java.lang.Exception: {message}"


def short_name(principal: str, realm: str) -> str:
    """``KerberosName.getShortName`` under ``hadoop.security.auth_to_local``'s ``DEFAULT`` rule: a
    principal of the default realm is its first component (``monitor@R`` and ``monitor/host@R`` are
    ``monitor``); others are kept whole here (Hadoop refuses them: no rule applies)."""
    if principal.endswith("@" + realm):
        return principal[: -len(realm) - 1].split("/", 1)[0]
    return principal


# --- applications --------------------------------------------------------------------------------------------------

@dataclass
class YarnApp:
    """One application as the RM holds it. ``tracking_url`` is what its AM registered
    (``originalTrackingUrl``: the driver's UI; None: ``N/A``, as
    ``RMAppAttemptImpl.sanitizeTrackingUrl`` makes an empty one), ``final_tracking_url``
    what it gave when it unregistered (for Spark, its history server page when
    ``spark.yarn.historyServer.address`` is set). ``progress`` is a fraction (AppInfo
    reports it times 100). Fields may be changed while the cluster runs (under
    ``cluster.lock`` when another thread reads them)."""

    app_id: str
    name: str
    user: str = "spark"
    queue: str = "default"
    state: str = "RUNNING"
    application_type: str = "SPARK"
    unmanaged: bool = False
    tracking_url: Optional[str] = None
    final_tracking_url: Optional[str] = None
    final_status: Optional[str] = None
    progress: float = 0.1
    started_time: int = CLUSTER_TIMESTAMP + 60_000
    finished_time: int = 0
    tags: Tuple[str, ...] = ()
    diagnostics: str = ""
    am_host_http_address: str = "localhost:8042"
    allocated_mb: int = 2048
    allocated_vcores: int = 2
    running_containers: int = 2
    #: the AmIpFilter'd server the cluster started for it, if any
    am: Optional["AmWebServer"] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.state not in YARN_STATES:
            raise ValueError(f"{self.app_id}: state {self.state!r} is not one of {YARN_STATES}")

    @property
    def finish_time(self) -> int:
        """The finish time the RM reports: 0 until the application ends (then ``finished_time``, or
        a minute after its start when the test gave none)."""
        if self.state in FINAL_STATES:
            return self.finished_time or self.started_time + 60_000
        return 0

    def original_tracking_url(self, rm_url: str) -> str:
        """``RMAppAttemptImpl.originalTrackingUrl``: ``N/A`` until the AM registers (and for an empty
        URL, ``sanitizeTrackingUrl``); the registered URL while it runs; the final tracking URL it
        gave at unregistration once FINISHED (``updateInfoOnAMUnregister``); the RM's application
        page ``<rm>/cluster/app/<id>`` once FAILED or KILLED (``setTrackingUrlToRMAppPage``, the
        application history service being off)."""
        if self.state in NOT_READY_STATES:
            return "N/A"
        if self.state == "RUNNING":
            return self.tracking_url or "N/A"
        if self.state == "FINISHED":
            return self.final_tracking_url or "N/A"
        return f"{rm_url}/cluster/app/{self.app_id}"

    def tracking_fields(self, rm_url: str) -> dict:
        """``trackingUI`` and ``trackingUrl`` as ``AppInfo`` reports them.

        ``RMAppAttemptImpl.getTrackingUrl`` is the original URL for an unmanaged AM, else the
        proxied URL: ``<proxy>/proxy/<app>/`` (``rmContext.getAppProxyUrl``, set when the attempt
        is created), replaced by the RM's application page when the attempt FAILED or was KILLED.
        ``AppInfo`` hides it (no ``trackingUrl``, ``trackingUI`` ``UNASSIGNED``) in NEW, NEW_SAVING,
        SUBMITTED and ACCEPTED; otherwise ``trackingUI`` is ``ApplicationMaster`` until the
        application finishes, then ``History``, and the URL gets ``http://`` when it has no scheme
        (``WebAppUtils.getURLWithScheme``: an unmanaged AM that registered none is ``http://N/A``)."""
        if self.state in NOT_READY_STATES:
            return {"trackingUI": "UNASSIGNED"}
        if self.unmanaged:
            url = self.original_tracking_url(rm_url)
        elif self.state in ("FAILED", "KILLED"):
            url = f"{rm_url}/cluster/app/{self.app_id}"
        else:
            url = f"{rm_url}/proxy/{self.app_id}/"
        if "://" not in url:
            url = "http://" + url
        return {"trackingUI": "ApplicationMaster" if self.finish_time == 0 else "History", "trackingUrl": url}

    def app_info(self, rm_url: str) -> dict:
        """The ``AppInfo`` record (its JSON field order), with access granted (ACLs off)."""
        final = self.state in FINAL_STATES
        final_status = self.final_status or (
            {"FINISHED": "SUCCEEDED", "FAILED": "FAILED", "KILLED": "KILLED"}[self.state] if final else "UNDEFINED")
        info = {"id": self.app_id, "user": self.user, "name": self.name, "queue": self.queue, "state": self.state,
                "finalStatus": final_status, "progress": float((1.0 if final else self.progress) * 100)}
        info.update(self.tracking_fields(rm_url))
        start, finish = self.started_time, self.finish_time
        elapsed = (finish or int(time.time() * 1000)) - start if start > 0 else 0  # Times.elapsed
        info.update({"diagnostics": self.diagnostics, "clusterId": CLUSTER_TIMESTAMP,
                     "applicationType": self.application_type, "applicationTags": ",".join(self.tags),
                     "priority": 0, "startedTime": start, "finishedTime": finish, "elapsedTime": elapsed})
        # a master container exists once the AM's was allocated; an unmanaged AM has none
        if not self.unmanaged and self.state not in NOT_READY_STATES:
            container = f"container_{self.app_id[len('application_'):]}_01_000001"
            info["amContainerLogs"] = f"http://{self.am_host_http_address}/node/containerlogs/{container}/{self.user}"
            info["amHostHttpAddress"] = self.am_host_http_address
        running = self.state in ("RUNNING", "ACCEPTED")
        usage = (self.allocated_mb, self.allocated_vcores, self.running_containers) if running else (
            (-1, -1, -1) if final else (0, 0, 0))  # RMServerUtils.DUMMY_APPLICATION_RESOURCE_USAGE_REPORT: -1
        info.update({"allocatedMB": usage[0], "allocatedVCores": usage[1], "reservedMB": 0, "reservedVCores": 0,
                     "runningContainers": usage[2], "memorySeconds": 0, "vcoreSeconds": 0,
                     "queueUsagePercentage": 0.0, "clusterUsagePercentage": 0.0,
                     "preemptedResourceMB": 0, "preemptedResourceVCores": 0, "numNonAMContainerPreempted": 0,
                     "numAMContainerPreempted": 0, "preemptedMemorySeconds": 0, "preemptedVcoreSeconds": 0,
                     "logAggregationStatus": "DISABLED", "unmanagedApplication": self.unmanaged,
                     "appNodeLabelExpression": ""})
        if not self.unmanaged:
            info["amNodeLabelExpression"] = ""
        return info


class BadRequest(Exception):
    pass


def parse_queries(values: List[str], is_state: bool) -> set:
    """``WebServices.parseQueries``: every value split on commas, trimmed, lower-cased; a state
    that is not a YarnApplicationState is a BadRequestException."""
    out = set()
    for query in values:
        for part in query.split(","):
            part = part.strip()
            if not part:
                continue
            if is_state and part.upper() not in YARN_STATES:
                raise BadRequest(f"Invalid application-state {part} specified. It should be one of "
                                 f"[{', '.join(YARN_STATES)}]")
            out.add(part.lower())
    return out


# --- HTTP plumbing -------------------------------------------------------------------------------------------------

class Reply:
    """One answer of a :class:`LoopbackServer`: status, body, content type, headers (a list: names may repeat)."""

    def __init__(self, status: int, body: bytes = b"", ctype: Optional[str] = None,
                 headers: Iterable[Tuple[str, str]] = ()):
        self.status, self.body = status, body
        self.headers: List[Tuple[str, str]] = ([("Content-Type", ctype)] if ctype else []) + list(headers)


def _html(status: int, text: str, headers: Iterable[Tuple[str, str]] = ()) -> Reply:
    return Reply(status, text.encode(), HTML, headers)


def send_redirect(location: str, headers: Iterable[Tuple[str, str]] = ()) -> Reply:
    """``ProxyUtils.sendRedirect``: 302, ``Location``, the Moved page."""
    return _html(302, moved_page(location), [("Location", location), *headers])


class LoopbackServer:
    """A threading HTTP/1.1 server on 127.0.0.1 (``port`` 0: an ephemeral one) whose GETs are
    answered by ``handle(request: Request) -> Reply`` (an exception: the container's 500 page); it
    can be stopped (its open connections closed) and started again on its port."""

    def __init__(self, handle: Callable[["Request"], Reply], port: int = 0):
        self.handle, self.port = handle, port
        self.httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: set = set()
        self._lock = threading.Lock()

    def start(self) -> "LoopbackServer":
        handle, srv = self.handle, self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60

            def version_string(self):
                return "Jetty(9.4.51.v20230217)"

            def setup(self):
                super().setup()
                with srv._lock:
                    srv._conns.add(self.connection)

            def finish(self):
                with srv._lock:
                    srv._conns.discard(self.connection)
                super().finish()

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                try:
                    reply = handle(Request(self))
                except Exception as e:  # an uncaught servlet exception: the container's 500 page
                    reply = _html(500, jetty_error_page(500, f"{type(e).__name__}: {e}"))
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True  # the client went away, or the server stopped

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stops listening and closes the open (keep-alive) connections: a stopped server answers nothing."""
        httpd, self.httpd = self.httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            with self._lock:
                conns, self._conns = list(self._conns), set()
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Request:
    """What a handler reads of a request (as a servlet sees it)."""

    def __init__(self, h: BaseHTTPRequestHandler):
        self.remote_addr: str = h.client_address[0]
        self.raw_path: str = h.path
        parts = urlsplit(h.path)
        self.uri, self.query = parts.path, parts.query  # getRequestURI (raw), getQueryString
        self.params = _parse_query(parts.query)
        self.headers: List[Tuple[str, str]] = list(h.headers.items())  # names as the client wrote them
        self.cookies = _parse_cookies("; ".join(v for k, v in self.headers if k.lower() == "cookie"))
        self.remote_user: Optional[str] = None

    def param(self, name: str) -> Optional[str]:
        return next((v for n, v in self.params if n == name), None)

    def params_named(self, name: str) -> List[str]:
        return [v for n, v in self.params if n == name and v is not None]

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookie(self, name: str) -> Optional[str]:
        return next((v for n, v in self.cookies if n == name), None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fetch(url: str, headers: List[Tuple[str, str]], timeout: float, source_address: Optional[str] = None,
          follow: bool = True) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """GET ``url`` as Apache HttpClient does for the proxy (``WebAppProxyServlet.proxyLink``): from
    ``source_address``, following up to 50 redirects (circular ones allowed) with the original
    request's headers on each (``RedirectExec``), a gzip answer decompressed with its
    ``Content-Encoding`` and ``Content-Length`` dropped (``ResponseContentEncoding``). Only loopback
    addresses are contacted (``localhost`` or a literal 127.0.0.0/8 or ::1; no name is resolved):
    anything else is an OSError, as an unreachable host would be."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise OSError(f"unsupported URL {url!r}")
        if not _is_loopback(parts.hostname):
            raise OSError(f"{parts.hostname}: not a loopback address, not contacted by the testbed")
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout,
                                          source_address=(source_address, 0) if source_address else None)
        try:
            conn.putrequest("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                            skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            status, got = resp.status, resp.getheaders()
        finally:
            conn.close()
        location = next((v for k, v in got if k.lower() == "location"), None)
        if follow and status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if next((v for k, v in got if k.lower() == "content-encoding"), "").lower() == "gzip":
            body = gzip.decompress(body)
            got = [(k, v) for k, v in got if k.lower() not in ("content-encoding", "content-length")]
        return status, got, body
    raise OSError(f"Maximum redirects ({MAX_REDIRECTS}) exceeded")


# --- the AM side: AmIpFilter --------------------------------------------------------------------------------------

@dataclass
class AmRequest:
    """A request the AM served: its path (with query), where it came from, the user the
    ``proxy-user`` cookie named (None without it)."""
    path: str
    remote_addr: str
    proxy_user: Optional[str]


class AmWebServer:
    """An ApplicationMaster's web UI (a Spark driver's, say) with Hadoop's ``AmIpFilter`` in front:
    ``routes`` (path, or path and query -> (status, body, content type[, [(header, value), ...]]), as
    ``testbed.spark.routes_from_recording`` gives; a body may be a callable) or a real UI at
    ``driver`` (a loopback URL: its answers are relayed, its redirects pointed at this server)
    behind it.

    ``AmIpFilter.doFilter``: a request whose remote address is not one of the proxy hosts'
    (``PROXY_HOSTS``; here :data:`PROXY_ADDRESS`) gets ``ProxyUtils.sendRedirect`` (302) to
    ``findRedirectUrl()`` + its request URI with ``/redirect`` inserted after the first ``/proxy``,
    and its query string: ``<rm>/proxy/redirect/<app>/<path>?<query>``. ``findRedirectUrl``: the
    one ``PROXY_URI_BASES`` (``<rm>/proxy/<app>``) without HA; with HA, the first RM of
    ``RM_HA_URLS`` whose base answers a GET with 200 (or, with security on, 401 or 403:
    ``isValidUrl``), else a ServletException (500). A request from a proxy host is served, as the
    user its ``proxy-user`` cookie names (``AmIpPrincipal``). ``requests`` logs the requests it
    served, ``received`` every request that reached it (path, remote address, headers)."""

    def __init__(self, app_id: str, proxy_uri_bases: List[str], proxy_hosts: Iterable[str] = (PROXY_ADDRESS,),
                 rm_ha_urls: Optional[List[str]] = None, routes: Optional[Dict[str, tuple]] = None,
                 driver: Optional[str] = None, security: bool = False, timeout: float = 10.0):
        if (routes is None) == (driver is None):
            raise ValueError("an AM serves routes or relays a driver's UI: give one of them")
        self.app_id = app_id
        for h in proxy_hosts:
            if not _is_loopback(h):
                raise ValueError(f"proxy host {h!r}: the testbed's hosts are loopback addresses")
        self.proxy_hosts = frozenset("127.0.0.1" if h == "localhost" else h for h in proxy_hosts)
        self.bases = {f"{urlsplit(b).hostname}:{urlsplit(b).port}": b for b in proxy_uri_bases}
        self.rm_ha_urls = rm_ha_urls
        self.routes = routes
        self.driver = driver.rstrip("/") if driver else None
        self.security, self.timeout = security, timeout
        self.requests: List[AmRequest] = []
        #: every request that reached it, redirected or served: (path with query, remote address, headers)
        self.received: List[Tuple[str, str, List[Tuple[str, str]]]] = []
        self.redirected = 0
        self.server = LoopbackServer(self._handle)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> "AmWebServer":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "AmWebServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def find_redirect_url(self) -> str:
        """``AmIpFilter.findRedirectUrl`` (and ``isValidUrl``)."""
        if len(self.bases) == 1:
            return next(iter(self.bases.values()))
        for hostport in self.rm_ha_urls or ():
            base = self.bases.get(hostport)
            if base is None:
                continue
            try:
                status = fetch(base, [], self.timeout)[0]  # HttpURLConnection follows redirects
            except OSError:
                continue
            if status == 200 or (self.security and status in (401, 403)):
                return base
        raise ServletException("Could not determine the proxy server for redirection")

    def _handle(self, req: Request) -> Reply:
        self.received.append((req.raw_path, req.remote_addr, list(req.headers)))
        if req.remote_addr not in self.proxy_hosts:
            redirect = self.find_redirect_url() + req.uri
            at = redirect.find("/proxy")
            if at >= 0:
                redirect = redirect[:at + len("/proxy")] + "/redirect" + redirect[at + len("/proxy"):]
            if req.query:
                redirect += "?" + req.query
            self.redirected += 1
            return send_redirect(redirect)
        user = req.cookie(PROXY_USER_COOKIE)
        self.requests.append(AmRequest(req.raw_path, req.remote_addr, unquote_plus(user) if user else None))
        return self._serve(req)

    def _serve(self, req: Request) -> Reply:
        if self.routes is not None:
            route = self.routes.get(req.raw_path) or self.routes.get(req.uri)
            if route is None and req.uri == "/":
                return _html(200, f"<html><body>ApplicationMaster of {html.escape(self.app_id)}</body></html>\n")
            if route is None:
                return Reply(404, b"no such path\n", "text/plain")
            status, body, ctype, *extra = route
            return Reply(status, body() if callable(body) else body, ctype, extra[0] if extra else ())
        headers = [(k, v) for k, v in req.headers if k.lower() not in _HOP_BY_HOP and k.lower() != "host"]
        try:
            status, got, body = fetch(self.driver + req.raw_path, headers, self.timeout, follow=False)
        except OSError as e:
            return _html(502, jetty_error_page(502, f"the driver at {self.driver}: {e}"))
        out = []
        for k, v in got:
            if k.lower() in _HOP_BY_HOP:
                continue
            if k.lower() == "location" and v.startswith(self.driver):
                v = self.url + v[len(self.driver):]
            out.append((k, v))
        return Reply(status, body, None, out)


# --- the ResourceManager ---------------------------------------------------------------------------------------------

class YarnRuntimeException(Exception):
    pass


class ServletException(Exception):
    pass


#: RMWebAppFilter's NON_REDIRECTED_URIS (and its other exceptions: cluster info, the about page, the proxy)
NON_REDIRECTED_URIS = frozenset(("/conf", "/stacks", "/logLevel", "/logs", "/isActive", "/jmx", "/prom"))
_APP_ID = re.compile(r"application_(\d+)_(\d+)")


def _query_encode(s: str) -> str:
    # UriBuilder.queryParam's encoding (UriComponent's QUERY_PARAM: sub-delims, ":@/?" kept, space as "+")
    return quote_plus(s, safe="-._~!$'()*,;:@/?")


def build_tracking_url(tracking_uri: str, params: List[Tuple[str, Optional[str]]], rest: str) -> str:
    """``WebAppProxyServlet.buildTrackingUrl``: the request's query parameters appended to the
    tracking URI's query (``UriBuilder.queryParam``), the rest of the proxied path appended to its
    path with one slash between (``UriBuilder.path``; nothing for an empty rest)."""
    parts = urlsplit(tracking_uri)
    path = parts.path
    if rest:
        path = path.rstrip("/") + "/" + rest.lstrip("/")
    query = parts.query
    for n, v in params:
        pair = _query_encode(n) + ("" if v is None else "=" + _query_encode(v))
        query = f"{query}&{pair}" if query else pair
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")


class ResourceManager:
    """One ResourceManager (``rm1``, ``rm2``) of a :class:`YarnCluster`: its web app and the web
    proxy it embeds (``yarn.web-proxy.address`` unset), behind its filters in Hadoop's order: the
    authentication (``StaticUserWebFilter``, ``AuthenticationFilter`` or the SPNEGO front), then
    ``RMWebAppFilter`` (HA), then the servlets. ``requests`` logs (raw path, remote user) of every
    request that got past the authentication, ``received`` (raw path, headers) of every request
    before it (with Kerberos: as the SPNEGO front passed it on); ``warned`` counts warning pages."""

    def __init__(self, cluster: "YarnCluster", rm_id: str):
        self.cluster, self.rm_id = cluster, rm_id
        self.server = LoopbackServer(self._handle)
        self.front: Optional["RmSpnegoFront"] = None
        self._front_port: Optional[int] = None
        self.requests: List[Tuple[str, Optional[str]]] = []
        #: every request that reached it, before any authentication: (path with query, headers)
        self.received: List[Tuple[str, List[Tuple[str, str]]]] = []
        self.warned = 0

    # --- lifecycle
    @property
    def running(self) -> bool:
        return self.server.httpd is not None

    @property
    def url(self) -> str:
        """Its public address (the SPNEGO front's with Kerberos): what clients, tracking URLs and the
        AMs' AmIpFilter use."""
        return self.front.url if self.front is not None else self.server.url

    @property
    def backend_url(self) -> str:
        return self.server.url

    @property
    def ha_state(self) -> str:
        return "ACTIVE" if self.cluster.active == self.rm_id else "STANDBY"

    def start(self) -> None:
        self.server.start()
        realm = self.cluster.realm
        if realm is not None:
            workdir = Path(tempfile.mkdtemp(prefix=f"sw-{self.rm_id}-", dir=self.cluster.workdir))
            self.front = RmSpnegoFront(realm, self.server.url, workdir, port=self._front_port).start()
            self._front_port = self.front.port

    def stop(self) -> None:
        front, self.front = self.front, None
        if front is not None:
            front.stop()
        self.server.stop()

    # --- request handling
    def _handle(self, req: Request) -> Reply:
        self.received.append((req.raw_path, list(req.headers)))
        set_cookies: List[Tuple[str, str]] = []
        denied = self._authenticate(req, set_cookies)
        if denied is not None:
            return denied
        self.requests.append((req.raw_path, req.remote_user))
        reply = self._route(req)
        reply.headers += set_cookies
        return reply

    def _authenticate(self, req: Request, set_cookies: List[Tuple[str, str]]) -> Optional[Reply]:
        """Sets ``req.remote_user``; a reply when the request is refused."""
        c = self.cluster
        if c.realm is not None:
            principal = req.header("X-Remote-User")
            if not principal:
                return _html(403, jetty_error_page(403, "not through the SPNEGO front"))
            req.remote_user = short_name(principal, c.realm.realm)
            return None
        if c.http_auth == "static":
            req.remote_user = STATIC_USER  # StaticUserWebFilter
            return None
        return c.pseudo_authenticate(req, set_cookies)

    def _route(self, req: Request) -> Reply:
        uri = req.uri
        if uri == "/isActive":
            return self._is_active()
        if self.ha_state == "STANDBY" and self._should_redirect(uri):
            return self._standby(req)
        if uri.rstrip("/") == "/ws/v1/cluster/apps":
            return self._apps(req)
        if uri.rstrip("/") in ("/ws/v1/cluster", "/ws/v1/cluster/info"):
            return self._json(200, {"clusterInfo": self._cluster_info()})
        if uri.startswith("/proxy/"):
            return self._proxy(req)
        m = re.fullmatch(r"/cluster/(app|failure)/([^/]+)", uri)
        if m:
            kind, app_id = m.groups()
            what = "Application" if kind == "app" else "Failed while trying to redirect to the AM of"
            return _html(200, f"<html><head><title>{what} {html.escape(app_id)}</title></head>"
                              f"<body><h1>{what} {html.escape(app_id)}</h1></body></html>\n")
        return _html(404, jetty_error_page(404, "Not Found"))

    @staticmethod
    def _json(status: int, body) -> Reply:
        return Reply(status, json.dumps(body).encode(), JSON)

    def _is_active(self) -> Reply:
        """``IsActiveServlet``: 200 ``I am Active!``, or ``sendError(405, "I am not Active!")``."""
        if self.ha_state == "ACTIVE":
            return Reply(200, b"I am Active!", None, [("Connection", "close")])
        return _html(405, jetty_error_page(405, "I am not Active!"), [("Connection", "close")])

    @staticmethod
    def _should_redirect(uri: str) -> bool:
        """``RMWebAppFilter.shouldRedirect``."""
        return (uri != "/ws/v1/cluster/info" and uri != "/cluster/cluster" and not uri.startswith("/proxy/")
                and uri not in NON_REDIRECTED_URIS)

    def _standby(self, req: Request) -> Reply:
        """``RMWebAppFilter.doFilter`` on a standby RM.

        With an active RM: ``307``, ``Location`` the active RM's address + the HTML-quoted request
        URI + the query re-encoded (``WebAppUtils.appendQueryParams``), and the body "This is standby
        RM. The redirect url is: <escaped URI and query>".

        With none: "Can not find any active RM. Will retry in next N seconds." and "HA Zookeeper
        Connection State: ..." with ``307`` and ``Refresh: N;url=<this RM's address + URI>`` carrying
        ``next.refresh.interval=<retries + 1>``, N = ``5 * 2**retries * (0.5 .. 1.5)`` seconds
        (``calculateExponentialTime``); once N would pass 300 s, or when ``next.refresh.interval`` is
        not a number, "There is no active RM right now." with ``200`` and no ``Refresh``."""
        quoted = quote_html_chars(req.uri)
        query = _format_query(req.params) if req.query else None
        with_query = quoted + (f"?{query}" if query else "")
        escaped = quote_html_chars(req.uri + (f"?{query}" if query else ""))
        active = self.cluster.active_rm()
        if active is not None:
            body = f"This is standby RM. The redirect url is: {escaped}\n"
            return Reply(307, body.encode(), "text/plain; charset=UTF-8", [("Location", active.url + with_query)])
        retry_param = req.param("next.refresh.interval")
        do_retry, retries = True, 0
        if retry_param is not None:
            try:
                retries = int(retry_param.strip())
            except ValueError:
                do_retry = False
        with self.cluster.lock:
            nxt = int(5 * (1 << max(retries, 0)) * (self.cluster.rng.random() + 0.5))
        redirect = self.url + with_query
        new = f"next.refresh.interval={retries + 1}"
        if "next.refresh.interval=" in redirect:
            redirect = re.sub(r"next\.refresh\.interval=[^&]+", new, redirect)
        else:
            redirect += ("&" if "?" in redirect else "?") + new
        if nxt > 300:
            do_retry = False
        msg = (f"Can not find any active RM. Will retry in next {nxt} seconds." if do_retry
               else "There is no active RM right now.")
        body = f"{msg}\nHA Zookeeper Connection State: {self.cluster.zk_state}\n".encode()
        if do_retry:
            return Reply(307, body, "text/plain; charset=UTF-8", [("Refresh", f"{nxt};url={redirect}")])
        return Reply(200, body, "text/plain; charset=UTF-8")

    def _cluster_info(self) -> dict:
        return {"id": CLUSTER_TIMESTAMP, "startedOn": CLUSTER_TIMESTAMP, "state": "STARTED",
                "haState": self.ha_state,
                "rmStateStoreName": "org.apache.hadoop.yarn.server.resourcemanager.recovery.ZKRMStateStore",
                "resourceManagerVersion": "3.3.6", "hadoopVersion": "3.3.6",
                "haZooKeeperConnectionState": self.cluster.zk_state}

    def _apps(self, req: Request) -> Reply:
        """``RMWebServices.getApps``: ``ApplicationsRequestBuilder`` (``limit`` validated first, then
        ``states`` plus the deprecated ``state`` through ``parseQueries``: an unknown state is
        ``400`` ``BadRequestException``), ``ClientRMService.getApplications`` (types matched
        lower-cased, then states, users, queues; at most ``limit``). No application: ``{"apps":{}}``
        on Hadoop 3 (``TestRMWebServicesApps.testAppsQueryStatesNone``), ``{"apps":null}`` on
        Hadoop 2. With ``ignore_application_types`` the filter is dropped, as a gateway that does
        not pass it on would."""
        c = self.cluster
        try:
            limit = None
            if req.param("limit"):
                try:
                    limit = int(req.param("limit"))
                except ValueError:
                    raise BadRequest("limit value must be a number!") from None
                if limit <= 0:
                    raise BadRequest("limit value must be greater then 0")
            states = req.params_named("states")
            if req.param("state"):
                states.append(req.param("state"))
            states = parse_queries(states, True)
            types = set() if c.ignore_application_types else parse_queries(req.params_named("applicationTypes"), False)
        except BadRequest as e:
            return self._json(400, remote_exception("BadRequestException", bad_request_message(str(e))))
        users = {u for u in [req.param("user")] if u}
        queues = {q for q in [req.param("queue")] if q}
        rm_url = self.url
        with c.lock:
            apps = list(c.apps)
        out = []
        for a in apps:
            if limit is not None and len(out) >= limit:
                break
            if types and a.application_type.lower() not in types:
                continue
            if states and a.state.lower() not in states:
                continue
            if users and a.user not in users:
                continue
            if queues and a.queue not in queues:
                continue
            out.append(a.app_info(rm_url))
        if out:
            return self._json(200, {"apps": {"app": out}})
        return self._json(200, {"apps": {} if c.hadoop_major >= 3 else None})

    # --- the web proxy
    def _proxy(self, req: Request) -> Reply:
        """``WebAppProxyServlet.methodAction`` (for GET), in its order:

        1. ``/proxy/redirect/<app>/...`` (what AmIpFilter sends browsers to) is handled as
           ``/proxy/<app>/...``, unless it comes from the proxy itself (``handleRedirect``: the AM
           sent the proxy's own request back): then ``302`` to ``<rm>/cluster/failure/<app>``;
        2. with security on, the ``checked_<app>`` cookie says the user was warned, and its value
           (or ``?proxyapproved=true``) that they approved;
        3. an unknown application: ``404`` "Application <id> could not be found in RM or history
           server" (a malformed id: ``Apps.toAppID`` throws, ``500``);
        4. no tracking URL (``N/A``): ``302`` to the RM's application page ``<rm>/cluster/app/<id>``;
        5. with security on, a caller who is not the owner and has not approved gets the warning page
           (``200``, ``Set-Cookie: checked_<app>=false``; its link is the same path and query plus
           ``proxyapproved=true``);
        6. the tracking URL + the rest of the path + the query (``buildTrackingUrl``); FINISHED,
           FAILED or KILLED: ``302`` there (the history server, or the RM's application page);
        7. otherwise the proxy fetches it (``proxyLink``) and answers with the AM's status, headers
           and body, plus ``Set-Cookie: checked_<app>=true`` when the caller was warned and approved."""
        c = self.cluster
        path_info = req.uri[len("/proxy"):]
        is_redirect = path_info.startswith("/redirect")
        if is_redirect:
            path_info = path_info[len("/redirect"):]
        parts = path_info.split("/", 2)
        if len(parts) < 2:
            return _html(404, not_found_page("Your path appears to be formatted incorrectly."))
        app_id, rest = parts[1], parts[2] if len(parts) > 2 else ""
        fields = app_id.split("_")
        if len(fields) < 3 or fields[0] != "application" or not fields[1].isdigit() or not fields[2].isdigit():
            raise YarnRuntimeException(f"Error parsing application ID: {app_id}")
        if is_redirect and req.remote_addr == c.proxy_address:
            return send_redirect(f"{self.url}/cluster/failure/{app_id}")
        user = req.remote_user
        approved = _java_bool(req.param("proxyapproved"))
        warned = False
        if c.security:
            checked = req.cookie(f"checked_{app_id}")
            if checked is not None:
                warned = True
                approved = approved or _java_bool(checked)
        check_user = c.security and (not warned or not approved)
        if c.active_rm() is None:
            raise YarnRuntimeException("no active ResourceManager to fetch the application report from")
        with c.lock:
            app = next((a for a in c.apps if a.app_id == app_id), None)
            if app is not None:
                original, state, owner = app.original_tracking_url(c.active_rm().url), app.state, app.user
        if app is None:
            return _html(404, not_found_page(f"Application {app_id} could not be found in RM or history server"))
        if original in ("", "N/A"):
            return send_redirect(f"{self.url}/cluster/app/{app_id}")
        tracking = original if "://" in original else "http://" + original
        if check_user and owner != user:
            self.warned += 1
            link = f"/proxy/{app_id}/{rest}" + (f"?{req.query}&" if req.query else "?") + "proxyapproved=true"
            return _html(200, warning_page(link, owner), [("Set-Cookie", check_cookie(app_id, False))])
        to_fetch = build_tracking_url(tracking, req.params, rest)
        if state in FINAL_STATES:
            return send_redirect(to_fetch)
        cookie = [("Set-Cookie", check_cookie(app_id, True))] if warned and approved else []
        return self._proxy_link(req, to_fetch, user, cookie)

    def _proxy_link(self, req: Request, url: str, user: Optional[str], cookie: List[Tuple[str, str]]) -> Reply:
        """``WebAppProxyServlet.proxyLink``: a GET of the AM from the proxy host's address, carrying the
        client's ``PASS_THROUGH_HEADERS`` only (never its ``Authorization`` nor its cookies) and, when
        the caller is known, ``Cookie: proxy-user=<user>``; the answer's status, its headers copied
        with ``setHeader`` (so the last of a repeated header wins), the check cookie added, the body.
        A failure to reach the AM is an IOException: the container's ``500``."""
        headers = [(name, v) for k, v in req.headers for name in PASS_THROUGH_HEADERS if k.lower() == name.lower()]
        if user:
            headers.append(("Cookie", f"{PROXY_USER_COOKIE}={quote_plus(user, safe='-_.*')}"))
        try:
            status, got, body = fetch(url, headers, self.cluster.proxy_timeout,
                                      source_address=self.cluster.proxy_address)
        except (ConnectionRefusedError, socket.timeout, OSError) as e:
            kind = ("java.net.ConnectException" if isinstance(e, ConnectionRefusedError)
                    else "java.net.SocketTimeoutException" if isinstance(e, socket.timeout) else "java.io.IOException")
            return _html(500, jetty_error_page(500, f"{kind}: {e}"))
        copied: Dict[str, Tuple[str, str]] = {}
        for k, v in got:
            if k.lower() not in _HOP_BY_HOP:
                copied[k.lower()] = (k, v)
        return Reply(status, body, None, list(copied.values()) + cookie)


# --- Kerberos: the SPNEGO front ------------------------------------------------------------------------------------

class RmSpnegoFront(SpnegoFront):
    """:class:`testbed.kerberos.SpnegoFront` (Apache, mod_auth_gssapi) in front of an RM, passing the
    principal it authenticated on to the RM (``RequestHeader set X-Remote-User``, which replaces any
    header of that name the client sent), on a chosen port (the one it had, when an RM restarts)."""

    def __init__(self, realm: KerberosRealm, backend: str, workdir: Path, port: Optional[int] = None):
        super().__init__(realm, backend, workdir)
        conf = self.conf.read_text()
        marker = "    Header always set X-Authenticated-As"
        if marker not in conf or f"Listen 127.0.0.1:{self.port}\n" not in conf:
            raise RuntimeError(f"testbed.kerberos.SpnegoFront's configuration changed: {self.conf}")
        conf = conf.replace(marker, '    RequestHeader set X-Remote-User "expr=%{REMOTE_USER}"\n' + marker)
        if port is not None:
            conf = conf.replace(f"Listen 127.0.0.1:{self.port}\n", f"Listen 127.0.0.1:{port}\n")
            self.port, self.url = port, f"http://{realm.service_host}:{port}"
        self.conf.write_text(conf)


# --- the cluster ---------------------------------------------------------------------------------------------------

class YarnCluster:
    """A YARN cluster's web side: one ResourceManager, or two (``ha=True``: ``rm1`` active,
    ``rm2`` standby), its applications, and the AM web servers it started for them.

    - ``security``: Hadoop security on (``UserGroupInformation.isSecurityEnabled``): the proxy warns
      callers who are not an application's owner; AMs accept 401/403 from an RM as alive. Defaults
      to ``kerberos``.
    - ``kerberos``: True (a realm of its own, :attr:`realm`, made and stopped with the cluster) or a
      started :class:`testbed.kerberos.KerberosRealm`: every RM sits behind its own SPNEGO front
      (Apache, mod_auth_gssapi) at :attr:`ResourceManager.url`, and the caller is its principal's
      short name. Clients need the realm's :attr:`~testbed.kerberos.KerberosRealm.env`.
    - ``http_auth`` without Kerberos: ``"static"`` (no authentication filter: everyone is
      ``dr.who``) or ``"simple"`` (``AuthenticationFilter`` with ``PseudoAuthenticationHandler``:
      ``?user.name=``, the ``hadoop.auth`` cookie; ``anonymous_allowed`` is
      ``hadoop.http.authentication.simple.anonymous.allowed``, true by default).
    - ``ignore_application_types``: the RM's REST API answers every type (a gateway that drops the
      ``applicationTypes`` filter), for testing a client's own filtering.
    - ``hadoop_major``: 3 (``{"apps":{}}`` when nothing matches) or 2 (``{"apps":null}``).
    - ``zk_state``: what the standby's "HA Zookeeper Connection State" says.

    ``add_app`` adds an application and, given a ``driver`` URL or ``routes``, starts its AM web
    server (:class:`AmWebServer`, AmIpFilter'd for this cluster's proxies) whose URL becomes the
    tracking URL the AM registered (``am_filter=False``: the driver URL is registered as is).
    ``failover``, ``stop_rm`` and ``start_rm`` change the HA picture while it runs.
    """

    def __init__(self, *, ha: bool = False, security: Optional[bool] = None, kerberos=False,
                 http_auth: str = "static", anonymous_allowed: bool = True, ignore_application_types: bool = False,
                 hadoop_major: int = 3, zk_state: str = "CONNECTED", proxy_address: str = PROXY_ADDRESS,
                 proxy_timeout: float = 60.0, seed: Optional[int] = None):
        if http_auth not in ("static", "simple"):
            raise ValueError(f"http_auth: 'static' or 'simple', not {http_auth!r}")
        self.ha, self.kerberos = ha, bool(kerberos)
        self.realm: Optional[KerberosRealm] = kerberos if isinstance(kerberos, KerberosRealm) else None
        self.security = self.kerberos if security is None else security
        self.http_auth, self.anonymous_allowed = http_auth, anonymous_allowed
        self.ignore_application_types, self.hadoop_major = ignore_application_types, hadoop_major
        self.zk_state, self.proxy_address, self.proxy_timeout = zk_state, proxy_address, proxy_timeout
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.apps: List[YarnApp] = []
        self.ams: List[AmWebServer] = []
        self.rms = [ResourceManager(self, "rm1")] + ([ResourceManager(self, "rm2")] if ha else [])
        self.active: Optional[str] = "rm1"
        self._secret = secrets.token_bytes(32)
        self._seq = 0
        self.workdir: Optional[str] = None
        self._stack = ExitStack()

    # --- lifecycle
    def __enter__(self) -> "YarnCluster":
        try:
            if self.kerberos:
                self.workdir = tempfile.mkdtemp(prefix="sw-yarn-")
                self._stack.callback(shutil.rmtree, self.workdir, True)
                if self.realm is None:
                    self.realm = self._stack.enter_context(kerberos_realm(Path(self.workdir) / "realm"))
            self._stack.callback(self._stop_all)
            for rm in self.rms:
                rm.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _stop_all(self) -> None:
        for am in self.ams:
            am.stop()
        for rm in self.rms:
            rm.stop()

    # --- the RMs
    def rm(self, rm_id: str) -> ResourceManager:
        return next(r for r in self.rms if r.rm_id == rm_id)

    def active_rm(self) -> Optional[ResourceManager]:
        """The active RM, if there is one and it runs (``RMHAUtils.findActiveRMHAId`` asks each RM)."""
        rm = next((r for r in self.rms if r.rm_id == self.active), None)
        return rm if rm is not None and rm.running else None

    @property
    def url(self) -> str:
        """The active RM's public URL (rm1's when none is active)."""
        rm = self.active_rm() or self.rms[0]
        return rm.url

    @property
    def urls(self) -> List[str]:
        return [r.url for r in self.rms]

    def failover(self, to: Optional[str]) -> None:
        """Make ``to`` the active RM (the other one standby); None: both standby."""
        if to is not None:
            self.rm(to)
        with self.lock:
            self.active = to

    def stop_rm(self, rm_id: str) -> None:
        """Stop an RM (its port then refuses connections); it stays the active one if it was."""
        self.rm(rm_id).stop()

    def start_rm(self, rm_id: str) -> None:
        """Start a stopped RM again on the same port(s)."""
        rm = self.rm(rm_id)
        if not rm.running:
            rm.start()

    # --- applications
    def new_app_id(self) -> str:
        with self.lock:
            self._seq += 1
            return f"application_{CLUSTER_TIMESTAMP}_{self._seq:04d}"

    def app(self, app_id: str) -> YarnApp:
        with self.lock:
            return next(a for a in self.apps if a.app_id == app_id)

    def proxy_uri_bases(self, app_id: str) -> List[str]:
        """What ``AmFilterInitializer`` gives an AM as ``PROXY_URI_BASES``: each RM's proxy path."""
        return [f"{r.url}/proxy/{app_id}" for r in self.rms]

    def rm_ha_urls(self) -> Optional[List[str]]:
        """``RM_HA_URLS``: each RM's web address (host:port), with HA only."""
        return [urlsplit(r.url).netloc for r in self.rms] if self.ha else None

    def start_am(self, app_id: str, *, driver: Optional[str] = None, routes: Optional[Dict[str, tuple]] = None,
                 proxy_hosts: Optional[Iterable[str]] = None) -> AmWebServer:
        """An AmIpFilter'd AM web server for ``app_id`` configured as this cluster's AMs are
        (``proxy_hosts`` overrides the proxy hosts it trusts: a misconfigured AM); stopped with the
        cluster."""
        am = AmWebServer(app_id, self.proxy_uri_bases(app_id), proxy_hosts or (self.proxy_address,),
                         self.rm_ha_urls(), routes=routes, driver=driver, security=self.security)
        with self.lock:
            self.ams.append(am)
        return am.start()

    def add_app(self, name: str, *, driver: Optional[str] = None, routes: Optional[Dict[str, tuple]] = None,
                am_filter: bool = True, app_id: Optional[str] = None, **fields) -> YarnApp:
        """A new application (``fields`` are :class:`YarnApp`'s: user, state, application_type,
        unmanaged, final_tracking_url, ...). With ``routes``, or a ``driver`` URL and ``am_filter``,
        an :class:`AmWebServer` is started and its URL is the application's tracking URL; a
        ``driver`` without ``am_filter`` is registered as is."""
        app = YarnApp(app_id or self.new_app_id(), name, **fields)
        if routes is not None or (driver is not None and am_filter):
            app.am = self.start_am(app.app_id, driver=driver, routes=routes)
            app.tracking_url = app.tracking_url or app.am.url
        elif driver is not None:
            app.tracking_url = app.tracking_url or driver
        with self.lock:
            self.apps.append(app)
        return app

    # --- AuthenticationFilter with PseudoAuthenticationHandler
    def _sign(self, token: str) -> str:
        sig = base64.b64encode(hmac.new(self._secret, token.encode(), hashlib.sha256).digest()).decode()
        return f"{token}&s={sig}"

    def pseudo_authenticate(self, req: Request, set_cookies: List[Tuple[str, str]]) -> Optional[Reply]:
        """``AuthenticationFilter.doFilter`` with ``PseudoAuthenticationHandler``.

        A valid ``hadoop.auth`` cookie (signed, not expired, type ``simple``) is the user it names.
        Otherwise ``user.name`` from the query string authenticates, and the answer sets
        ``hadoop.auth="u=<user>&p=<user>&t=simple&e=<expiry ms>&s=<signature>"; HttpOnly``
        (``AuthToken``, ``Signer``, ``createAuthCookie``: no Path, not persistent). Without it: the
        anonymous user (no remote user) when anonymous requests are allowed, else ``401`` with
        ``WWW-Authenticate: PseudoAuth`` and the cookie emptied (``hadoop.auth=; HttpOnly``)."""
        reason = None
        cookie = req.cookie(AUTH_COOKIE)
        if cookie is not None:
            if cookie == "":
                reason = "Unauthorized access"
            else:
                token, _, _sig = cookie.rpartition("&s=")
                attrs = dict(p.split("=", 1) for p in token.split("&") if "=" in p)
                if not token or not hmac.compare_digest(self._sign(token), cookie):
                    reason = "Invalid signature"
                elif attrs.get("t") != "simple":
                    reason = "Invalid AuthenticationToken type"
                elif int(attrs.get("e", "0")) < time.time() * 1000:
                    reason = "AuthenticationToken expired"
                else:
                    req.remote_user = attrs.get("u")
                    return None
        name = req.param("user.name")
        if name:
            req.remote_user = name
            token = f"u={name}&p={name}&t=simple&e={int(time.time() * 1000) + TOKEN_VALIDITY * 1000}"
            set_cookies.append(("Set-Cookie", f'{AUTH_COOKIE}="{self._sign(token)}"; HttpOnly'))
            return None
        if self.anonymous_allowed:
            req.remote_user = None
            return None
        reason = reason or "Authentication required"
        return _html(401, jetty_error_page(401, reason),
                     [("WWW-Authenticate", "PseudoAuth"), ("Set-Cookie", f"{AUTH_COOKIE}=; HttpOnly")])
