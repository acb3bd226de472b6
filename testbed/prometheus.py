"""A real Prometheus (Debian's ``prometheus`` binary) for the tests, the lab and
the doctor: started on a loopback port with a configuration, rule files and,
optionally, a web configuration (basic auth), stopped with its process group;
and hours of history written into its storage before it starts
(``promtool tsdb create-blocks-from openmetrics``), which its rules then
evaluate as if it had scraped them.

    with prometheus_server({"scrape_configs": [...]}, [rules], workdir) as url:
        requests.get(url + "/api/v1/alerts")

    write_history(samples, workdir / "data")   # before prometheus_server(..., workdir)
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import requests
import yaml

from testbed.procs import free_port, stop_process_group

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def available() -> bool:
    """Whether the prometheus binary (and promtool) are installed."""
    return Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()


def command(config_file: Path, data_dir: Path, port: int, *extra: str) -> List[str]:
    """Prometheus' command line: on 127.0.0.1:``port``, its storage in ``data_dir``."""
    return [PROMETHEUS, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn", *extra]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0,
               auth: Optional[Tuple[str, str]] = None) -> None:
    """Until ``/-/ready`` answers 200; RuntimeError (with the log's tail) if Prometheus exits or
    the timeout passes."""
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            if requests.get(url + "/-/ready", timeout=2, auth=auth).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"prometheus not ready within {timeout:.0f} s")
        time.sleep(0.3)


@contextmanager
def prometheus_server(config: dict, rule_files: Sequence[Path], workdir: Path, web_config: Optional[dict] = None,
                      auth: Optional[Tuple[str, str]] = None) -> Iterator[str]:
    """A Prometheus with ``config`` (its ``rule_files`` set to ``rule_files``), its storage in
    ``workdir/data`` (history written there before is kept), ``web_config`` as its
    ``--web.config.file`` (``auth``: the user and password the readiness check sends). Yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = dict(config, rule_files=[str(p) for p in rule_files])
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    extra = []
    if web_config is not None:
        (workdir / "web.yml").write_text(yaml.safe_dump(web_config))
        extra.append(f"--web.config.file={workdir / 'web.yml'}")
    log_path = workdir / "prometheus.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(command(workdir / "prometheus.yml", workdir / "data", port, *extra),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, log_path, auth=auth)
        yield url
    finally:
        stop_process_group(proc, grace=20)
        log.close()


# --------------------------------------------------------------------------
# History


Sample = Tuple[str, Dict[str, str], float, float]  # metric, labels, value, Unix time


def _openmetrics_labels(labels: Dict[str, str]) -> str:
    esc = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(esc.items())) + "}"


def write_history(samples: Iterable[Sample], data_dir: Path, workdir: Optional[Path] = None) -> None:
    """Write ``samples`` into the storage ``data_dir`` of a Prometheus that has not started yet, as
    blocks it loads when it starts (``promtool tsdb create-blocks-from openmetrics``). Give every
    series the ``job`` and ``instance`` labels a scrape would add, to continue it by scraping."""
    workdir = workdir or data_dir.parent
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for metric, labels, value, at in sorted(samples, key=lambda s: s[3]):
        v = "NaN" if math.isnan(value) else repr(float(value))
        lines.append(f"{metric}{_openmetrics_labels(labels)} {v} {at:.3f}")
    lines.append("# EOF")
    om = workdir / "history.om"
    om.write_text("\n".join(lines) + "\n")
    r = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data_dir)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"promtool create-blocks-from openmetrics failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
