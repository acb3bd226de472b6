#!/usr/bin/env python3
"""Record what a real Spark history server answers for Spark's own test event logs.

    flock /tmp/sparkwatch-heavy.lock scripts/record_history_server.py                 # every pyspark venv
    flock /tmp/sparkwatch-heavy.lock scripts/record_history_server.py --version 3.5   # only one

It copies the event logs of tests/data/spark-events/ (see its ORIGIN.md) into a
temporary folder with chosen modification times (:data:`MTIMES`: the history
server's ``lastUpdated``), starts the history server of the venv's pyspark on
it (testbed/history_server.py), and stores each answer sparkwatch's Spark
collector asks for, byte for byte, in tests/data/history-<spark version>/ with
an index.json that testbed.history_server.HistoryReplay serves (by path and
query). The never-closed log gets a modification time one minute before the
recording: a file that is recent although its application started in 2015
(the case of a log that was copied or touched after its driver died).
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.history_server import EVENT_LOGS, copy_event_logs, history_server  # noqa: E402
from testbed.spark import DATA, SPARK_PYTHONS  # noqa: E402

#: the never-closed log (its modification time is set to the recording's time minus this)
NEVER_CLOSED = "local-1426533911241.inprogress"
RECENT = 60.0


def mtimes(now: float) -> dict:
    """Each event log's modification time: a completed log's is its application's end
    (as it was when its driver closed it); the never-closed one's is recent."""
    return {
        "local-1430917381535_1": 1430917380.890,
        "local-1430917381535_2": 1430917380.950,
        "local-1422981780767": 1422981788.731,
        NEVER_CLOSED: now - RECENT,
    }


#: the applications those logs hold (local-1430917381535's two attempts are one application)
APPLICATIONS = 3

#: what the collector asks of each application attempt (path suffix, params)
PER_ATTEMPT = [
    ("/jobs", {"status": "running"}),
    ("/jobs", {}),  # every job: asked only of an application whose liveness is in doubt
    ("/stages", {"status": ["active", "failed"]}),
    ("/executors", {}),
    ("/environment", {}),
]


def record(url: str, out: Path, version: str, log_mtimes: dict) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index = {"spark_version": version, "recorded_at": time.time(), "event_logs": log_mtimes, "requests": []}
    n = 0

    def get(path, params):
        nonlocal n
        r = requests.get(url + path, params=params, timeout=60)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data = json.loads(r.content)
        n += 1
        fname = f"{n:03d}.json"
        (tmp / fname).write_bytes(r.content)
        index["requests"].append({"path": path, "params": params, "file": fname})
        return data

    apps = get("/api/v1/applications", {})
    get("/api/v1/applications", {"status": "running"})
    get("/api/v1/applications", {"status": "completed"})
    for app in apps:
        for att in app.get("attempts", []):
            prefix = f"/api/v1/applications/{app['id']}"
            if att.get("attemptId"):
                prefix += "/" + att["attemptId"]
            for suffix, params in PER_ATTEMPT:
                get(prefix + suffix, params)
    # recorded_at after the requests: the recording's "now" (uptimes, staleness)
    index["recorded_at"] = time.time()
    (tmp / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"recorded the history server of Spark {version}: {len(apps)} applications, "
          f"{len(index['requests'])} answers, into {out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", choices=list(SPARK_PYTHONS), action="append",
                   help="pyspark line to record (default: every venv that exists)")
    a = p.parse_args()
    for version in a.version or list(SPARK_PYTHONS):
        py = SPARK_PYTHONS[version]
        if not py.exists():
            print(f"skipping {version}: no {py}", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory(prefix="sparkwatch-history-") as d:
            times = mtimes(time.time())
            copy_event_logs(Path(d), times, EVENT_LOGS)
            with history_server(version, Path(d), expect_apps=APPLICATIONS) as hs:
                v = requests.get(hs.url + "/api/v1/version", timeout=30).json()["spark"]
                record(hs.url, DATA / f"history-{v}", v, times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
