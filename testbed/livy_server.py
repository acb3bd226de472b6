"""A Livy server stand-in for the tests, the lab and the benchmark: Livy's REST
contract, quirks and faults.

Livy itself needs Spark on YARN to do anything useful, so this is the one
place where the tests use a fake. It follows Livy's servlets exactly
(org.apache.livy.server.SessionServlet, BatchSessionServlet,
InteractiveSessionServlet, LivyServer's version servlet and the Dropwizard
admin servlet mounted at /metrics):

- ``GET /batches`` and ``/sessions``: ``from`` (default 0) and ``size``
  (default 100, no upper bound) slice the server's sessions in insertion order
  (``sessions.view(from, from + size)``); ``total`` counts every session held.
  A ``from`` or ``size`` that is not an integer is a 500 (``_.toInt`` throws).
- Item shapes by version: batches have ``id, state, appId, appInfo, log``
  (0.3 to 0.5), plus ``name`` (0.6), plus ``owner, proxyUser`` (0.7 on);
  interactive sessions have ``id, appId, owner, proxyUser, state, kind,
  appInfo, log``, plus ``name`` from 0.6. Optional values are JSON null.
- ``GET /version``: ``{"version", "user", "revision", "branch", "date", "url"}``.
- ``GET /metrics/threads``: a Dropwizard thread dump (text/plain), with one
  ``yarnAppMonitorThread-...`` thread per session marked as monitored.

Faults (``server.fault = ...``, optionally limited to paths starting with
``server.fault_path``): ``"500"``, ``"html"`` (a proxy's HTML page, status
200), ``"truncated"`` (a JSON body cut off mid-way), ``"hang"`` (no answer
until the server stops), ``"401"``.

``server.between_pages`` is called (under the server's lock, with the kind and
the ``from`` just served) after every list request: tests use it to delete
sessions or change their states while the collector pages through.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

KIND_PATHS = {"/batches": "batch", "/sessions": "interactive"}


def _vt(version: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in version.split("-")[0].split(".")[:2])


class LivyState:
    def __init__(self, version: str = "0.7.1-incubating"):
        self.version = version
        self.sessions: Dict[str, "OrderedDict[int, dict]"] = {"batch": OrderedDict(), "interactive": OrderedDict()}
        self.next_id = {"batch": 0, "interactive": 0}
        self.extra_threads = 20  # jetty, GC, session gc, ... threads a real Livy JVM has

    def add(self, kind: str, n: int = 1, state: str = "running", app: bool = True, ui_base: Optional[str] = None,
            monitored: bool = False) -> List[int]:
        ids = []
        for _ in range(n):
            sid = self.next_id[kind]
            self.next_id[kind] += 1
            app_id = f"application_1700000000000_{sid:04d}" if app else None
            self.sessions[kind][sid] = {
                "id": sid,
                "state": state,
                "appId": app_id,
                "ui": (f"{ui_base}" if ui_base else (f"http://node1:8088/proxy/{app_id}/" if app_id else None)),
                "owner": "etl" if sid % 2 else None,
                "proxyUser": None,
                "name": f"job-{sid}" if sid % 3 else None,
                "kind": "pyspark",
                "monitored": monitored,
            }
            ids.append(sid)
        return ids

    def view(self, kind: str, s: dict) -> dict:
        v = _vt(self.version)
        app_info = {"driverLogUrl": None, "sparkUiUrl": s["ui"]}
        if kind == "batch":
            item = {"id": s["id"]}
            if v >= (0, 6):
                item["name"] = s["name"]
            if v >= (0, 7):
                item["owner"] = s["owner"]
                item["proxyUser"] = s["proxyUser"]
            item.update({"state": s["state"], "appId": s["appId"], "appInfo": app_info,
                         "log": ["stdout: ", "\nstderr: "]})
            return item
        item = {"id": s["id"]}
        if v >= (0, 6):
            item["name"] = s["name"]
        item.update({"appId": s["appId"], "owner": s["owner"], "proxyUser": s["proxyUser"], "state": s["state"],
                     "kind": s["kind"], "appInfo": app_info, "log": []})
        return item

    def thread_dump(self) -> str:
        lines = []
        tid = 1
        for name in ["main", "Reference Handler", "Finalizer", "session gc thread"] + [
            f"qtp12345-{i}" for i in range(self.extra_threads - 4)
        ]:
            lines.append(f'"{name}" id={tid} state=RUNNABLE\n    at java.lang.Object.wait(Native Method)\n')
            tid += 1
        for kind in self.sessions:
            for s in self.sessions[kind].values():
                if s["monitored"]:
                    lines.append(
                        f'"yarnAppMonitorThread-{s["appId"]}" id={tid} state=TIMED_WAITING\n'
                        "    at java.lang.Thread.sleep(Native Method)\n"
                        "    at org.apache.livy.utils.SparkYarnApp$$anonfun$1.apply$mcV$sp(SparkYarnApp.scala:261)\n"
                    )
                    tid += 1
        return "\n".join(lines) + "\n"


class LivyServer:
    def __init__(self, state: LivyState):
        self.state = state
        self.lock = threading.Lock()
        self.fault: Optional[str] = None
        self.fault_path: str = ""
        self.between_pages: Optional[Callable[[str, int], None]] = None
        self.requests: List[Tuple[str, Dict[str, str]]] = []
        self.thread_dump_enabled = True
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *a):
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    # ----------------------------------------------------------------- serving

    def _send(self, h, status: int, body: bytes, ctype: str = "application/json", length: Optional[int] = None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h) -> None:
        parts = urlsplit(h.path)
        path = parts.path.rstrip("/") or "/"
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((path, params))
            fault = self.fault if path.startswith(self.fault_path) else None
        if fault == "hang":
            self._stop.wait(120)
            return
        if fault == "500":
            return self._send(h, 500, b'{"msg": "java.lang.OutOfMemoryError: GC overhead limit exceeded"}')
        if fault == "401":
            return self._send(h, 401, b"<html><body>Authentication required</body></html>", "text/html")
        if fault == "html":
            return self._send(h, 200, b"<!DOCTYPE html><html><head><title>Proxy</title></head><body>"
                                      b"This is a proxy warning page.</body></html>", "text/html")
        try:
            status, body, ctype = self._route(path, params)
        except ValueError:  # Scala's toInt throwing: Livy answers 500
            status, body, ctype = 500, b'{"msg": "For input string"}', "application/json"
        if fault == "truncated" and len(body) > 10:
            cut = body[: len(body) // 2]
            # announce the full length, send half, close: the client sees a cut-off body
            self._send(h, status, cut, ctype, length=len(body))
            h.close_connection = True
            return
        self._send(h, status, body, ctype)

    def _route(self, path: str, params: Dict[str, str]):
        st = self.state
        if path == "/version":
            return 200, json.dumps({"version": st.version, "user": "livy", "revision": "abc123",
                                    "branch": "HEAD", "date": "2020-01-01", "url": "https://github.com/apache/incubator-livy"}
                                   ).encode(), "application/json"
        if path in KIND_PATHS:
            kind = KIND_PATHS[path]
            frm = int(params.get("from", "0"))
            size = int(params.get("size", "100"))
            with self.lock:
                all_sessions = list(st.sessions[kind].values())
                total = len(all_sessions)
                page = [st.view(kind, s) for s in all_sessions[max(0, frm): max(0, frm + size)]]
                body = json.dumps({"from": frm, "total": total, "sessions": page}).encode()
                if self.between_pages is not None:
                    self.between_pages(kind, frm)
            return 200, body, "application/json"
        if path == "/metrics/threads" and self.thread_dump_enabled:
            with self.lock:
                return 200, st.thread_dump().encode(), "text/plain"
        return 404, b'{"msg": "not found"}', "application/json"

    # --------------------------------------------------------------- lifecycle

    def start(self) -> "LivyServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def list_requests(self, path: str) -> List[Dict[str, str]]:
        with self.lock:
            return [p for (q, p) in self.requests if q == path]


@contextmanager
def livy_server(version: str = "0.7.1-incubating") -> Iterator[LivyServer]:
    srv = LivyServer(LivyState(version)).start()
    try:
        yield srv
    finally:
        srv.stop()


def main(argv=None) -> int:
    """Serve a stand-in in its own process (the benchmark uses this, so that the
    server's JSON encoding does not share a GIL with the exporter it measures).
    Prints the URL, then serves until stdin closes."""
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="0.7.1-incubating")
    ap.add_argument("--success", type=int, default=0)
    ap.add_argument("--dead", type=int, default=0)
    ap.add_argument("--running", type=int, default=0, help="running batches, each with a yarnAppMonitorThread")
    ap.add_argument("--idle", type=int, default=0, help="idle interactive sessions")
    args = ap.parse_args(argv)
    srv = LivyServer(LivyState(args.version))
    srv.state.add("batch", args.success, state="success")
    srv.state.add("batch", args.dead, state="dead")
    srv.state.add("batch", args.running, state="running", monitored=True)
    srv.state.add("interactive", args.idle, state="idle")
    srv.start()
    print(srv.url, flush=True)
    try:
        sys.stdin.read()
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
