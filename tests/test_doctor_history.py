"""The doctor on a history server: what a real one answered for Spark's own test
event logs (tests/data/history-<spark version>/, see tests/test_spark_history.py),
replayed. Completed applications are said in the past tense, at most info, with
nothing to start differently; a log never closed but recently touched is
reported as stale, not as an application running for years."""

from __future__ import annotations

import json
import time

import pytest

from testbed.history_server import HistoryReplay, history_recordings
from tests.test_doctor import doctor

RECORDINGS = history_recordings()
RESTARTED = "local-1430917381535"
NEVER_CLOSED = "local-1426533911241"


@pytest.fixture(params=RECORDINGS, ids=lambda d: d.name)
def replay(request):
    with HistoryReplay(request.param) as srv:
        yield request.param, srv


def config(url: str, last_updated: float) -> dict:
    # stale_after: longer than the never-closed log's file has been untouched (recorded a while
    # ago), so that only what the application itself shows (nothing since 2015) can say it stopped
    return {"spark": [{"url": url, "name": "hist", "include_completed": True,
                       "stale_after": round(time.time() - last_updated) + 86400}]}


def last_updated(d) -> float:
    idx = json.loads((d / "index.json").read_text())
    r = next(r for r in idx["requests"] if r["path"] == "/api/v1/applications" and r["params"] == {})
    apps = json.loads((d / r["file"]).read_bytes())
    (att,) = next(a for a in apps if a["id"] == NEVER_CLOSED)["attempts"]
    return att["lastUpdatedEpoch"] / 1000


def test_completed_applications_are_said_in_the_past_tense(capsys, replay):
    d, srv = replay
    run = doctor(capsys, config(srv.url, last_updated(d)))
    about = [f for f in run.findings if RESTARTED in f["subject"]]
    assert about, run.findings
    assert all(f["severity"] == "info" for f in about), about
    sources = [f for f in about if f["runbook"].endswith("SparkMetricsSourceDisabled.md")]
    assert sources
    for f in sources:
        assert "was off while it ran" in f["summary"] and "has completed" in f["summary"]
        assert "--conf" not in f["fix"] and "start the application" not in f["fix"].lower()
        assert " is off" not in f["summary"]
    # the latest attempt only, named
    assert all("attempt 2" in f["subject"] for f in about)
    assert run.rc == 0, [f for f in run.findings if f["severity"] != "info"]


def test_a_never_closed_log_is_reported_stale(capsys, replay):
    d, srv = replay
    run = doctor(capsys, config(srv.url, last_updated(d)))
    about = [f for f in run.findings if NEVER_CLOSED in f["subject"]]
    assert all(f["severity"] == "info" for f in about), about
    [stale] = [f for f in about if f["evidence"].get("stale") == 1]
    assert "never closed" in stale["summary"] and "stopped" in stale["summary"]
    # measured to its last sign of life (its driver added, a second after its start), not to now
    assert stale["evidence"]["uptime_seconds"] < 3600
    # nothing about it speaks of years of running
    assert all((f["evidence"].get("uptime_seconds") or 0) < 86400 for f in about), about
    for f in about:
        if f["runbook"].endswith("SparkMetricsSourceDisabled.md"):
            assert "was off while it ran" in f["summary"] and "--conf" not in f["fix"]
