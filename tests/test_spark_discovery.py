"""Cluster discovery: a spark target that names a cluster manager finds the
running applications and scrapes each one's driver UI.

YARN runs against testbed.yarn (a ResourceManager stand-in rebuilt from
Hadoop's sources: its REST API, its web proxy, AmIpFilter'd AMs) whose AMs serve
recorded answers of real Spark 3.5 and 4.0 drivers; tests/test_spark_yarn.py has
what Hadoop does beyond (unmanaged AMs, HA, pseudo authentication), and
tests/test_kerberos_targets.py Kerberos. The standalone master's pages are parsed here from
recordings of real masters; tests/test_spark_cluster.py runs a real standalone
cluster.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparkwatch.collectors.spark.clusters import ui_link_of_app_page, ui_links_of_master_page
from sparkwatch.config import ConfigError, parse_config
from testbed.exporter import running_exporter, samples, scrape, value
from testbed.faulty_http import faulty_server
from testbed.procs import free_port
from testbed.spark import recording_dirs, routes_from_recording
from testbed.yarn import YarnCluster

DATA = Path(__file__).resolve().parent / "data"


def _recorded_apps():
    out = []
    for i, d in enumerate(recording_dirs()):
        app_id = json.loads((d / "index.json").read_text())["app_id"]
        out.append((app_id, routes_from_recording(d)))
    assert len(out) >= 2
    return out


def _yarn_config(yarn, **kw):
    t = {"name": "yarn", "url": yarn.url, "discover": "yarn"}
    t.update(kw)
    return {"exporter": {"scrape_timeout": 10}, "spark": [t]}


def _app_ids(ss, target):
    return sorted(lab["app_id"] for n, lab, _ in ss if n == "spark_app_info" and lab["target"] == target)


def test_yarn_every_running_spark_application_through_the_proxy():
    recorded = _recorded_apps()
    with YarnCluster(security=True) as yarn:  # the proxy warns whoever is not the owner
        for n, (spark_id, routes) in enumerate(recorded):
            yarn.add_app(f"app{n}", routes=routes, user="alice")
        yarn.add_app("done", state="FINISHED", routes=recorded[0][1])
        yarn.add_app("queued", state="ACCEPTED")
        yarn.add_app("mr", application_type="MAPREDUCE", routes=recorded[0][1])
        with running_exporter(_yarn_config(yarn)) as (base, _):
            ss = samples(scrape(base))
        rm = yarn.rms[0]
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
    assert value(ss, "spark_cluster_applications", target="yarn") == len(recorded)
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == len(recorded)
    assert _app_ids(ss, "yarn") == sorted(spark_id for spark_id, _ in recorded)
    # every application's own series: jobs, executors, the driver's servlet
    for spark_id, _ in recorded:
        assert value(ss, "spark_jobs_active", target="yarn", app_id=spark_id) >= 0
    # the RM was asked for running Spark applications only, and the proxy never warned us
    listing = [p for p, _ in rm.requests if p.startswith("/ws/v1/cluster/apps")]
    assert listing and all("states=RUNNING" in p and "applicationTypes=SPARK" in p for p in listing)
    assert rm.warned == 0


def test_yarn_one_unreadable_application_costs_that_application_only():
    recorded = _recorded_apps()
    with YarnCluster() as yarn, faulty_server("http500") as broken:
        yarn.add_app("ok", routes=recorded[0][1])
        yarn.add_app("broken", driver=broken.url)  # the proxy relays the driver's 500
        yarn.add_app("gone", routes={})  # 404 everywhere
        yarn.add_app("stopped", driver=f"http://127.0.0.1:{free_port()}", am_filter=False)  # the proxy's 500
        with running_exporter(_yarn_config(yarn)) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
    assert value(ss, "spark_cluster_applications", target="yarn") == 4
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert _app_ids(ss, "yarn") == [recorded[0][0]]
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="yarn", reason="partial") >= 1


def test_one_driver_ui_that_hangs_costs_that_application_not_the_cluster_target():
    recorded = _recorded_apps()
    with YarnCluster() as yarn, faulty_server("hang") as hung:
        yarn.add_app("ok", routes=recorded[0][1])
        yarn.add_app("hung", driver=hung.url)  # the proxy waits for the AM, which waits for the driver
        cfg = _yarn_config(yarn)
        cfg["exporter"] = {"scrape_timeout": 3, "timeout_offset": 0}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
    assert _app_ids(ss, "yarn") == [recorded[0][0]]
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="yarn", reason="partial") >= 1


@pytest.mark.parametrize("hadoop_major", [2, 3])
def test_yarn_applications_that_end_drop_out_within_a_scrape_and_none_is_fine(hadoop_major):
    """Hadoop 3 answers {"apps":{}} when nothing matches, Hadoop 2 {"apps":null}."""
    recorded = _recorded_apps()
    with YarnCluster(hadoop_major=hadoop_major) as yarn:
        a = yarn.add_app("a", routes=recorded[0][1])
        b = yarn.add_app("b", routes=recorded[1][1])
        with running_exporter(_yarn_config(yarn)) as (base, _):
            assert len(_app_ids(samples(scrape(base)), "yarn")) == 2
            with yarn.lock:
                a.state = "FINISHED"
            assert _app_ids(samples(scrape(base)), "yarn") == [recorded[1][0]]
            with yarn.lock:
                b.state = "KILLED"
            ss = samples(scrape(base))
    assert _app_ids(ss, "yarn") == []
    assert value(ss, "spark_cluster_applications", target="yarn") == 0
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1


@pytest.mark.parametrize("mode,reason", [("html", "invalid_response"), ("http500", "http_status"),
                                         ("hang", "timeout")])
def test_a_cluster_manager_that_cannot_be_read_makes_the_target_down(mode, reason):
    with faulty_server(mode) as rm:
        cfg = {"exporter": {"scrape_timeout": 2, "timeout_offset": 0},
               "spark": [{"name": "c", "url": rm.url, "discover": "yarn"},
                         {"name": "m", "url": rm.url, "discover": "standalone"}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    for target in ("c", "m"):
        assert value(ss, "sparkwatch_target_up", kind="spark", target=target) == 0
        assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target=target, reason=reason) == 1


def test_refused_cluster_manager():
    cfg = {"spark": [{"name": "m", "url": f"http://127.0.0.1:{free_port()}", "discover": "standalone"}]}
    with running_exporter(cfg) as (base, _):
        ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="m", reason="connection") == 1


def test_discover_is_validated():
    with pytest.raises(ConfigError, match=r"spark\[0\]\.discover"):
        parse_config({"spark": [{"url": "http://m:8080", "discover": "mesos"}]})
    assert parse_config({"spark": [{"url": "http://m:8080", "discover": "standalone"}]}).spark[0].discover == "standalone"
    assert parse_config({"spark": [{"url": "http://m:4040"}]}).spark[0].discover == "ui"


# ---------------------------------------------------------------- the standalone master's pages


def _master_pages():
    dirs = sorted(DATA.glob("standalone-*"))
    return [d for d in dirs if (d / "master.html").is_file()]


def test_recorded_master_pages_exist_for_both_spark_lines():
    names = {d.name for d in _master_pages()}
    assert any(n.startswith("standalone-3.5") for n in names), names
    assert any(n.startswith("standalone-4.") for n in names), names


@pytest.mark.parametrize("d", _master_pages(), ids=lambda d: d.name)
def test_recorded_master_home_page_links_each_running_application_to_its_driver_ui(d):
    state = json.loads((d / "master.json").read_text())
    expected = json.loads((d / "expected.json").read_text())
    links = ui_links_of_master_page((d / "master.html").read_text(), "http://127.0.0.1:8080/")
    active = {a["id"] for a in state["activeapps"]}
    assert active and set(links) >= active
    for app_id in active:
        assert links[app_id] == expected[app_id]
    # the application's own page says the same
    app_pages = sorted(d.glob("app-*.html"))
    assert app_pages
    for page in app_pages:
        app_id = page.stem
        assert ui_link_of_app_page(page.read_text(), "http://127.0.0.1:8080/app/?appId=" + app_id) == expected[app_id]


def test_reverse_proxy_links_resolve_against_the_master():
    html = ('<table><tr><td><a href="app/?appId=app-1">app-1</a></td>'
            '<td><a href="/proxy/app-1">stream</a></td></tr></table>')
    assert ui_links_of_master_page(html, "http://master:8080/") == {"app-1": "http://master:8080/proxy/app-1"}
    assert ui_links_of_master_page('<tr><td><a href="app?appId=app-2">x</a></td><td>done</td></tr>',
                                   "http://m/") == {}


def test_the_examples_of_docs_spark_md_are_valid_and_allow_what_they_say():
    import re

    import yaml

    from sparkwatch.collectors.spark.clusters import ui_policy

    text = (Path(__file__).resolve().parent.parent / "docs" / "spark.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    # a block with kerberos: needs a realm and a keytab: tests/test_kerberos_targets.py checks it
    configs = [parse_config(yaml.safe_load(b), "docs/spark.md") for b in blocks if "kerberos:" not in b]
    (prod,) = [t for c in configs for t in c.spark if t.name == "prod" and t.discovered_ui_allowed]
    p = ui_policy(prod.discover, prod.url, prod.discovered_ui_allowed)
    assert p.allows("http://spark-worker-7.prod.internal:40123")
    assert p.allows("http://10.20.30.57:4040")
    assert p.allows("http://spark-master:4041")  # a client-mode driver on the master's host
    assert p.allows("http://spark-master:8080/proxy/app-1", "app-1")  # the reverse proxy
    assert not p.allows("http://10.20.30.57.attacker.example:4040")
    assert not p.allows("http://10.20.30.57:4041")
    assert not p.allows("http://spark-worker-7.prod.internal.attacker.example:4040")
    (yarn,) = [t for c in configs for t in c.spark if t.discover == "yarn" and t.discovered_ui_allowed]
    p = ui_policy(yarn.discover, yarn.own_urls(), yarn.discovered_ui_allowed)
    assert p.allows("http://rm1.internal:8088/proxy/application_1_0001", "application_1_0001")
    assert p.allows("http://yarn-proxy.internal:9046/proxy/application_1_0001", "application_1_0001")
    assert not p.allows("http://rm2.internal:8088/proxy/application_1_0001", "application_1_0001")
    assert not p.allows("http://rm1.internal:8088/proxy/application_1_0002", "application_1_0001")
    assert not p.allows("http://rm1.internal:8089/proxy/application_1_0001", "application_1_0001")
    assert not p.allows("http://rm1.internal:8088/", "application_1_0001")
    assert not p.allows("http://rm2.internal:8088/cluster", "application_1_0001")
