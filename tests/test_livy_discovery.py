"""Livy's Spark UI discovery: the UIs of active sessions are scraped with the
Spark collector's per-UI code (here: responses recorded from real Spark 3.5 and
4.0 applications, served behind a YARN-proxy-like path as Livy reports them)."""

from __future__ import annotations

import json

import pytest

from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.livy_server import livy_server
from testbed.procs import free_port
from testbed.spark import ReplayServer, recording_dirs, routes_from_recording, spark_app


def _proxy_routes():
    routes, apps = {}, []
    for d in recording_dirs():
        app_id = json.loads((d / "index.json").read_text())["app_id"]
        routes.update(routes_from_recording(d, prefix=f"/proxy/{app_id}"))
        apps.append(app_id)
    return routes, apps


def test_spark_uis_of_active_sessions_are_scraped_bounded_and_dead_ones_are_partial():
    routes, apps = _proxy_routes()
    assert len(apps) >= 2
    dead = f"http://127.0.0.1:{free_port()}/proxy/application_dead/"
    with ReplayServer(routes) as yarn, livy_server() as livy:
        # two running sessions whose UIs answer, one whose UI is dead, finished ones (not scraped)
        for app_id in apps:
            livy.state.add("batch", 1, state="running", ui_base=f"{yarn.url}/proxy/{app_id}/")
        livy.state.add("batch", 1, state="idle", ui_base=dead)
        livy.state.add("batch", 3, state="success", ui_base=f"{yarn.url}/proxy/{apps[0]}/")
        cfg = {"exporter": {"scrape_timeout": 10},
               "livy": [{"url": livy.url, "name": "livy", "discover_spark_ui": True}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "sparkwatch_target_up", kind="livy", target="livy") == 1
        assert value(ss, "livy_active_spark_uis") == len(apps) + 1
        assert value(ss, "livy_discovered_spark_uis") == len(apps)
        assert value(ss, "sparkwatch_target_scrape_errors_total", target="livy", reason="partial") == 1
        for app_id in apps:
            (i,) = find(ss, "spark_app_info", target="livy", app_id=app_id)
            assert find(ss, "spark_jobs_active", target="livy", app_id=app_id)
        # the finished sessions' UI was not asked again: each proxied app listed once
        lists = [r for r in yarn.requests if r.split("?")[0].endswith("/api/v1/applications")]
        assert len(lists) == len(apps)

        # bounded: one UI per scrape at most, the newest session first
        cfg["livy"][0]["max_discovered_uis"] = 1
        yarn.requests.clear()
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "livy_discovered_spark_uis") == 0  # the newest active session is the dead one
        assert value(ss, "sparkwatch_target_up", kind="livy", target="livy") == 1
        assert not find(ss, "spark_app_info")
        assert not yarn.requests


def test_discovery_off_by_default():
    routes, apps = _proxy_routes()
    with ReplayServer(routes) as yarn, livy_server() as livy:
        livy.state.add("batch", 1, state="running", ui_base=f"{yarn.url}/proxy/{apps[0]}/")
        with running_exporter({"livy": [{"url": livy.url, "name": "livy"}]}) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "livy_sessions", kind="batch", state="running") == 1
        assert not find(ss, "spark_app_info") and not yarn.requests


@pytest.mark.spark
@pytest.mark.slow
def test_discovery_of_a_real_spark_driver():
    """A real Spark 4.0 driver whose UI a running Livy session advertises."""
    with spark_app("4.0", stream=False) as app, livy_server() as livy:
        livy.state.add("interactive", 1, state="busy", ui_base=app.url + "/")
        livy.state.add("batch", 1, state="success", ui_base=app.url + "/")
        cfg = {"exporter": {"scrape_timeout": 20},
               "livy": [{"url": livy.url, "name": "livy", "discover_spark_ui": True, "thread_dump": False}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="livy", target="livy") == 1
    assert value(ss, "livy_discovered_spark_uis") == 1
    assert find(ss, "spark_app_info", target="livy", app_id=app.app_id)
    assert find(ss, "spark_executors_active", target="livy", app_id=app.app_id)
