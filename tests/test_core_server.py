"""The exporter's own HTTP server when clients misbehave: idle and half-sent
connections, all connection slots busy, oversized heads. Loopback only; every
loop is bounded in count and time."""

import logging
import resource
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest
import requests

from sparkwatch import cli, httpserver
from sparkwatch.httpserver import DEFAULT_MAX_CONNECTIONS
from sparkwatch.web import serve
from testbed.exporter import wait_until_healthy
from testbed.procs import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent

IDLE = 1000        # connections that send nothing
HALF_SENT = 500    # connections that send part of a request head, never the end
HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
SMALL = 8          # threads an exporter may run besides its connection slots


def _wait_for(predicate, seconds: float, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def _threads(pid: int) -> int:
    return psutil.Process(pid).num_threads()


def _ensure_fds(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"needs {n} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


@contextmanager
def _connections(stack: ExitStack, port: int, n: int, payload: bytes = b"", budget: float = 20):
    """``n`` open connections to ``port`` that each sent ``payload``."""
    socks = []
    deadline = time.monotonic() + budget
    for _ in range(n):
        assert time.monotonic() < deadline, f"opened only {len(socks)} of {n} connections in {budget}s"
        s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        if payload:
            s.sendall(payload)
        socks.append(s)
    yield socks


@contextmanager
def _exporter_process(tmp_path, *flags):
    cfg = tmp_path / "empty.yml"
    cfg.write_text("{}\n")
    port = free_port()
    log = open(tmp_path / "exporter.log", "wb")
    p = subprocess.Popen([sys.executable, "-m", "sparkwatch", f"--config.file={cfg}",
                          f"--web.listen-address=127.0.0.1:{port}", *flags],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, p, 30, output=(tmp_path / "exporter.log").read_text)
        yield p, port, url
    finally:
        stop_process_group(p)
        log.close()


def _timed_get(url: str, **kw):
    t0 = time.monotonic()
    r = requests.get(url, timeout=5, **kw)
    return r, time.monotonic() - t0


def test_idle_and_half_sent_connections_starve_neither_metrics_nor_threads(tmp_path):
    _ensure_fds(IDLE + HALF_SENT + 256)
    with _exporter_process(tmp_path) as (p, port, url):
        baseline = _threads(p.pid)
        peak = baseline
        with ExitStack() as stack:
            with _connections(stack, port, IDLE), _connections(stack, port, HALF_SENT, HALF_REQUEST):
                peak = max(peak, _threads(p.pid))
                for path in ("/-/healthy", "/metrics", "/-/healthy", "/metrics"):
                    r, took = _timed_get(url + path)
                    assert r.status_code == 200 and took < 3, (path, r.status_code, took)
                    peak = max(peak, _threads(p.pid))
                assert "sparkwatch_build_info" in r.text
                for _ in range(10):
                    peak = max(peak, _threads(p.pid))
                    time.sleep(0.05)
        # the bound holds while the clients are connected ...
        assert peak <= DEFAULT_MAX_CONNECTIONS + SMALL, f"{peak} threads (baseline {baseline})"
        # ... and once they are gone, the exporter is back where it started
        assert _wait_for(lambda: _threads(p.pid) <= baseline, 10), (_threads(p.pid), baseline)
        assert _timed_get(url + "/metrics")[0].status_code == 200


# ---------------------------------------------------------------------------- in-process


class _Gate:
    """A WSGI app: /slow waits until the gate opens, everything else answers at once."""

    def __init__(self):
        self.open = threading.Event()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            self.open.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]


@contextmanager
def _server(app, **kw):
    httpd = serve(app, "127.0.0.1:0", **kw)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(10)


def _closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1024) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_connections_without_a_complete_request_are_closed_after_the_header_timeout():
    with _server(_Gate(), header_timeout=0.5) as (httpd, url), ExitStack() as stack:
        port = httpd.server_port
        with _connections(stack, port, 20) as idle, _connections(stack, port, 20, HALF_REQUEST) as half:
            assert requests.get(url + "/", timeout=5).status_code == 200
            assert _wait_for(lambda: all(_closed_by_peer(s) for s in idle + half), 5)


def test_when_every_slot_is_busy_a_request_is_answered_503_at_once_and_logged(caplog):
    caplog.set_level(logging.WARNING, logger="sparkwatch")
    gate = _Gate()
    baseline = threading.active_count()
    slots = 3
    with _server(gate, max_connections=slots) as (httpd, url):
        slow = [threading.Thread(target=requests.get, args=(url + "/slow",), kwargs={"timeout": 30}, daemon=True)
                for _ in range(slots)]
        try:
            for t in slow:
                t.start()
            assert _wait_for(lambda: httpd.busy_connections() == slots, 10)
            assert threading.active_count() <= baseline + 1 + 2 * slots  # serving thread, clients, workers
            for _ in range(3):
                r, took = _timed_get(url + "/fast")
                assert r.status_code == 503 and took < 1, (r.status_code, took)
            assert r.headers["Retry-After"] == "1" and r.headers["Server"] == httpserver.SERVER_SOFTWARE
            refused = [m for m in caplog.messages if "connection slots are busy" in m]
            assert len(refused) == 1, caplog.messages  # rate-limited: once, not per connection
            assert "--web.max-connections" in refused[0]
        finally:
            gate.open.set()
            for t in slow:
                t.join(30)
        assert _wait_for(lambda: httpd.busy_connections() == 0, 10)
        assert requests.get(url + "/fast", timeout=5).status_code == 200
    assert _wait_for(lambda: threading.active_count() <= baseline, 10), (threading.active_count(), baseline)


def test_an_oversized_request_head_is_refused():
    with _server(_Gate()) as (_, url):
        r = requests.get(url + "/", headers={"X-Big": "x" * (httpserver.MAX_HEAD_BYTES + 10)}, timeout=5)
    assert r.status_code == 431 and r.headers["Server"].startswith("sparkwatch/")


def test_listen_backlog_and_default_bound():
    with _server(_Gate()) as (httpd, _):
        assert httpd.request_queue_size >= 1024
        assert httpd.max_connections == DEFAULT_MAX_CONNECTIONS == cli.DEFAULT_MAX_CONNECTIONS == 128


def test_connection_slots_count_what_is_taken_and_refuse_beyond_their_size():
    slots = httpserver.Slots(2)
    assert slots.taken == 0
    assert slots.take() and slots.take() and slots.taken == 2
    assert not slots.take() and slots.taken == 2  # full: refused, not waited for
    slots.release()
    assert slots.taken == 1 and slots.take() and slots.taken == 2
    slots.release()
    slots.release()
    with pytest.raises(ValueError):  # a release without a take is a bug, as with BoundedSemaphore
        slots.release()
    assert slots.taken == 0
    with pytest.raises(ValueError):
        httpserver.Slots(0)


def test_max_connections_flag_is_validated(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--web.max-connections=0"])
    assert e.value.code == 2
    assert "--web.max-connections" in capsys.readouterr().err
    assert cli.serve_parser().parse_args(["--web.max-connections=7"]).max_connections == 7


def test_a_port_in_use_is_one_line_cannot_listen_without_a_traceback(tmp_path):
    cfg = tmp_path / "empty.yml"
    cfg.write_text("{}\n")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "sparkwatch", f"--config.file={cfg}",
                            f"--web.listen-address=127.0.0.1:{port}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sparkwatch: cannot listen on 127.0.0.1:{port}: "), p.stderr


class _SlowGate:
    """Basic authentication as the server sees it (sparkwatch.webconfig.Protected's
    interface), with a bcrypt check that waits until the test releases it."""

    headers = [("X-Frame-Options", "deny")]

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()

    def admit(self, path, header):
        return True if path == "/-/healthy" else (None if header else False)

    def verify(self, header):
        self.started.set()
        self.release.wait(30)
        return header == "Basic good"


def _send(port: int, path: str, header: str = "", source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    auth = f"Authorization: {header}\r\n" if header else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    return s


def _answer(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data


def test_credential_checks_wait_without_a_slot_and_a_full_queue_is_answered_429(monkeypatch):
    monkeypatch.setattr(httpserver, "AUTH_WAITING", 5)
    gate = _SlowGate()
    httpd = httpserver.Server(("127.0.0.1", 0), max_connections=2, gate=gate)
    httpd.set_app(_Gate())
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    port = httpd.server_port
    try:
        waiting = [_send(port, "/metrics", "Basic bad")]
        assert gate.started.wait(10)  # the first is in its check, the next wait behind it
        waiting += [_send(port, "/metrics", "Basic bad") for _ in range(httpserver.AUTH_WAITING_PER_CLIENT - 1)]
        good = _send(port, "/metrics", "Basic good", source="127.0.0.2")  # another client: room for it
        assert _wait_for(lambda: httpd.credential_checks_waiting() == 5, 10)  # in the check, or queued
        too_many = _answer(_send(port, "/metrics", "Basic bad"))       # a 5th from 127.0.0.1
        queue_full = _answer(_send(port, "/metrics", "Basic good", source="127.0.0.3"))  # 5 wait in all
        assert too_many.startswith(b"HTTP/1.0 429") and b"Retry-After: 1\r\n" in too_many, too_many
        assert b"X-Frame-Options: deny\r\n" in too_many and queue_full.startswith(b"HTTP/1.0 429")
        no_credentials = _answer(_send(port, "/metrics"))
        assert no_credentials.startswith(b"HTTP/1.0 401") and b"WWW-Authenticate: Basic\r\n" in no_credentials
        assert b"X-Frame-Options: deny\r\n" in no_credentials
        assert _answer(_send(port, "/-/healthy")).startswith(b"HTTP/1.0 200")
        assert _wait_for(lambda: httpd.busy_connections() == 0, 10)  # nothing waiting for a check holds a slot
        gate.release.set()
        answers = [_answer(s) for s in waiting]
        assert all(a.startswith(b"HTTP/1.0 401") for a in answers), answers
        assert _answer(good).startswith(b"HTTP/1.0 200")
    finally:
        gate.release.set()
        httpd.shutdown()
        httpd.server_close()
        t.join(10)
