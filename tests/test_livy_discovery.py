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


def test_discovered_uis_elsewhere_are_not_fetched_unless_allowed():
    """A session's appInfo.sparkUiUrl is data from Livy: it may name any host, port or path
    (the exporter itself included). Only Spark UI paths on Livy's host, or URLs matching
    discovered_ui_allowed, are fetched, and never with Livy's credentials."""
    from testbed.faulty_http import faulty_server

    with faulty_server("ok") as other, livy_server() as livy:
        other_port = other.server_address[1]
        # another host name for the same machine: Livy is at 127.0.0.1
        livy.state.add("interactive", 1, state="idle", ui_base=f"http://localhost:{other_port}/")
        # Livy's host, but a path that is no Spark UI (say, the exporter's own /metrics)
        livy.state.add("interactive", 1, state="idle", ui_base=f"http://127.0.0.1:{other_port}/metrics")
        cfg = {"livy": [{"url": livy.url, "name": "livy", "discover_spark_ui": True,
                         "basic_auth": {"username": "livy", "password": "s3cret"}}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "livy_active_spark_uis", target="livy") == 2
        assert value(ss, "livy_rejected_spark_uis", target="livy") == 2
        assert value(ss, "livy_discovered_spark_uis", target="livy") == 0
        assert other.requests == []

        cfg["livy"][0]["discovered_ui_allowed"] = [f"http://localhost:{other_port}"]
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "livy_rejected_spark_uis", target="livy") == 1
        assert value(ss, "livy_discovered_spark_uis", target="livy") == 1
        assert other.requests, "the allowed UI was not scraped"
        assert all(not p.endswith("/metrics") and "/metrics/api" not in p for p, _ in other.requests)
        # Livy's basic auth went to Livy only
        assert all("Authorization" not in h for _, h in other.requests), other.requests


def test_discovered_ui_allowed_patterns_are_validated():
    from sparkwatch.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"livy\[0\]\.discovered_ui_allowed"):
        parse_config({"livy": [{"url": "http://livy:8998", "discovered_ui_allowed": ["http://x:80*"]}]})


@pytest.mark.parametrize("apps", [b'{"not": "a list"}', b'[{"id": {"nested": 1}, "name": 7, "attempts": "x"}]',
                                  b'[' * 50000 + b']' * 50000])
def test_a_discovered_ui_with_odd_json_costs_that_ui_not_the_livy_target(apps):
    from testbed.faulty_http import faulty_server

    with faulty_server("body") as ui, livy_server() as livy:
        ui.body = apps
        livy.state.add("interactive", 1, state="idle", ui_base=ui.url + "/")
        livy.state.add("batch", 2, state="success")
        cfg = {"livy": [{"url": livy.url, "name": "livy", "discover_spark_ui": True}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="livy", target="livy") == 1
    assert value(ss, "livy_sessions", kind="batch", state="success", target="livy") == 2
    reasons = {lab["reason"] for n, lab, _ in ss if n == "sparkwatch_target_scrape_errors_total"}
    assert "internal" not in reasons and "partial" in reasons
