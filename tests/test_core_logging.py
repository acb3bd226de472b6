"""What a target's bytes do to the exporter's log: a real loopback server answers
with headers that do not parse (urllib3 logs a warning with a traceback and the
target's bytes at every request); the log stays in sparkwatch's format, one
escaped line per record, and the warning is rate-limited with a count."""

import io
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

from sparkwatch import logsafe
from testbed.exporter import running_exporter, wait_until_healthy
from testbed.procs import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent

#: the sparkwatch line: ts, level, caller, an escaped msg, optionally suppressed=N and an escaped exc
LINE = re.compile(r"^ts=\S+ \S+ level=[A-Z]+ caller=\w+ msg=(['\"]).*\1( suppressed=\d+)?( exc=(['\"]).*\4)?$")
#: a header line without a colon: urllib3 logs "Failed to parse headers ... unparsed data: '...'"
HOSTILE = b"X-Evil\x1b[31m\x07 ts=forged level=ERROR msg=owned\r\n"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + HOSTILE +
          b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")


@contextmanager
def malformed_headers_server():
    """A raw-socket server on 127.0.0.1 answering every request with ANSWER; yields (url, requests served)."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    served = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    conn.sendall(ANSWER)
                    served.append(head.split(b"\r\n", 1)[0])
                except OSError:
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}", served
    finally:
        stop.set()
        t.join(5)
        srv.close()


def _check_lines(text: str):
    lines = text.splitlines()
    for line in lines:
        assert LINE.match(line), f"a line outside sparkwatch's format: {line!r}"
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), f"raw control bytes: {line!r}"
    return lines


def test_a_target_with_malformed_headers_cannot_write_outside_the_log_format(tmp_path):
    with malformed_headers_server() as (target, served):
        cfg = tmp_path / "sparkwatch.yml"
        cfg.write_text(yaml.safe_dump({"spark": [{"name": "evil", "url": target}]}))
        port = free_port()
        err = tmp_path / "stderr"
        with open(err, "wb") as f:
            p = subprocess.Popen([sys.executable, "-m", "sparkwatch", f"--config.file={cfg}",
                                  f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            t0 = time.monotonic()
            try:
                wait_until_healthy(base, p, 30, output=err.read_text)
                for _ in range(5):
                    assert requests.get(base + "/metrics", timeout=30).status_code == 200
            finally:
                stop_process_group(p)
            elapsed = time.monotonic() - t0
    assert len(served) >= 5  # every scrape reached the server
    text = err.read_bytes().decode("utf-8", "replace")
    lines = _check_lines(text)
    assert "Traceback" not in text and "\x1b" not in text
    warned = [line for line in lines if "Failed to parse headers" in line]
    # once per interval (60 s): the first at once, the repeats held back
    assert 1 <= len(warned) <= 1 + elapsed // logsafe.DEFAULT_INTERVAL, warned
    assert "x1b[31m" in warned[0] and "ts=forged" in warned[0] and "caller=connection" in warned[0]  # escaped


def test_the_repeated_warning_is_logged_once_per_interval_with_the_number_held_back():
    """The same, in-process, with the CLI's logging set up on a buffer and a clock the test moves."""
    clock = [0.0]
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.level
    handler = logsafe.configure(logging.INFO, stream=buf, interval=60, clock=lambda: clock[0])
    try:
        with malformed_headers_server() as (target, served):
            with running_exporter({"spark": [{"name": "evil", "url": target}]}) as (base, _):
                for _ in range(4):
                    assert requests.get(base + "/metrics", timeout=30).status_code == 200
                first_phase = len(served)
                clock[0] += 61
                assert requests.get(base + "/metrics", timeout=30).status_code == 200
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        logging.captureWarnings(False)
    warned = [line for line in _check_lines(buf.getvalue()) if "Failed to parse headers" in line]
    assert len(warned) == 2, warned
    assert "suppressed" not in warned[0]
    assert warned[1].split(" exc=")[0].endswith(f"suppressed={first_phase - 1}"), warned[1]
    assert all("Traceback" not in w and "exc='HeaderParsingError: " in w.replace('"', "'") for w in warned)
