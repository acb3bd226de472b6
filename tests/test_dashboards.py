"""Lint over the generated Grafana dashboards."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.catalog import catalog
from exporter.pack.promql import PROMETHEUS_METRICS, grafana_free, metrics_used

CATALOG = catalog()

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "dashboards").glob("*.json"))
DASHBOARDS = {p.name: json.loads(p.read_text()) for p in FILES}


def _panels(d):
    return [p for p in d["panels"] if p["type"] != "row"]


def _exprs(d):
    return [t["expr"] for p in _panels(d) for t in p["targets"]]


def test_the_four_dashboards_exist_with_unique_uids():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(uids) == len(set(uids)) == 4
    assert {"sparkwatch-overview", "sparkwatch-spark", "sparkwatch-jvm", "sparkwatch-livy-zookeeper"} == set(uids)
    for name, d in DASHBOARDS.items():
        assert name == f"{d['uid']}.json"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_variables_datasource_job_instance(name):
    d = DASHBOARDS[name]
    var = {v["name"]: v for v in d["templating"]["list"]}
    assert var["datasource"]["type"] == "datasource" and var["datasource"]["query"] == "prometheus"
    for v in ("job", "instance"):
        assert var[v]["type"] == "query" and var[v]["datasource"]["uid"] == "${datasource}"
    for p in _panels(d):
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_panel_has_a_unit_and_a_query(name):
    for p in _panels(DASHBOARDS[name]):
        assert p["fieldConfig"]["defaults"].get("unit"), f"{name}: panel {p['title']!r} has no unit"
        assert p["targets"], p["title"]


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_rate_interval_in_every_rate(name):
    calls = sum(len(re.findall(r"\b(?:rate|irate|increase)\(", e)) for e in _exprs(DASHBOARDS[name]))
    checked = 0
    for expr in _exprs(DASHBOARDS[name]):
        for fn, window in re.findall(r"\b(rate|irate|increase)\((?:[^()\[]|\([^()]*\))*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", f"{name}: {fn} with [{window}] in {expr}"
            checked += 1
    assert checked == calls, "a rate()/increase() whose window the lint could not read"


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_metric_a_panel_uses_is_exported_and_filtered_by_job_and_instance(name):
    for expr in _exprs(DASHBOARDS[name]):
        used = metrics_used(expr)
        assert used, expr
        unknown = {m for m in used if m not in CATALOG and m not in PROMETHEUS_METRICS}
        assert not unknown, f"{name}: {expr} uses {unknown}"
        # every name of the catalogue the query reads, whatever its prefix
        seen = set()
        for m in re.finditer(r"(?<![A-Za-z0-9_:\"$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?", expr):
            if m.group(1) in CATALOG:
                seen.add(m.group(1))
                assert m.group(2) and 'job=~"$job"' in m.group(2) and 'instance=~"$instance"' in m.group(2), expr
        assert seen == used - set(PROMETHEUS_METRICS), expr


def test_overview_covers_every_signature_and_what_is_firing():
    d = DASHBOARDS["sparkwatch-overview.json"]
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    for sig in ("S1", "S2", "S3", "S4", "S5"):
        assert any(r.startswith(sig + " ") for r in rows), sig
    assert any("ALERTS{" in e for e in _exprs(d))


def test_jvm_dashboard_shows_the_issue_internals():
    exprs = " ".join(_exprs(DASHBOARDS["sparkwatch-jvm.json"]))
    for m in ("jvm_classes_currently_loaded", "jvm_codecache_used_bytes", "jvm_process_thread_limit",
              "jvm_process_open_fds", "jvm_memory_space_used_bytes", "jvm_gc_seconds_total"):
        assert m in exprs, m


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_panel_query_is_valid_promql(tmp_path):
    rules = [{"record": f"panel:q{i}", "expr": grafana_free(e)}
             for i, e in enumerate(e for d in DASHBOARDS.values() for e in _exprs(d))]
    p = tmp_path / "panels.yml"
    p.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    r = subprocess.run(["promtool", "check", "rules", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
