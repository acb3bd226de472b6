"""Run the real exporter (in-process, or as a process of its own) on a free port
and read what it exports."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sparkwatch.config import parse_config
from sparkwatch.httpclient import requests_in_flight
from sparkwatch.web import App, serve


@contextmanager
def running_exporter(config: dict) -> Iterator[Tuple[str, App]]:
    """Start the exporter with ``config`` (a dict as the YAML file would hold).

    Yields (base_url, app)."""
    app = App(parse_config(config, "test config"))
    httpd = serve(app, "127.0.0.1:0")
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", app
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()


@contextmanager
def exporter_process(config: dict, *, tree: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                     log_level: str = "warn", ready_timeout: float = 20.0) -> Iterator[Tuple[str, subprocess.Popen]]:
    """``python -m sparkwatch`` in a process of its own (as users run it; what the
    benchmarks measure), with ``config`` written to a temporary file, listening on a
    free port of 127.0.0.1. ``tree``: the source tree whose exporter runs (default:
    this one); ``env``: variables added to the environment. Yields (base_url, process)
    once ``/-/healthy`` answers; stops the process at the end."""
    from .procs import free_port, stop_process_group

    root = tree or str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory(prefix="sparkwatch-exporter-") as d:
        cfg = Path(d) / "sparkwatch.yml"
        cfg.write_text(yaml.safe_dump(config))
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "sparkwatch", "--config.file", str(cfg),
                                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", log_level],
                                cwd=root, env=dict(os.environ, **(env or {})), start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, proc, ready_timeout)
            yield base, proc
        finally:
            stop_process_group(proc, grace=10)


def wait_until_healthy(base: str, proc: subprocess.Popen, timeout: float = 60.0,
                       output: Callable[[], str] = lambda: "") -> None:
    """Return once the exporter process ``proc`` answers ``base/-/healthy`` with 200.
    Fails if it exits first (saying ``output()``, e.g. its stderr) or has not
    answered within ``timeout`` seconds of wall-clock time (start-up is slower
    on a busy machine)."""
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the exporter exited with {proc.returncode} before it was ready: {output()}")
        try:
            if requests.get(base + "/-/healthy", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"the exporter did not answer on {base} within {timeout:g}s")
        time.sleep(0.05)


Sample = Tuple[str, Dict[str, str], float]


def scrape(base_url: str, path: str = "/metrics", timeout_header: Optional[float] = None,
           client_timeout: float = 60) -> str:
    headers = {}
    if timeout_header is not None:
        headers["X-Prometheus-Scrape-Timeout-Seconds"] = str(timeout_header)
    r = requests.get(base_url + path, headers=headers, timeout=client_timeout)
    r.raise_for_status()
    return r.text


def samples(text: str) -> List[Sample]:
    """Every sample in an exposition as (name, labels, value)."""
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append((s.name, dict(s.labels), s.value))
    return out


def count_series(text: str) -> int:
    """Series in a text exposition: its sample lines."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def find(text_or_samples, name: str, **labels) -> List[Sample]:
    ss = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    return [s for s in ss if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]


def value(text_or_samples, name: str, **labels) -> float:
    """The one sample matching name and labels; fails if there is not exactly one."""
    found = find(text_or_samples, name, **labels)
    assert len(found) == 1, f"expected one {name}{labels}, found {found}"
    return found[0][2]


def collect_once(collector, seconds: float = 20.0):
    """Run one collector's collect() directly (no HTTP) and return its MetricSet."""
    from sparkwatch.collector import MetricSet, ScrapeContext

    out = MetricSet()
    collector.collect(out, ScrapeContext.within(seconds))
    return out


def collected_value(out, name: str, **labels):
    """The value of the sample ``name`` with exactly ``labels`` in a MetricSet, or None."""
    for d, ss in out.samples.items():
        if d.exposed_name != name:
            continue
        for key, v in ss.items():
            if dict(zip(d.labels, key)) == labels:
                return v
    return None


def scrape_threads() -> List[str]:
    """What still works for a scrape: collector threads, the request watchdog (it
    exists only while a request is in flight) and requests in flight. The spark
    targets' request threads (``sparkwatch-spark-<target>-io``) are kept, idle,
    between scrapes; a request they make is counted in flight."""
    working = [t.name for t in threading.enumerate() if t.name.startswith(("scrape-", "sparkwatch-http-deadline"))]
    n = requests_in_flight()
    return working + [f"{n} requests in flight"] * bool(n)


def no_scrape_threads_within(seconds: float = 5.0) -> bool:
    """Whether the scrape work ends within ``seconds`` (a leaked thread or request never does)."""
    end = time.monotonic() + seconds
    while scrape_threads() and time.monotonic() < end:
        time.sleep(0.02)
    return not scrape_threads()
