"""A YARN ResourceManager stand-in: its REST API for the application list and
its web proxy to the driver UIs, with the proxy's quirks.

No YARN runs here; this follows the contract as Hadoop documents it
(ResourceManager REST API, "Cluster Applications API"; WebAppProxyServlet):

- ``GET /ws/v1/cluster/apps`` answers ``{"apps": {"app": [...]}}``, filtered by
  the query parameters ``states`` and ``applicationTypes`` (comma-separated,
  case-insensitive), or ``{"apps": null}`` when nothing matches. Each app has
  ``id``, ``user``, ``name``, ``queue``, ``state``, ``finalStatus``,
  ``progress``, ``trackingUI``, ``trackingUrl``, ``applicationType``,
  ``startedTime``, ``elapsedTime`` (others left out).
- ``/proxy/<id>/<rest>``: the web proxy. To a client that has not been warned
  it answers the HTML warning page (the one Hadoop renders, as Datadog's
  fixture records it), unless the request carries the cookie
  ``checked_<id>=true`` or the query parameter ``proxyapproved=true`` (which
  also sets that cookie). Otherwise it forwards to the application's driver
  UI: here, recorded Spark answers (testbed.spark) or a redirect to a driver
  on another origin, as a driver behind the AmIpFilter does.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

WARNING_PAGE = """<html>
  <h1>
    WARNING: The following page may not be safe!
  </h1>
  <h3>
    click
    <a href="{redirect}">here</a>
     to continue to an Application Master web interface owned by
    {user}
  </h3>
</html>
"""


@dataclass
class YarnApp:
    app_id: str
    name: str
    state: str = "RUNNING"
    application_type: str = "SPARK"
    user: str = "spark"
    #: path -> (status, body, content type), as testbed.spark.routes_from_recording gives, without prefix
    routes: Dict[str, tuple] = field(default_factory=dict)
    #: when set, the proxy redirects every request to this origin (a driver elsewhere)
    redirect_to: Optional[str] = None


class YarnResourceManager:
    def __init__(self):
        self.apps: List[YarnApp] = []
        self.requests: List[tuple] = []  # (path, headers)
        self.warned = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body: bytes, ctype="application/json", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, dict(self.headers)))
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path.rstrip("/") == "/ws/v1/cluster/apps":
                    return self._send(200, json.dumps(server.listing(query)).encode())
                if parts.path.startswith("/proxy/"):
                    return self._proxy(parts, query)
                return self._send(404, b"not found", "text/plain")

            def _proxy(self, parts, query):
                app_id, _, rest = parts.path[len("/proxy/"):].partition("/")
                app = next((a for a in server.apps if a.app_id == app_id), None)
                if app is None:
                    return self._send(404, b"Application not found", "text/html")
                cookie = self.headers.get("Cookie", "")
                warned = f"checked_{app_id}=true" in cookie.replace(" ", "").split(";")
                approved = query.get("proxyapproved", [""])[0] == "true"
                if not (warned or approved):
                    server.warned += 1
                    page = WARNING_PAGE.format(redirect=f"/proxy/{app_id}/{rest}?proxyapproved=true", user=app.user)
                    return self._send(200, page.encode(), "text/html; charset=utf-8")
                extra = [("Set-Cookie", f"checked_{app_id}=true; Path=/proxy/{app_id}")] if approved else []
                if app.redirect_to:
                    location = app.redirect_to.rstrip("/") + "/" + rest + (f"?{parts.query}" if parts.query else "")
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route = app.routes.get("/" + rest)
                if route is None:
                    return self._send(404, b"no such path", "text/plain")
                status, body, ctype = route
                return self._send(status, body, ctype, extra)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def listing(self, query) -> dict:
        def wanted(param):
            values = ",".join(query.get(param, [])).split(",")
            return {v.strip().upper() for v in values if v.strip()}

        states, types = wanted("states"), wanted("applicationTypes")
        items = []
        for a in self.apps:
            if states and a.state.upper() not in states:
                continue
            if types and a.application_type.upper() not in types:
                continue
            items.append({
                "id": a.app_id, "user": a.user, "name": a.name, "queue": "default", "state": a.state,
                "finalStatus": "UNDEFINED", "progress": 10.0, "trackingUI": "ApplicationMaster",
                "trackingUrl": f"{self.url}/proxy/{a.app_id}/", "applicationType": a.application_type,
                "startedTime": 1764400000000, "elapsedTime": 600000,
            })
        return {"apps": {"app": items} if items else None}

    def __enter__(self) -> "YarnResourceManager":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
