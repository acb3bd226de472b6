"""A real Spark history server on loopback, replaying the event logs of a folder.

    with history_server("4.0", log_dir) as hs:
        hs.url            # http://127.0.0.1:P   (a spark target's url)

It is the history server of the venv's pyspark (``spark-class
org.apache.spark.deploy.history.HistoryServer``), reading
``spark.history.fs.logDirectory=file:<log_dir>`` with a short
``spark.history.fs.update.interval``; it binds and advertises loopback only
(:func:`testbed.spark.loopback_env`). The context manager waits until the
server lists ``expect_apps`` applications and stops its process group on exit.

The history server takes an application's ``lastUpdated`` from the
modification time of its event log: :func:`copy_event_logs` copies logs into
a folder with the times a test chooses (a never-closed log whose file is recent
but whose application started years ago is made on purpose that way).

:class:`HistoryReplay` serves what :mod:`scripts.record_history_server` recorded
of such a server, query string included (a history server answers
``/applications`` and ``/applications?status=running`` differently).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional
from urllib.parse import parse_qsl, urlsplit

import requests

from .procs import free_port, stop_process_group
from .spark import DATA, SPARK_PYTHONS, ReplayServer, loopback_env, spark_home

#: Spark's own test event logs (tests/data/spark-events/ORIGIN.md)
EVENT_LOGS = DATA / "spark-events"


@dataclass
class HistoryServer:
    version: str
    url: str
    log_dir: str
    log_path: str
    process: subprocess.Popen

    def log_tail(self, n: int = 40) -> str:
        try:
            return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])
        except OSError:
            return ""


def copy_event_logs(dest: Path, mtimes: Dict[str, float], src: Path = EVENT_LOGS) -> Path:
    """Copy the event logs named in ``mtimes`` from ``src`` into ``dest``, each with
    that modification time (Unix seconds): the history server's ``lastUpdated``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, mtime in mtimes.items():
        shutil.copyfile(src / name, dest / name)
        os.utime(dest / name, (mtime, mtime))
    return dest


@contextmanager
def history_server(version: str, log_dir: Path, expect_apps: int = 1, python: Optional[Path] = None,
                   timeout: float = 180.0) -> Iterator[HistoryServer]:
    """A history server of pyspark ``version`` replaying ``log_dir``; yields once it lists
    at least ``expect_apps`` applications."""
    python = python or SPARK_PYTHONS[version]
    home = spark_home(python)
    env = loopback_env(home)
    port = free_port()
    opts = [f"-Dspark.history.fs.logDirectory=file:{Path(log_dir).resolve()}",
            f"-Dspark.history.ui.port={port}", "-Dspark.history.fs.update.interval=1s",
            "-Dspark.history.fs.cleaner.enabled=false", "-Dspark.ui.host=127.0.0.1"]
    env["SPARK_HISTORY_OPTS"] = " ".join(opts)
    env["SPARK_DAEMON_MEMORY"] = "512m"
    log = tempfile.NamedTemporaryFile(prefix=f"spark-history-{version}-", suffix=".log", delete=False)
    cmd = [os.path.join(home, "bin", "spark-class"), "org.apache.spark.deploy.history.HistoryServer"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    hs = HistoryServer(version, f"http://127.0.0.1:{port}", str(log_dir), log.name, proc)
    try:
        end = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the history server exited with {proc.returncode}:\n{hs.log_tail()}")
            try:
                r = requests.get(hs.url + "/api/v1/applications", timeout=5)
                if r.status_code == 200 and len(r.json()) >= expect_apps:
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"the history server listed fewer than {expect_apps} applications "
                                   f"within {timeout:.0f}s:\n{hs.log_tail()}")
            time.sleep(0.5)
        yield hs
    finally:
        stop_process_group(proc)
        log.close()


# --------------------------------------------------------------------------
# Recorded answers


def history_recordings() -> List[Path]:
    """The recorded history-server answers, ``tests/data/history-<spark version>/``."""
    return sorted(p for p in DATA.glob("history-*") if (p / "index.json").is_file())


def request_key(path: str, params) -> tuple:
    """A request as the replay finds it: its path and its sorted query pairs."""
    pairs = params.items() if isinstance(params, dict) else params
    flat = []
    for k, v in pairs:
        for one in (v if isinstance(v, list) else [v]):
            flat.append((str(k), str(one)))
    return path, tuple(sorted(flat))


def _history_key(raw: str) -> tuple:
    u = urlsplit(raw)
    # limit: the recording holds fewer applications than any limit the collector asks for
    return request_key(u.path, [(k, v) for k, v in parse_qsl(u.query) if k != "limit"])


class HistoryReplay(ReplayServer):
    """A local HTTP server answering the recorded requests of one history-server
    recording (by path and query, ``limit`` aside); anything else is a 404, as the
    history server's own answer to an unknown application is."""

    def __init__(self, d: Path):
        self.index = json.loads((d / "index.json").read_text())
        super().__init__({request_key(r["path"], r["params"]): (200, (d / r["file"]).read_bytes(), "application/json")
                          for r in self.index["requests"]}, key=_history_key)
