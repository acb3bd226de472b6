"""Lint over the generated Grafana dashboards."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sparkwatch.catalog import catalog
from sparkwatch.pack.promql import PROMETHEUS_METRICS, grafana_free, metrics_used

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


# --------------------------------------------------------------------------
# Grafana's own definition of a dashboard: every dashboard, as TypeScript, must
# satisfy the types Grafana publishes in @grafana/schema (tests/grafana-schema/
# dashboard.ts says how they are read). One tsc run checks the dashboards and
# deliberately broken copies, which prove that the check catches what it should.

SCHEMA_DIR = ROOT / "tests" / "grafana-schema"
TSC = SCHEMA_DIR / "node_modules" / ".bin" / "tsc"


def _first(items, kind):
    return next(p for p in items if p["type"] == kind)


# (dashboard to copy, how it is broken, what tsc's one error about the copy must say)
BROKEN = {
    "unknown-dashboard-key": ("sparkwatch-overview.json", lambda d: d.update(refreshInterval="1m"),
                              "'\"refreshInterval\"' does not exist"),
    "wrong-type": ("sparkwatch-overview.json", lambda d: d.update(schemaVersion="39"),
                   "Type 'string' is not assignable to type 'number'"),
    "value-outside-an-enum": ("sparkwatch-overview.json", lambda d: d.update(graphTooltip=7), "Type '7'"),
    "unknown-timeseries-legend-option": (
        "sparkwatch-jvm.json", lambda d: _first(d["panels"], "timeseries")["options"]["legend"].update(showLegends=True),
        "'\"showLegends\"' does not exist"),
    "unknown-draw-style": (
        "sparkwatch-jvm.json",
        lambda d: _first(d["panels"], "timeseries")["fieldConfig"]["defaults"]["custom"].update(drawStyle="curve"),
        "Type '\"curve\"'"),
    "missing-stat-option": ("sparkwatch-overview.json", lambda d: _first(d["panels"], "stat")["options"].pop("colorMode"),
                            "'colorMode' is missing"),
    "unknown-panel-type": ("sparkwatch-spark.json", lambda d: _first(d["panels"], "timeseries").update(type="graph"),
                           "Type '\"graph\"'"),
    "wrong-target-ref-id": ("sparkwatch-spark.json", lambda d: _first(d["panels"], "stat")["targets"][0].update(refId=1),
                            "Type 'number' is not assignable to type 'string'"),
    "definition-on-a-datasource-variable": (
        "sparkwatch-livy-zookeeper.json",
        lambda d: _first(d["templating"]["list"], "datasource").update(definition="prometheus"),
        "'\"definition\"' does not exist"),
}


def _ts(d) -> str:
    return (f'import type {{ SparkwatchDashboard }} from "{SCHEMA_DIR / "dashboard"}";\n'
            f"export const dashboard = {json.dumps(d, indent=1)} satisfies SparkwatchDashboard;\n")


@pytest.fixture(scope="module")
def tsc_diagnostics(tmp_path_factory):
    """{file name: [diagnostic, ...]} of one `tsc --strict` run over every dashboard and every broken copy."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    assert TSC.exists(), f"{TSC} missing: run ./scripts/install-test-deps"
    work = tmp_path_factory.mktemp("grafana-schema")
    for name, d in DASHBOARDS.items():
        (work / f"{Path(name).stem}.ts").write_text(_ts(d))
    for case, (name, mutate, _) in BROKEN.items():
        d = json.loads(json.dumps(DASHBOARDS[name]))
        mutate(d)
        (work / f"broken-{case}.ts").write_text(_ts(d))
    files = sorted(p.name for p in work.glob("*.ts"))
    (work / "tsconfig.json").write_text(json.dumps({"extends": str(SCHEMA_DIR / "tsconfig.json"), "files": files}))
    r = subprocess.run([str(TSC), "-p", "tsconfig.json", "--pretty", "false"], cwd=work, capture_output=True,
                       text=True, timeout=300)
    out: dict = {}
    last = None
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+?\.ts)\(\d+,\d+\): error TS\d+: ", line)
        if m:
            last = m.group(1)
            out.setdefault(last, []).append(line)
        elif line.startswith(" ") and last:
            out[last][-1] += "\n" + line
        elif line.strip():
            out.setdefault("(tsc)", []).append(line)
    if r.stderr.strip():
        out.setdefault("(tsc)", []).append(r.stderr)
    # errors in anything but the files written here (the types, the schema's
    # resolution) would make every check meaningless
    assert set(out) <= set(files), {k: v for k, v in out.items() if k not in files}
    assert (r.returncode != 0) == bool(out), (r.returncode, r.stdout, r.stderr)
    return out


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_dashboard_satisfies_grafanas_published_schema(name, tsc_diagnostics):
    errors = tsc_diagnostics.get(f"{Path(name).stem}.ts", [])
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("case", list(BROKEN))
def test_grafana_schema_check_catches_a_broken_dashboard(case, tsc_diagnostics):
    errors = tsc_diagnostics.get(f"broken-{case}.ts", [])
    assert len(errors) == 1 and BROKEN[case][2] in errors[0], "\n".join(errors) or "tsc reported nothing"
