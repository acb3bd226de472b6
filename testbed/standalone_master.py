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
  "Application Detail UI" link replaced.

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
from urllib.parse import parse_qs, urlsplit

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


@dataclass
class MasterApp:
    app_id: str
    name: str = "app"
    #: the driver UI the master links ("" for spark.ui.enabled=false)
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


class StandaloneMaster:
    def __init__(self, version: Optional[str] = None):
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
        master = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                master.requests.append((self.path, dict(self.headers)))
                parts = urlsplit(self.path)
                status, body, ctype = master.answer(parts.path, parse_qs(parts.query))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
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

    def json_state(self) -> bytes:
        rec = self.state["activeapps"][0]
        active = [dict(rec, id=a.app_id, name=a.name, state=a.state) for a in self.apps]
        return json.dumps(dict(self.state, activeapps=active)).encode()

    def _fill(self, text: str, app: MasterApp) -> str:
        text = text.replace(self._rec_id, html.escape(app.app_id))
        text = text.replace(f'href="{self._rec_ui}"', f'href="{html.escape(app.ui)}"')
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
