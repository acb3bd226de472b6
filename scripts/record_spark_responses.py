#!/usr/bin/env python3
"""Record what sparkwatch's Spark collector reads from a real Spark application.

    scripts/record_spark_responses.py                 # start the test app with each pyspark venv, record both
    scripts/record_spark_responses.py --version 3.5   # only one
    scripts/record_spark_responses.py --url http://127.0.0.1:4040 --out tests/data/spark-x

It starts testbed/sparkapps/streaming_app.py (metrics sources on, cleaner settings
periodicGC.interval=3min and referenceTracking.blocking=false, one failed job,
one job that stays active, a stateful streaming query) with the venv's Python,
waits until a streaming batch with state has run, then fetches the same
endpoints the collector does, with the same status filters, and stores each
answer byte for byte in tests/data/spark-<pyspark version>/ with an index.json
that tells testbed/spark.ReplayServer which path each file answers.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.spark import DATA, SPARK_PYTHONS, recording_requests, spark_app  # noqa: E402

SETTINGS = dict(metrics=True, periodic_gc="3min", blocking="false", failing_job=True, slow_job=True)


def record(url: str, out: Path, extra: dict) -> None:
    apps = requests.get(url + "/api/v1/applications", params={"status": "running"}, timeout=30).json()
    app = apps[0]
    app_id = app["id"]
    version = app["attempts"][0].get("appSparkVersion", "unknown")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index = {"app_id": app_id, "spark_version": version, "recorded_at": time.time(),
             "settings": extra, "requests": []}
    for path, params, fname in recording_requests(app_id):
        r = requests.get(url + path, params=params, timeout=30)
        r.raise_for_status()
        json.loads(r.content)  # must be JSON
        (tmp / fname).write_bytes(r.content)
        index["requests"].append({"path": path, "params": params, "file": fname})
    # recorded_at after the fetches: the recording's "now" (uptimes, job ages)
    index["recorded_at"] = time.time()
    (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"recorded Spark {version} app {app_id} into {out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", choices=list(SPARK_PYTHONS), action="append",
                   help="pyspark line to record (default: every venv that exists)")
    p.add_argument("--url", help="record an application that is already running at this UI URL")
    p.add_argument("--out", help="output directory (with --url)")
    a = p.parse_args()
    if a.url:
        out = Path(a.out) if a.out else None
        if out is None:
            v = requests.get(a.url + "/api/v1/applications", timeout=30).json()[0]["attempts"][0]["appSparkVersion"]
            out = DATA / f"spark-{v}"
        record(a.url.rstrip("/"), out, {"external": a.url})
        return 0
    for version in a.version or list(SPARK_PYTHONS):
        py = SPARK_PYTHONS[version]
        if not py.exists():
            print(f"skipping {version}: no {py}", file=sys.stderr)
            continue
        with spark_app(version, **SETTINGS) as app:
            time.sleep(3)  # a few more batches, and a heartbeat for the executor peaks
            v = requests.get(app.url + "/api/v1/applications", timeout=30).json()[0]["attempts"][0]["appSparkVersion"]
            record(app.url, DATA / f"spark-{v}", SETTINGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
