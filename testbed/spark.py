"""Real Spark applications for the tests, the recorder and the benchmark, and a replay
server for recorded responses.

``spark_app(...)`` starts ``testbed/sparkapps/streaming_app.py`` as a subprocess
(in its own process group) with the Python of a venv that has pyspark, on a
free ``spark.ui.port``; it waits for the application's "ready" line (UI up and
a streaming batch with state rows done) and for the REST API, and kills the
whole process tree on exit, failure included.

``ReplayServer`` serves recorded responses (``tests/data/spark-<version>/``,
written by ``scripts/record_spark_responses.py``) over HTTP, so the collector
can be tested fast and without Spark.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union
from urllib.parse import urlsplit

import requests

from .procs import free_port, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
APP_SCRIPT = Path(__file__).resolve().parent / "sparkapps" / "streaming_app.py"
#: the recorded responses: test data, read by the tests, written by scripts/record_spark_responses.py
DATA = ROOT / "tests" / "data"

#: Spark release line -> the Python of the venv that has that pyspark
SPARK_PYTHONS: Dict[str, Path] = {
    "4.0": ROOT / ".venv" / "bin" / "python",
    "3.5": ROOT / ".venv-spark35" / "bin" / "python",
}
SPARK_VERSIONS = list(SPARK_PYTHONS)


def spark_home(python: Path) -> str:
    """The SPARK_HOME of the pyspark that ``python`` (a venv's interpreter) imports."""
    out = subprocess.run([str(python), "-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def loopback_env(home: Optional[str] = None) -> dict:
    """The environment of a Spark JVM of the testbed (an application, a master, a
    worker, a history server): it binds and advertises loopback only, never the
    machine's own address. ``home``: the SPARK_HOME to use; None drops any
    SPARK_HOME the host has (spark-submit of the venv's pyspark finds its own)."""
    env = dict(os.environ)
    env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="localhost", SPARK_NO_DAEMONIZE="1")
    if home is None:
        env.pop("SPARK_HOME", None)
    else:
        env["SPARK_HOME"] = home
    return env


@dataclass
class SparkApp:
    version: str  # "4.0" / "3.5"
    url: str  # the driver UI
    app_id: str
    port: int
    process: subprocess.Popen
    args: List[str]
    log_path: str

    def log_tail(self, n: int = 40) -> str:
        try:
            return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""


@contextmanager
def spark_app(version: str = "4.0", python: Optional[Path] = None, metrics: bool = True,
              periodic_gc: Optional[str] = None, blocking: Optional[str] = None,
              failing_job: bool = False, slow_job: bool = False, finished_jobs: int = 0,
              stream: bool = True, event_log: Optional[str] = None, master: Optional[str] = None,
              app_name: Optional[str] = None, conf: Optional[Dict[str, str]] = None,
              timeout: float = 600.0) -> Iterator[SparkApp]:
    """Start the test application; yields a :class:`SparkApp` once it is ready."""
    python = python or SPARK_PYTHONS[version]
    port = free_port()
    args = [str(python), str(APP_SCRIPT), "--ui-port", str(port), "--metrics", "on" if metrics else "off"]
    if periodic_gc is not None:
        args += ["--periodic-gc", periodic_gc]
    if blocking is not None:
        args += ["--blocking", blocking]
    if failing_job:
        args.append("--failing-job")
    if slow_job:
        args.append("--slow-job")
    if finished_jobs:
        args += ["--finished-jobs", str(finished_jobs)]
    if not stream:
        args.append("--no-stream")
    if event_log:
        args += ["--event-log", str(event_log)]
    if master:
        args += ["--master", master]
    if app_name:
        args += ["--app-name", app_name]
    for k, v in (conf or {}).items():
        args += ["--conf", f"{k}={v}"]
    env = loopback_env()  # the venv's pyspark, whatever SPARK_HOME the host has
    env.update(PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python), PYTHONUNBUFFERED="1")
    log = tempfile.NamedTemporaryFile(prefix=f"sparkapp-{version}-", suffix=".log", delete=False)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            env=env, cwd=str(ROOT), start_new_session=True, text=True)
    ready = threading.Event()
    found: Dict[str, str] = {}

    def read_stdout():
        for line in proc.stdout:  # type: ignore[union-attr]
            log.write(line.encode())
            log.flush()
            if line.startswith("SPARKAPP READY "):
                found["app_id"] = line.split()[2]
                ready.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    app = SparkApp(version, f"http://127.0.0.1:{port}", "", port, proc, args, log.name)
    try:
        end = time.monotonic() + timeout
        while not ready.wait(0.5):
            if proc.poll() is not None:
                raise RuntimeError(f"Spark application exited with {proc.returncode}:\n{app.log_tail()}")
            if time.monotonic() > end:
                raise RuntimeError(f"Spark application not ready within {timeout:.0f}s:\n{app.log_tail()}")
        app.app_id = found["app_id"]
        # the REST API answers once the UI is bound; it is by now, but be sure
        while True:
            try:
                r = requests.get(app.url + "/api/v1/applications", timeout=5)
                if r.status_code == 200 and any(a.get("id") == app.app_id for a in r.json()):
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"Spark UI at {app.url} not answering:\n{app.log_tail()}")
            time.sleep(0.5)
        yield app
    finally:
        stop_process_group(proc, grace=15)
        log.close()
        try:
            os.unlink(log.name)
        except OSError:
            pass


@contextmanager
def history_server(python: Path, log_dir: str, timeout: float = 180.0) -> Iterator[str]:
    """A real Spark history server (the venv's pyspark) reading ``log_dir``,
    on a free port, refreshing its listing every second. Yields its URL."""
    home = spark_home(python)
    port = free_port()
    env = loopback_env(home)
    env.update(SPARK_HISTORY_OPTS=" ".join([
        f"-Dspark.history.fs.logDirectory=file://{log_dir}", f"-Dspark.history.ui.port={port}",
        "-Dspark.history.fs.update.interval=1s", "-Dspark.port.maxRetries=0"]))
    log = tempfile.NamedTemporaryFile(prefix="historyserver-", suffix=".log", delete=False)
    proc = subprocess.Popen([os.path.join(home, "bin", "spark-class"),
                             "org.apache.spark.deploy.history.HistoryServer"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url + "/api/v1/applications", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("history server did not start:\n" + Path(log.name).read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc, grace=15)
        log.close()
        try:
            os.unlink(log.name)
        except OSError:
            pass


# --------------------------------------------------------------------------
# Recorded responses

#: what the recorder fetches, and the file each answer is stored in
def recording_requests(app_id: str) -> List[Tuple[str, Dict[str, Union[str, List[str]]], str]]:
    a = f"/api/v1/applications/{app_id}"
    return [
        ("/api/v1/applications", {"status": "running"}, "applications.json"),
        (a + "/jobs", {"status": "running"}, "jobs.json"),
        (a + "/stages", {"status": ["active", "failed"]}, "stages.json"),
        (a + "/executors", {}, "executors.json"),
        (a + "/environment", {}, "environment.json"),
        ("/metrics/json/", {}, "metrics.json"),
    ]


def recording_dirs() -> List[Path]:
    return sorted(p for p in DATA.glob("spark-*") if (p / "index.json").is_file())


def load_recording(d: Path) -> Dict[str, object]:
    """index.json plus every recorded body, decoded: {"index": ..., "<file>": json}."""
    index = json.loads((d / "index.json").read_text())
    out: Dict[str, object] = {"index": index}
    for r in index["requests"]:
        out[r["file"]] = json.loads((d / r["file"]).read_bytes())
    return out


Route = Tuple[int, bytes, str]  # status, body, content type


def routes_from_recording(d: Path, prefix: str = "") -> Dict[str, Route]:
    """Path (without query) -> recorded answer. ``prefix`` mounts it below a path
    (as a YARN or Livy proxy would)."""
    index = json.loads((d / "index.json").read_text())
    routes = {}
    for r in index["requests"]:
        routes[prefix + r["path"]] = (200, (d / r["file"]).read_bytes(), "application/json")
    return routes


def merged_routes(dirs: List[Path], prefix: str = "") -> Dict[str, Route]:
    """Several recordings as one server holding several applications (a history
    server view): the application lists and servlet answers are merged."""
    routes: Dict[str, Route] = {}
    apps: list = []
    servlet: Dict[str, dict] = {}
    for d in dirs:
        for path, route in routes_from_recording(d, prefix).items():
            if path == prefix + "/api/v1/applications":
                apps += json.loads(route[1])
            elif path == prefix + "/metrics/json/":
                for k, v in json.loads(route[1]).items():
                    if isinstance(v, dict):
                        servlet.setdefault(k, {}).update(v)
                    else:
                        servlet[k] = v
            else:
                routes[path] = route
    routes[prefix + "/api/v1/applications"] = (200, json.dumps(apps).encode(), "application/json")
    routes[prefix + "/metrics/json/"] = (200, json.dumps(servlet).encode(), "application/json")
    return routes


def _path_only(raw: str) -> str:
    return urlsplit(raw).path


class ReplayServer:
    """A local HTTP server answering from ``routes`` (path -> (status, body, type));
    any other path is a 404. ``requests`` logs every path asked for. ``routes``
    may be changed while it runs (to break one endpoint). ``key`` makes the route
    key of a request's raw path (by default the path without its query)."""

    def __init__(self, routes: Dict, key: Callable[[str], object] = _path_only):
        self.routes = dict(routes)
        self.requests: List[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                route = server.routes.get(key(self.path))
                if route is None:
                    status, body, ctype = 404, b"no such path\n", "text/plain"
                else:
                    status, body, ctype = route
                if callable(body):
                    body = body()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ReplayServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
