"""The Livy collector against a server that follows Livy's REST contract."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sparkwatch.collector import MetricSet
from sparkwatch.collectors import livy as livymod
from sparkwatch.collectors.livy import STATES, LivyCollector
from sparkwatch.config import ConfigError, parse_config
from testbed.exporter import collect_once, collected_value, find, running_exporter, samples, scrape, value
from testbed.livy_server import livy_server


def _cfg(**kw):
    return {"livy": [dict(kw)]}


def _collector(url, **kw) -> LivyCollector:
    cfg = parse_config({"livy": [dict(url=url, **kw)]})
    return LivyCollector(cfg.livy[0])




def _state_counts(out: MetricSet, kind: str):
    return {s: collected_value(out, "livy_sessions", kind=kind, state=s) for s in STATES}


# --------------------------------------------------------------------------
# counting, paging, shapes


def test_40000_batches_counted_by_state_through_the_exporter():
    with livy_server() as srv:
        srv.state.add("batch", 30000, state="success")
        srv.state.add("batch", 5000, state="dead")
        srv.state.add("batch", 4990, state="running")
        srv.state.add("batch", 10, state="recovering")
        srv.state.add("interactive", 3, state="idle")
        srv.state.add("interactive", 2, state="busy")
        with running_exporter({"exporter": {"scrape_timeout": 60},
                               "livy": [{"url": srv.url, "name": "livy1", "page_size": 2000}]}) as (base, _):
            text = scrape(base)
        ss = samples(text)
        assert value(ss, "sparkwatch_target_up", kind="livy", target="livy1") == 1
        assert value(ss, "livy_sessions", kind="batch", state="success") == 30000
        assert value(ss, "livy_sessions", kind="batch", state="dead") == 5000
        assert value(ss, "livy_sessions", kind="batch", state="running") == 4990
        assert value(ss, "livy_sessions", kind="batch", state="recovering") == 10
        assert sum(s[2] for s in find(ss, "livy_sessions", kind="batch")) == 40000
        assert value(ss, "livy_sessions", kind="interactive", state="idle") == 3
        assert value(ss, "livy_sessions", kind="interactive", state="busy") == 2
        # every known state is exported, 0 included: a bounded, constant set of series
        assert value(ss, "livy_sessions", kind="interactive", state="killed") == 0
        assert len(find(ss, "livy_sessions")) == 2 * len(STATES)
        assert value(ss, "livy_sessions_reported", kind="batch") == 40000
        assert value(ss, "livy_sessions_limit_reached", kind="batch") == 0
        assert value(ss, "livy_info", version="0.7.1-incubating", process="") == 1
        # Livy's default page (size=100) would take 400 requests: the collector asks for its page size
        reqs = srv.list_requests("/batches")
        assert all(r.get("size") == "2000" for r in reqs)
        assert len(reqs) <= 25


def test_server_default_page_size_is_100_and_total_counts_all():
    # the stand-in itself must follow Livy's contract, or the other tests prove nothing
    import requests

    with livy_server() as srv:
        srv.state.add("batch", 250, state="success")
        r = requests.get(srv.url + "/batches", timeout=5).json()
        assert r["from"] == 0 and r["total"] == 250 and len(r["sessions"]) == 100
        r = requests.get(srv.url + "/batches", params={"from": 200, "size": 1000}, timeout=5).json()
        assert r["total"] == 250 and len(r["sessions"]) == 50 and r["sessions"][0]["id"] == 200


@pytest.mark.parametrize("version,batch_keys", [
    ("0.3.0", {"id", "state", "appId", "appInfo", "log"}),
    ("0.5.0-incubating", {"id", "state", "appId", "appInfo", "log"}),
    ("0.6.0-incubating", {"id", "name", "state", "appId", "appInfo", "log"}),
    ("0.7.1-incubating", {"id", "name", "owner", "proxyUser", "state", "appId", "appInfo", "log"}),
    ("0.9.0-incubating", {"id", "name", "owner", "proxyUser", "state", "appId", "appInfo", "log"}),
])
def test_item_shapes_of_every_version_with_nulls(version, batch_keys):
    import requests

    with livy_server(version) as srv:
        srv.state.add("batch", 3, state="starting", app=False)  # appId and sparkUiUrl null
        srv.state.add("batch", 4, state="running")
        srv.state.add("batch", 2, state="recovering")
        srv.state.add("batch", 1, state="shutting_down")
        srv.state.add("interactive", 2, state="not_started", app=False)
        srv.state.add("interactive", 1, state="error")
        item = requests.get(srv.url + "/batches", timeout=5).json()["sessions"][0]
        assert set(item) == batch_keys and item["appId"] is None
        c = _collector(srv.url)
        out = collect_once(c)
        c.close()
        assert collected_value(out, "livy_info", version=version, process="") == 1
        b = _state_counts(out, "batch")
        assert (b["starting"], b["running"], b["recovering"], b["shutting_down"]) == (3, 4, 2, 1)
        i = _state_counts(out, "interactive")
        assert (i["not_started"], i["error"]) == (2, 1)


def test_unknown_and_null_states_are_counted_as_unknown():
    with livy_server() as srv:
        srv.state.add("batch", 2, state="success")
        srv.state.sessions["batch"][0]["state"] = "some_future_state"
        srv.state.sessions["batch"][1]["state"] = None
        c = _collector(srv.url)
        out = collect_once(c)
        assert collected_value(out, "livy_sessions", kind="batch", state="unknown") == 2
        assert collected_value(out, "livy_sessions", kind="batch", state="success") == 0


def test_sessions_deleted_between_pages_are_neither_missed_nor_double_counted():
    with livy_server() as srv:
        srv.state.add("batch", 1000, state="success")
        deleted = []

        def delete_served(kind, frm):
            # after the first page, a client DELETEs 3 sessions it has already seen:
            # every later session moves 3 places down
            if kind == "batch" and frm == 0 and not deleted:
                for sid in (5, 6, 7):
                    del srv.state.sessions["batch"][sid]
                    deleted.append(sid)

        srv.between_pages = delete_served
        c = _collector(srv.url, page_size=100)
        out = collect_once(c)
        # 1000 distinct sessions existed during the scrape, each counted once
        assert collected_value(out, "livy_sessions", kind="batch", state="success") == 1000
        assert deleted == [5, 6, 7]
        assert collected_value(out, "livy_sessions_reported", kind="batch") == 997


def test_mass_deletion_between_pages_triggers_a_reread():
    with livy_server() as srv:
        srv.state.add("batch", 1000, state="success")
        done = []

        def delete_many(kind, frm):
            if kind == "batch" and frm == 0 and not done:
                for sid in range(0, 60):  # more than the page overlap
                    del srv.state.sessions["batch"][sid]
                done.append(True)

        srv.between_pages = delete_many
        c = _collector(srv.url, page_size=100)
        out = collect_once(c)
        assert collected_value(out, "livy_sessions", kind="batch", state="success") == 1000
        froms = [int(p["from"]) for p in srv.list_requests("/batches")]
        assert froms[:3] == [0, 90, 0]  # overlap lost -> went back


def test_state_changes_between_pages_count_each_session_once():
    with livy_server() as srv:
        srv.state.add("batch", 500, state="running")

        def finish_all(kind, frm):
            if kind == "batch":
                for s in srv.state.sessions["batch"].values():
                    s["state"] = "success"

        srv.between_pages = finish_all
        c = _collector(srv.url, page_size=100)
        out = collect_once(c)
        counts = _state_counts(out, "batch")
        assert sum(counts.values()) == 500
        # the first page was read while running, the rest (and the overlap, re-read) as success
        assert counts["running"] == 90 and counts["success"] == 410


def test_sessions_added_during_paging_are_counted():
    with livy_server() as srv:
        srv.state.add("batch", 300, state="running")

        def add_one(kind, frm):
            if kind == "batch":
                srv.state.add("batch", 1, state="starting")

        srv.between_pages = add_one
        c = _collector(srv.url, page_size=100)
        out = collect_once(c)
        counts = _state_counts(out, "batch")
        assert counts["running"] == 300 and counts["starting"] >= 1
        assert sum(counts.values()) <= len(srv.state.sessions["batch"])


def test_max_sessions_cap_is_reported(tmp_path):
    with livy_server() as srv:
        srv.state.add("batch", 1000, state="success")
        with running_exporter({"livy": [{"url": srv.url, "name": "capped", "max_sessions": 250,
                                         "page_size": 100}]}) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "sparkwatch_target_up", kind="livy", target="capped") == 1
        assert sum(s[2] for s in find(ss, "livy_sessions", kind="batch")) == 250
        assert value(ss, "livy_sessions_limit_reached", kind="batch") == 1
        assert value(ss, "livy_sessions_limit_reached", kind="interactive") == 0
        assert value(ss, "livy_sessions_reported", kind="batch") == 1000
        assert value(ss, "sparkwatch_target_scrape_errors_total", kind="livy", target="capped", reason="limit") == 1


# --------------------------------------------------------------------------
# finished-session age


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_finished_session_age_and_bounded_memory(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(livymod.time, "monotonic", clock)
    with livy_server() as srv:
        srv.state.add("batch", 5, state="success")  # ids 0-4
        srv.state.add("batch", 2, state="running")  # ids 5-6
        c = _collector(srv.url, finished_retention=600)
        out = collect_once(c)
        assert collected_value(out, "livy_finished_session_oldest_age_seconds", kind="batch") == 0
        assert collected_value(out, "livy_finished_sessions_older_than_retention", kind="batch") == 0
        assert collected_value(out, "livy_finished_session_oldest_age_seconds", kind="interactive") == 0

        clock.t += 400
        srv.state.sessions["batch"][5]["state"] = "dead"  # finishes now
        out = collect_once(c)
        assert collected_value(out, "livy_finished_session_oldest_age_seconds", kind="batch") == 400
        assert collected_value(out, "livy_finished_sessions_older_than_retention", kind="batch") == 0

        clock.t += 300
        out = collect_once(c)
        assert collected_value(out, "livy_finished_session_oldest_age_seconds", kind="batch") == 700
        assert collected_value(out, "livy_finished_sessions_older_than_retention", kind="batch") == 5  # not id 5 (300 s)

        # DELETE of ids 0-3: forgotten, memory bounded by what Livy lists
        for sid in range(4):
            del srv.state.sessions["batch"][sid]
        out = collect_once(c)
        assert sorted(c._first_seen["batch"]) == [4, 5]
        assert collected_value(out, "livy_finished_sessions_older_than_retention", kind="batch") == 1

        # Livy restarted without recovery: id 4 now names another application -> a new session
        srv.state.sessions["batch"][4]["appId"] = "application_1800000000000_0001"
        clock.t += 10
        out = collect_once(c)
        assert collected_value(out, "livy_finished_session_oldest_age_seconds", kind="batch") == 310  # id 5's age
        assert collected_value(out, "livy_finished_sessions_older_than_retention", kind="batch") == 0
        # a reused id in an active state is not finished
        srv.state.sessions["batch"][5]["state"] = "starting"
        out = collect_once(c)
        assert sorted(c._first_seen["batch"]) == [4]


# --------------------------------------------------------------------------
# thread dump


def test_thread_dump_counts_yarn_app_monitor_threads():
    with livy_server() as srv:
        srv.state.add("batch", 7, state="running", monitored=True)
        srv.state.add("batch", 3, state="success")
        c = _collector(srv.url)
        out = collect_once(c)
        assert collected_value(out, "livy_yarn_app_monitor_threads") == 7
        assert collected_value(out, "livy_threads") == 7 + srv.state.extra_threads
        assert out.errors == []


def test_thread_dump_missing_or_disabled():
    with livy_server() as srv:
        srv.state.add("batch", 2, state="running", monitored=True)
        srv.thread_dump_enabled = False  # 404
        c = _collector(srv.url)
        out = collect_once(c)
        assert collected_value(out, "livy_threads") is None and out.errors == []
        srv.thread_dump_enabled = True
        c2 = _collector(srv.url, thread_dump=False)
        out = collect_once(c2)
        assert collected_value(out, "livy_threads") is None
        assert srv.list_requests("/metrics/threads") == [{}]  # only the first collector asked


def test_hanging_thread_dump_is_a_partial_error_not_a_down_target():
    with livy_server() as srv:
        srv.state.add("batch", 4, state="success")
        srv.fault, srv.fault_path = "hang", "/metrics"
        with running_exporter({"exporter": {"scrape_timeout": 3},
                               "livy": [{"url": srv.url, "name": "l"}]}) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "sparkwatch_target_up", kind="livy", target="l") == 1
        assert value(ss, "livy_sessions", kind="batch", state="success") == 4
        assert value(ss, "sparkwatch_target_scrape_errors_total", kind="livy", target="l", reason="timeout") == 1
        assert not find(ss, "livy_threads")


# --------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("fault,path,reason", [
    ("500", "", "http_status"),
    ("html", "", "invalid_response"),
    ("truncated", "/batches", "invalid_response"),
    ("truncated", "/version", "invalid_response"),
    ("401", "", "auth"),
    ("hang", "", "timeout"),
    ("hang", "/sessions", "timeout"),
])
def test_faults_mark_only_that_target_down_within_the_deadline(fault, path, reason):
    with livy_server() as bad, livy_server() as good:
        bad.state.add("batch", 150, state="success")
        good.state.add("batch", 150, state="dead")
        bad.fault, bad.fault_path = fault, path
        deadline = 3.0
        with running_exporter({"exporter": {"scrape_timeout": deadline},
                               "livy": [{"url": bad.url, "name": "bad", "page_size": 100},
                                        {"url": good.url, "name": "good", "page_size": 100}]}) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "sparkwatch_target_up", kind="livy", target="bad") == 0
        assert value(ss, "sparkwatch_target_scrape_errors_total", kind="livy", target="bad", reason=reason) == 1
        assert value(ss, "sparkwatch_target_scrape_duration_seconds", kind="livy", target="bad") <= deadline + 0.5
        assert not find(ss, "livy_sessions", target="bad")
        assert value(ss, "sparkwatch_target_up", kind="livy", target="good") == 1
        assert value(ss, "livy_sessions", target="good", kind="batch", state="dead") == 150


def test_wrong_shapes_are_invalid_responses():
    import json

    from sparkwatch.collector import TargetError

    with livy_server() as srv:
        srv.state.add("batch", 2)
        c = _collector(srv.url)
        orig = srv._route
        for body in ([], {"from": 0, "sessions": []}, {"from": 0, "total": 1, "sessions": {}},
                     {"from": 0, "total": 1, "sessions": [{"state": "running"}]},
                     {"from": 0, "total": "1", "sessions": []}):
            srv._route = lambda p, q, b=body: ((200, json.dumps(b).encode(), "application/json")
                                               if p == "/batches" else orig(p, q))
            with pytest.raises(TargetError) as ei:
                collect_once(c)
            assert ei.value.reason == "invalid_response", body


# --------------------------------------------------------------------------
# filesystem state store, config, probe


def _fs_store(root, batch_ids, interactive_ids=None):
    for kind, ids in (("batch", batch_ids), ("interactive", interactive_ids)):
        if ids is None:
            continue
        d = root / "v1" / kind
        d.mkdir(parents=True)
        (d / "state").write_text('{"nextSessionId":%d}' % (max(ids, default=-1) + 1))
        for i in ids:
            (d / str(i)).write_text('{"id":%d,"name":null,"appId":"application_1_%d","appTag":"livy-batch-%d-abcdefgh",'
                                    '"owner":"etl","proxyUser":null,"version":1}' % (i, i, i))
            (d / f".{i}.crc").write_bytes(b"crc")  # Hadoop's local checksum files
        if ids:
            (d / f"{ids[-1]}.tmp").write_text("{}")  # a write in progress


def test_filesystem_state_store_counts_like_livy_recovers(tmp_path):
    _fs_store(tmp_path, list(range(1234)), [0, 1])
    with livy_server() as srv:
        c = _collector(srv.url, filesystem_state_store=f"file://{tmp_path}", process="livy-server")
        out = collect_once(c)
        assert collected_value(out, "livy_recovery_sessions", kind="batch", process="livy-server") == 1234
        assert collected_value(out, "livy_recovery_sessions", kind="interactive", process="livy-server") == 2
        assert collected_value(out, "livy_info", version="0.7.1-incubating", process="livy-server") == 1


def test_filesystem_state_store_missing_kind_and_missing_root(tmp_path):
    _fs_store(tmp_path, [3, 4])
    with livy_server() as srv:
        out = collect_once(_collector(srv.url, filesystem_state_store=str(tmp_path)))
        assert collected_value(out, "livy_recovery_sessions", kind="batch", process="") == 2
        assert collected_value(out, "livy_recovery_sessions", kind="interactive", process="") == 0
        out = collect_once(_collector(srv.url, filesystem_state_store=str(tmp_path / "nope")))
        assert collected_value(out, "livy_recovery_sessions", kind="batch", process="") is None
        assert out.errors == ["partial"]


def test_filesystem_state_store_unreadable():
    """A store the exporter may not read is that target's `auth` error. Root reads
    a mode-000 directory anyway, so the collector runs in a child without the
    capabilities that let root ignore file permissions."""
    import subprocess
    import sys
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="sparkwatch-fs-store-"))
    try:
        root.chmod(0o755)
        _fs_store(root, [1], [2])
        for d in (root / "v1", root / "v1" / "interactive"):
            d.chmod(0o755)
        (root / "v1" / "batch").chmod(0)
        child = (
            "from sparkwatch.collector import Deadline, MetricSet\n"
            "from sparkwatch.collectors.livy import LivyCollector\n"
            "from sparkwatch.config import parse_config\n"
            "cfg = parse_config({'livy': [{'url': '{srv_url}', 'filesystem_state_store': '" + str(root) + "'}]})\n"
            "c = LivyCollector(cfg.livy[0]); out = MetricSet()\n"
            "c._fs_state_store(out, Deadline(20))\n"
            "print(sorted(out.errors), out.samples and sorted((k, v) for d, s in out.samples.items() for k, v in s.items()))\n"
        )
        with livy_server() as srv:
            code = child.replace("{srv_url}", srv.url)
            if os.geteuid() == 0:
                cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all",
                       "--", sys.executable, "-c", code]
            else:
                cmd = [sys.executable, "-c", code]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
        assert p.returncode == 0, p.stderr
        got = p.stdout
        assert "'auth'" in p.stdout.split("]", 1)[0], p.stdout  # the batch store could not be read
        assert "('interactive', '')" in got and ", 1.0)" in got, got  # the readable kind is still counted
    finally:
        (root / "v1" / "batch").chmod(0o700)
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"livy\[0\]\.filesystem_state_store"):
        parse_config({"livy": [{"url": "http://x:8998", "filesystem_state_store": "hdfs://nn/livy"}]})
    with pytest.raises(ConfigError, match=r"livy\[0\]\.page_size"):
        parse_config({"livy": [{"url": "http://x:8998", "page_size": 0}]})
    with pytest.raises(ConfigError, match=r"livy\[0\]\.max_session"):
        parse_config({"livy": [{"url": "http://x:8998", "max_session": 5}]})


def test_probe_a_livy_server():
    with livy_server() as srv:
        srv.state.add("interactive", 2, state="idle")
        with running_exporter({"exporter": {"probe": {"allowed_targets": [srv.url],
                                                      "modules": {"livy": {"page_size": 50}}}}}) as (base, _):
            ss = samples(scrape(base, f"/probe?module=livy&target={srv.url}"))
        assert value(ss, "livy_sessions", kind="interactive", state="idle") == 2
        assert value(ss, "sparkwatch_target_up", kind="livy") == 1


def test_readme_examples_of_this_section_are_valid(tmp_path):
    import re as _re

    import yaml

    readme = (Path(__file__).resolve().parent.parent / "docs" / "livy.md").read_text()
    section = readme.split("<!-- section:livy -->", 1)[1].split("<!-- section:", 1)[0]
    blocks = _re.findall(r"```yaml\n(.*?)```", section, _re.S)
    assert len(blocks) >= 3
    for block in blocks:
        if "kerberos:" in block:  # needs a real keytab: tests/test_kerberos_targets.py checks it
            continue
        for path in set(_re.findall(r"(/etc/[\w./-]+)", block)):
            f = tmp_path / path.strip("/").replace("/", "_")
            f.write_text("x\n")
            block = block.replace(path, str(f))
        parse_config(yaml.safe_load(block), "README example")
