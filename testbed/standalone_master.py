"""A Spark standalone master stand-in: the three pages ``discover: standalone``
reads, built from the pages of a real master recorded by
``scripts/record_standalone_master.py`` (tests/data/standalone-<version>/),
with as many running applications as a test wants.

- ``GET /json/``: the recorded state, its ``activeapps`` replaced by ours;
- ``GET /``: the recorded home page, its "Running Applications" table holding
  one row per application shown there (the recorded row, with the id, name and
  driver UI link replaced; ``ui=""`` is what a real master links for an
  application started with ``spark.ui.enabled=false``), or ``home_body``
  instead when a test sets it (a hostile page);
- ``GET /app/?appId=<id>``: the recorded application page, with its
  "Application Detail UI" link replaced;
- with ``reverse_proxy`` (``spark.ui.reverseProxy=true``): the pages link each
  application's ``/proxy/<id>`` (``UIUtils.makeHref``) instead of its ``ui``, and
  ``/proxy/<id>/...`` relays the request to the application's ``ui`` (its
  ``appUiUrl``) as the real master does (``JettyUtils.createProxyHandler``, a
  Jetty ``ProxyServlet``): every request header but ``Host`` and the hop-by-hop
  ones (``AbstractProxyServlet.copyRequestHeaders``: ``Authorization`` and
  ``Cookie`` go through), ``Via`` and ``X-Forwarded-*`` added, redirects not
  followed, a ``Location`` on the driver's origin rewritten to the proxy path
  (the body is passed on decoded: ``testbed.yarn.fetch``).
  Paths are routed as Jetty reads them: percent-escapes decoded, path parameters
  (``;x``) dropped, dot segments resolved (``/json/../proxy/<id>`` is the proxy).

Real standalone clusters run in tests/test_spark_cluster.py (testbed.cluster);
this one serves thousands of applications, or hostile pages, in milliseconds.
"""

from __future__ import annotations

import html
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, List, Optional, Union
from urllib.parse import parse_qs, unquote, urlsplit

from .yarn import fetch

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
#: AbstractProxyServlet.HOP_HEADERS (Jetty 9.4 to 12): what the proxy does not pass on, with Host
#: and the headers the request's Connection names
HOP_HEADERS = frozenset(("connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection",
                         "transfer-encoding", "te", "trailer", "upgrade"))


@dataclass
class MasterApp:
    app_id: str
    name: str = "app"
    #: the driver UI the master links ("" for spark.ui.enabled=false): the application's appUiUrl,
    #: which the master's reverse proxy relays to
    ui: str = ""
    #: listed in the home page's table (False: only in /json/ and on its own page)
    on_home_page: bool = True
    state: str = "RUNNING"


def _recording(version: Optional[str]) -> Path:
    dirs = sorted(d for d in DATA.glob("standalone-*") if (d / "master.html").is_file())
    if version:
        dirs = [d for d in dirs if d.name.startswith(f"standalone-{version}")]
    if not dirs:
        raise FileNotFoundError(f"no recorded standalone master pages in {DATA}")
    return dirs[-1]


def jetty_path(raw: str) -> str:
    """The path as Jetty routes it (``HttpURI``'s decoded path): each segment's path parameters
    dropped, percent-escapes decoded, ``.`` and ``..`` segments resolved."""
    out: List[str] = []
    for seg in raw.split("/")[1:]:
        seg = unquote(seg.split(";", 1)[0])
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/" + "/".join(out)


class StandaloneMaster:
    def __init__(self, version: Optional[str] = None, reverse_proxy: bool = False):
        self.reverse_proxy = reverse_proxy
        d = _recording(version)
        self.state = json.loads((d / "master.json").read_text())
        (self._rec_id,) = [a["id"] for a in self.state["activeapps"]]
        self._rec_ui = json.loads((d / "expected.json").read_text())[self._rec_id]
        self._rec_name = self.state["activeapps"][0]["name"]
        home = (d / "master.html").read_text()
        start = home.rindex("<tr>", 0, home.index(f'appId={self._rec_id}"'))
        end = home.index("</tr>", start) + len("</tr>")
        self._home_head, self._row, self._home_tail = home[:start], home[start:end], home[end:]
        self._app_page = (d / f"{self._rec_id}.html").read_text()
        self.apps: List[MasterApp] = []
        #: bytes (or a callable giving them) served as the home page instead of the built one
        self.home_body: Union[None, bytes, Callable[[], bytes]] = None
        self.requests: List[tuple] = []  # (path with query, headers)
        #: what the reverse proxy relayed: (the URL it asked, the headers it sent)
        self.relayed: List[tuple] = []
        master = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                master.requests.append((self.path, dict(self.headers)))
                parts = urlsplit(self.path)
                routed = jetty_path(parts.path)
                headers = []
                if master.reverse_proxy and (routed == "/proxy" or routed.startswith("/proxy/")):
                    status, headers, body = master.relay(self, routed[len("/proxy"):], parts.query)
                else:
                    status, body, ctype = master.answer(parts.path, parse_qs(parts.query))
                    headers = [("Content-Type", ctype)]
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # ---------------------------------------------------------------- the pages

    def answer(self, path: str, query: dict):
        if path in ("/json", "/json/"):
            return 200, self.json_state(), "application/json"
        if path == "/":
            body = self.home_body
            if body is None:
                body = self.home_page().encode()
            elif callable(body):
                body = body()
            return 200, body, "text/html;charset=utf-8"
        if path in ("/app", "/app/"):
            app = next((a for a in self.apps if a.app_id == query.get("appId", [""])[0]), None)
            if app is not None:
                return 200, self.app_page(app).encode(), "text/html;charset=utf-8"
        return 404, b"not found", "text/plain"

    def relay(self, handler: BaseHTTPRequestHandler, path_info: str, query: str):
        """``/proxy`` + ``path_info``: ``createProxyHandler``'s ``rewriteTarget`` (the id is the
        first segment; its application's appUiUrl + the rest + the query; none: 403), then
        Jetty's ``ProxyServlet`` (headers as the module says). -> (status, headers, body)."""
        if not path_info:
            return 403, [("Content-Type", "text/plain")], b"forbidden"
        slash = path_info.find("/", 1)
        prefix = path_info if slash < 0 else path_info[:slash]
        app = next((a for a in self.apps if a.app_id == prefix[1:] and a.ui), None)
        if app is None:
            return 403, [("Content-Type", "text/plain")], b"forbidden"
        rest = path_info[len(prefix):]
        target = app.ui + ("/" if rest and not rest.startswith("/") and not app.ui.endswith("/") else "") + rest
        if query:
            target += "?" + query
        named = {n.strip().lower() for v in handler.headers.get_all("Connection", []) for n in v.split(",")}
        sent = [(k, v) for k, v in handler.headers.items()
                if k.lower() != "host" and k.lower() not in HOP_HEADERS and k.lower() not in named]
        sent += [("Via", "1.1 standalone-master"), ("X-Forwarded-For", handler.client_address[0]),
                 ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", handler.headers.get("Host", "")),
                 ("X-Forwarded-Server", "127.0.0.1")]
        self.relayed.append((target, sent))
        try:  # loopback addresses only; the redirects are the client's
            status, got, body = fetch(target, sent, 10.0, follow=False)
        except OSError:
            return 502, [("Content-Type", "text/plain")], b"bad gateway"
        t = urlsplit(target)
        driver = f"{t.scheme}://{t.netloc}"
        out = []
        for k, v in got:
            if k.lower() in HOP_HEADERS or k.lower() in ("content-length", "server", "date"):
                continue
            if k.lower() == "location" and v.startswith(driver):  # createProxyLocationHeader
                v = f"http://{handler.headers.get('Host', '')}/proxy/{app.app_id}{v[len(driver):]}"
            out.append((k, v))
        return status, out, body

    def json_state(self) -> bytes:
        rec = self.state["activeapps"][0]
        active = [dict(rec, id=a.app_id, name=a.name, state=a.state) for a in self.apps]
        return json.dumps(dict(self.state, activeapps=active)).encode()

    def _fill(self, text: str, app: MasterApp) -> str:
        text = text.replace(self._rec_id, html.escape(app.app_id))
        link = f"/proxy/{app.app_id}" if self.reverse_proxy and app.ui else app.ui
        text = text.replace(f'href="{self._rec_ui}"', f'href="{html.escape(link)}"')
        return re.sub(rf">\s*{re.escape(self._rec_name)}\s*<", f">{html.escape(app.name)}<", text)

    def home_page(self) -> str:
        rows = "".join(self._fill(self._row, a) for a in self.apps if a.on_home_page)
        return self._home_head + rows + self._home_tail

    def app_page(self, app: MasterApp) -> str:
        return self._fill(self._app_page, app)

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "StandaloneMaster":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
