#!/usr/bin/env python3
"""Record what a real Spark standalone master shows of its running applications,
for tests/test_spark_discovery.py: tests/data/standalone-<version>/

    master.json      GET /json/              (the master's state: activeapps, workers, ...)
    master.html      GET /                   (its home page: each running application's driver UI link)
    app-<id>.html    GET /app/?appId=<id>    (an application's page: "Application Detail UI")
    expected.json    application id -> the driver UI the application itself reports

Run from the repository root after ./scripts/install-test-deps:

    .venv/bin/python scripts/record_standalone_master.py [--version 4.0 --version 3.5]

It starts a master, a worker and one application per Spark line on loopback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.cluster import standalone_cluster  # noqa: E402
from testbed.spark import spark_app  # noqa: E402


def record(version: str, out_root: Path) -> Path:
    with standalone_cluster(version) as c:
        with spark_app(version, master=c.master_url, app_name="sparkwatch-recorded") as app:
            state = requests.get(c.web_url + "/json/", timeout=30).json()
            home = requests.get(c.web_url + "/", timeout=30).text
            app_page = requests.get(c.web_url + "/app/", params={"appId": app.app_id}, timeout=30).text
            pyspark_version = requests.get(app.url + "/api/v1/applications", timeout=30).json()[0][
                "attempts"][0]["appSparkVersion"]
            d = out_root / f"standalone-{pyspark_version}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "master.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
            (d / "master.html").write_text(home)
            (d / f"{app.app_id}.html").write_text(app_page)
            (d / "expected.json").write_text(json.dumps({app.app_id: app.url}, indent=1) + "\n")
            return d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", action="append", choices=("4.0", "3.5"))
    p.add_argument("--out", default=str(ROOT / "tests" / "data"))
    a = p.parse_args()
    for v in a.version or ["4.0", "3.5"]:
        print("recorded", record(v, Path(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
