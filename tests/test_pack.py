"""The pack's generators: committed output in step with the definitions, the rules config,
the `sparkwatch rules` / `sparkwatch dashboards` commands, and the Alertmanager example."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparkwatch.cli import main
from sparkwatch.config import ConfigError
from sparkwatch.pack.alertmanager import ALERTMANAGER_FILE
from sparkwatch.pack.alerts import ALERTS
from sparkwatch.pack.generate import drift, generated_files
from sparkwatch.pack.promql import format_duration, inject, parse_duration
from sparkwatch.pack.rules import build_rules, rules_yaml
from sparkwatch.pack.rulesconfig import parse_rules_config

ROOT = Path(__file__).resolve().parent.parent


def test_committed_files_match_the_definitions():
    d = drift(ROOT)
    assert not d, f"generated files drifted from exporter/pack (run `python -m sparkwatch.pack`): {d}"


def test_every_alert_has_a_generated_runbook():
    files = generated_files()
    for a in ALERTS:
        text = files[f"alerts/runbooks/{a.name}.md"]
        assert a.summary in text and a.action in text
        assert (ROOT / "alerts" / "runbooks" / f"{a.name}.md").is_file()


def _rules(cfg_dict):
    return {r["alert"]: r for g in build_rules(parse_rules_config(cfg_dict))["groups"] for r in g["rules"]}


def test_default_rules_config_reproduces_the_committed_rules():
    assert rules_yaml(parse_rules_config({})) == (ROOT / "alerts" / "sparkwatch.rules.yml").read_text()


def test_selectors_reach_every_metric_selector():
    rules = _rules({"selector": 'job="sparkwatch"', "selectors": {"jvm": 'env="prod"'}})
    expr = rules["JvmThreadsPredictedToHitLimit"]["expr"]
    assert 'jvm_process_thread_headroom{job="sparkwatch", env="prod"}' in expr
    expr = rules["SparkHeapFloorRisingWithFlatState"]["expr"]
    assert expr.count('{job="sparkwatch"}') == expr.count("spark_")
    expr = rules["LivyFinishedSessionsPilingUp"]["expr"]
    assert 'livy_sessions{state=~"success|dead|killed|error", job="sparkwatch"}' in expr
    # a per-alert selector adds to the global ones for that alert only
    rules = _rules({"alerts": {"SparkJobRunningTooLong": {"selector": 'app_name!~"nightly-.*"'}}})
    assert 'spark_job_oldest_active_age_seconds{app_name!~"nightly-.*"}' in rules["SparkJobRunningTooLong"]["expr"]
    assert "nightly" not in rules["SparkJobsPilingUp"]["expr"]


def test_inject_leaves_label_values_and_functions_alone():
    e = 'sum by (job) (rate(spark_x_total{queue="spark_y"}[5m])) / on (job) jvm_a'
    assert inject(e, {"spark": 'a="1"', "jvm": 'b="2"'}) == \
        'sum by (job) (rate(spark_x_total{queue="spark_y", a="1"}[5m])) / on (job) jvm_a{b="2"}'


def test_params_for_severity_labels_and_disable():
    rules = _rules({
        "labels": {"team": "data"},
        "alerts": {
            "SparkJobRunningTooLong": {"for": "10m", "params": {"max_age": "3h"}, "severity": "critical",
                                       "labels": {"owner": "etl"}},
            "SparkCleanerSettingsRisky": {"enabled": False},
        },
    })
    r = rules["SparkJobRunningTooLong"]
    assert r["for"] == "10m" and "> 10800" in r["expr"] and "3h" in r["annotations"]["description"]
    assert r["labels"]["severity"] == "critical" and r["labels"]["owner"] == "etl" and r["labels"]["team"] == "data"
    assert "SparkCleanerSettingsRisky" not in rules
    assert rules["SparkJobsPilingUp"]["labels"]["team"] == "data"


def test_time_scale_compresses_every_window_and_for():
    base = _rules({})
    fast = _rules({"time_scale": 0.01, "interval": "1s"})
    r0, r1 = base["SparkHeapFloorRisingWithFlatState"], fast["SparkHeapFloorRisingWithFlatState"]
    assert "[1h]" in r0["expr"] and "offset 6h" in r0["expr"] and r0["for"] == "1h"
    assert "[36s]" in r1["expr"] and "offset 3m36s" not in r1["expr"] and "offset 216s" in r1["expr"]
    assert r1["for"] == "36s"
    # duration thresholds (seconds) scale too, except those compared with an application's settings
    assert "> 36" in fast["SparkJobRunningTooLong"]["expr"]
    assert "> 600" in fast["SparkCleanerSettingsRisky"]["expr"] and "[36s]" in fast["SparkCleanerSettingsRisky"]["expr"]
    assert "> 60" in fast["SparkStreamingBatchSlowerThanTrigger"]["expr"]
    assert "[9s]" in fast["SparkStreamingBatchSlowerThanTrigger"]["expr"]
    groups = build_rules(parse_rules_config({"interval": "1s"}))["groups"]
    assert all(g["interval"] == "1s" for g in groups)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_compressed_rules_are_valid(tmp_path):
    p = tmp_path / "fast.yml"
    p.write_text(rules_yaml(parse_rules_config({"time_scale": 0.003, "interval": "1s"})))
    r = subprocess.run(["promtool", "check", "rules", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_durations_round_trip():
    for text, secs in (("6h", 21600), ("90s", 90), ("1d", 86400), ("150ms", 0.15), ("1h30m", 5400)):
        assert parse_duration(text) == secs
    assert format_duration(21600) == "6h" and format_duration(0.15) == "150ms" and format_duration(90) == "90s"
    with pytest.raises(ValueError):
        parse_duration("6 hours")


@pytest.mark.parametrize("data, key", [
    ({"selectr": ""}, "selectr"),
    ({"selector": "job=sparkwatch"}, "selector"),
    ({"time_scale": 0}, "time_scale"),
    ({"interval": "fast"}, "interval"),
    ({"selectors": {"hdfs": 'a="b"'}}, "selectors.hdfs"),
    ({"alerts": {"NoSuchAlert": {}}}, "alerts.NoSuchAlert"),
    ({"alerts": {"SparkJobRunningTooLong": {"for": "ten minutes"}}}, "alerts.SparkJobRunningTooLong.for"),
    ({"alerts": {"SparkJobRunningTooLong": {"params": {"max_agee": "1h"}}}},
     "alerts.SparkJobRunningTooLong.params.max_agee"),
    ({"alerts": {"SparkJobRunningTooLong": {"params": {"max_age": "1 hour"}}}},
     "alerts.SparkJobRunningTooLong.params.max_age"),
    ({"alerts": {"JvmGcTimeHigh": {"params": {"ratio": "high"}}}}, "alerts.JvmGcTimeHigh.params.ratio"),
    ({"alerts": {"JvmGcTimeHigh": {"severity": "page"}}}, "alerts.JvmGcTimeHigh.severity"),
    ({"alerts": {"LivyRestartRiskRising": {"params": {"livy_process": "("}}}},
     "alerts.LivyRestartRiskRising.params.livy_process"),
    ({"labels": {"bad-label": "x"}}, "labels"),
])
def test_bad_rules_config_names_the_key(data, key):
    with pytest.raises(ConfigError) as e:
        parse_rules_config(data, "my.yml")
    assert f"  {key}:" in str(e.value), str(e.value)
    assert str(e.value).startswith("my.yml")


def test_cli_rules_prints_customised_rules(tmp_path, capsys):
    cfg = tmp_path / "rules.yml"
    cfg.write_text(yaml.safe_dump({"selector": 'job="spark-prod"',
                                   "alerts": {"JvmJitCompilationDisabled": {"enabled": False}}}))
    assert main(["rules", "--config", str(cfg)]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    names = {r["alert"] for g in out["groups"] for r in g["rules"]}
    assert "JvmJitCompilationDisabled" not in names and "JvmCodeCacheNearlyFull" in names
    assert all('job="spark-prod"' in r["expr"] for g in out["groups"] for r in g["rules"]
               if r["alert"] != "SparkwatchExporterDown")


def test_cli_rules_rejects_a_bad_config(tmp_path, capsys):
    cfg = tmp_path / "rules.yml"
    cfg.write_text("alerts:\n  SparkJobRunningTooLong:\n    params: {max_age: soon}\n")
    assert main(["rules", "--config", str(cfg)]) == 2
    assert "alerts.SparkJobRunningTooLong.params.max_age" in capsys.readouterr().err


def test_cli_rules_as_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "sparkwatch", "rules"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ROOT / "alerts" / "sparkwatch.rules.yml").read_text()


def test_cli_dashboards_writes_every_dashboard(tmp_path, capsys):
    assert main(["dashboards", "--out", str(tmp_path / "d")]) == 0
    written = sorted(p.name for p in (tmp_path / "d").iterdir())
    committed = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
    assert written == committed and len(written) >= 4
    for name in written:
        assert json.loads((tmp_path / "d" / name).read_text()) == json.loads((ROOT / "dashboards" / name).read_text())


def test_cli_dashboards_applies_the_selector(tmp_path):
    cfg = tmp_path / "rules.yml"
    cfg.write_text('selector: \'cluster="eu"\'\n')
    assert main(["dashboards", "--out", str(tmp_path / "d"), "--config", str(cfg)]) == 0
    text = (tmp_path / "d" / "sparkwatch-jvm.json").read_text()
    assert 'cluster=\\"eu\\"' in text


# --------------------------------------------------------------------------
# Alertmanager example

AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")


@needs_amtool
def test_amtool_check_config():
    r = subprocess.run([AMTOOL, "check-config", str(ROOT / ALERTMANAGER_FILE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _route(*labels):
    r = subprocess.run([AMTOOL, "config", "routes", "test", "--config.file", str(ROOT / ALERTMANAGER_FILE), *labels],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


@needs_amtool
def test_amtool_routes_critical_to_pager_and_warning_to_ticket():
    for a in ALERTS:
        got = _route(f"alertname={a.name}", f"severity={a.severity}", f"signature={a.signature}")
        assert got == ("pager" if a.severity == "critical" else "ticket"), (a.name, got)


def test_alertmanager_inhibitions():
    cfg = yaml.safe_load((ROOT / ALERTMANAGER_FILE).read_text())
    inhibit = cfg["inhibit_rules"]
    # a target that is down silences the alerts that depend on it
    down = [r for r in inhibit if any("TargetDown" in m for m in r["source_matchers"])]
    assert down and {"component", "target"} <= set(down[0]["equal"])
    for a in ALERTS:
        if a.problem == "target-down":
            assert a.name in down[0]["source_matchers"][0]
    # critical silences warning for the same problem; every warning that has a critical sibling shares `problem`
    crit = [r for r in inhibit if r["source_matchers"] == ['severity="critical"']]
    assert crit and crit[0]["target_matchers"] == ['severity="warning"'] and "problem" in crit[0]["equal"]
    problems_with_both = {a.problem for a in ALERTS if a.severity == "critical"} & \
        {a.problem for a in ALERTS if a.severity == "warning"}
    assert {"livy-restart", "threads", "codecache"} <= problems_with_both


def test_readme_rules_config_example_is_valid_and_documents_every_top_level_key():
    readme = (ROOT / "docs" / "alerts.md").read_text()
    part = readme.split("<!-- section:alerts -->", 1)[1].split("<!-- section:", 1)[0]
    block = part.split("## The rules configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    cfg = parse_rules_config(data, "README")
    from sparkwatch.pack.rulesconfig import RulesConfig

    assert set(data) == set(RulesConfig.model_fields)
    rules = {r["alert"]: r for g in build_rules(cfg)["groups"] for r in g["rules"]}
    assert "SparkCleanerSettingsRisky" not in rules and rules["SparkJobRunningTooLong"]["for"] == "10m"
    for a in ALERTS:  # every alert is named in the section
        assert f"`{a.name}`" in part, a.name


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.mark.skipif(ALERTMANAGER is None, reason="alertmanager not installed")
def test_real_alertmanager_applies_the_inhibitions(tmp_path):
    """Post alerts to a real Alertmanager running the example config and read back which are inhibited."""
    import time

    import requests

    from testbed.procs import free_port, stop_process_group

    port = free_port()
    proc = subprocess.Popen([ALERTMANAGER, f"--config.file={ROOT / ALERTMANAGER_FILE}",
                             f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address=", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/v2"
    try:
        for _ in range(100):
            try:
                if requests.get(url + "/status", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail("alertmanager did not start")
        common = {"job": "sparkwatch", "instance": "h:9951"}

        def alert(name, **labels):
            a = next(x for x in ALERTS if x.name == name)
            lbl = dict(common, alertname=name, severity=a.severity, problem=a.problem, component=a.component,
                       signature=a.signature)
            lbl.update(labels)
            return {"labels": lbl, "annotations": {"summary": a.summary}}

        posted = [
            # the spark target 'app' is down: its stalled-query alert is silenced, another app's is not
            alert("SparkTargetDown", kind="spark", target="app"),
            alert("SparkStreamingQueryStalled", target="app", app_id="a1", query="q"),
            alert("SparkStreamingBatchSlowerThanTrigger", target="other", app_id="a2", query="q"),
            # code cache nearly full (critical) silences predicted full (warning) for the same JVM only
            alert("JvmCodeCacheNearlyFull", target="local", process="SparkSubmit", pid="1", heap="CodeCache"),
            alert("JvmCodeCachePredictedFull", target="local", process="SparkSubmit", pid="1", heap="CodeCache"),
            alert("JvmCodeCachePredictedFull", target="local", process="LivyServer", pid="2", heap="CodeCache"),
        ]
        assert requests.post(url + "/alerts", json=posted, timeout=5).status_code == 200
        # inhibition is evaluated when alerts are read back, against the sources the inhibitor has
        # seen so far (it learns them in the background): read until both expected inhibitions show
        end = time.monotonic() + 15
        while True:
            got = requests.get(url + "/alerts", timeout=5).json()
            if sum(bool(a["status"]["inhibitedBy"]) for a in got) >= 2 or time.monotonic() > end:
                break
            time.sleep(0.2)

        def inhibited(name, **labels):
            for a in got:
                if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items()):
                    return bool(a["status"]["inhibitedBy"])
            raise AssertionError(f"{name} {labels} not found")

        assert inhibited("SparkStreamingQueryStalled", target="app")
        assert not inhibited("SparkStreamingBatchSlowerThanTrigger", target="other")
        assert not inhibited("SparkTargetDown")
        assert inhibited("JvmCodeCachePredictedFull", process="SparkSubmit")
        assert not inhibited("JvmCodeCachePredictedFull", process="LivyServer")
        assert not inhibited("JvmCodeCacheNearlyFull")
    finally:
        stop_process_group(proc, grace=10)
