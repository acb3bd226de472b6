"""Run the real exporter in-process on a free port and read what it exports."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.web import App, serve


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
    from exporter.collector import MetricSet, ScrapeContext

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
