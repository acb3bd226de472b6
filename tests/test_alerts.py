"""The alerting rules: promtool, the war-story replays, and lint over the generated files."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from sparkwatch.catalog import catalog
from sparkwatch.collectors import COLLECTOR_KINDS
from sparkwatch.pack.alerts import ALERTS, BY_NAME
from sparkwatch.pack.promql import (
    PROMETHEUS_METRICS,
    all_template_actions,
    metrics_used,
    parse_duration,
    template_labels,
)
from sparkwatch.pack.rules import RULES_FILE, TESTS_FILE
from sparkwatch.pack.signatures import SIGNATURES

CATALOG = catalog()

ROOT = Path(__file__).resolve().parent.parent
RULES = yaml.safe_load((ROOT / RULES_FILE).read_text())
TESTS = yaml.safe_load((ROOT / TESTS_FILE).read_text())
RULE_LIST = [r for g in RULES["groups"] for r in g["rules"]]

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def _promtool(*args, cwd=None, timeout=300):
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@needs_promtool
def test_promtool_check_rules_on_committed_rules():
    r = _promtool("check", "rules", str(ROOT / RULES_FILE))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout


@needs_promtool
@pytest.mark.slow
def test_promtool_replays_every_war_story_and_healthy_series(tmp_path):
    """Each alert alone (its rule exactly as committed, its test groups exactly as committed), in parallel:
    promtool evaluates every rule of a file for every test group, so one file per alert is ~30x faster
    than the committed all-in-one test file, which tests the same thing."""
    by_alert = {}
    for g in TESTS["tests"]:
        by_alert.setdefault(g["alert_rule_test"][0]["alertname"], []).append(g)
    assert set(by_alert) == {r["alert"] for r in RULE_LIST}

    def run(rule):
        d = tmp_path / rule["alert"]
        d.mkdir()
        (d / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
        tests = {"rule_files": ["rules.yml"], "evaluation_interval": TESTS["evaluation_interval"],
                 "tests": by_alert[rule["alert"]]}
        (d / "test.yml").write_text(yaml.safe_dump(tests))
        return rule["alert"], _promtool("test", "rules", "test.yml", cwd=d)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, RULE_LIST))
    failed = {name: r.stdout + r.stderr for name, r in results if r.returncode != 0}
    assert not failed, "\n".join(f"--- {k}\n{v}" for k, v in failed.items())


def test_every_alert_fires_on_its_war_story_only_after_a_quiet_period_and_has_a_healthy_replay():
    for a in ALERTS:
        assert a.story.fires, a.name
        assert a.story.labels, a.name
        assert a.story.quiet, f"{a.name}: the war story must also assert an earlier time at which it is quiet"
        assert max(parse_duration(t) for t in a.story.quiet) < parse_duration(a.story.fires), a.name
        assert a.healthy, f"{a.name}: needs a healthy or busy replay on which it stays quiet"
        for h in a.healthy:
            assert h.fires is None and h.quiet, a.name
    # the committed test file holds them all
    names = [g["name"] for g in TESTS["tests"]]
    for a in ALERTS:
        assert any(n.startswith(f"{a.name} war story") for n in names), a.name
        assert any(n.startswith(f"{a.name} healthy") for n in names), a.name


def test_alerts_fire_before_the_failure_of_their_war_story():
    timed = [a for a in ALERTS if a.story.failure]
    assert len(timed) >= 10
    for a in timed:
        assert parse_duration(a.story.fires) < parse_duration(a.story.failure), a.name
        assert a.story.failure_is, a.name
    # every trend alert of S2, S3 and S5 that predicts a limit says when the limit is hit
    for name in ("LivyRestartWouldExhaustThreads", "LivyRestartRiskRising", "JvmThreadsNearLimit",
                 "JvmThreadsPredictedToHitLimit", "SparkHeapFloorRisingWithFlatState", "JvmHeapFloorNearlyFull",
                 "JvmFileDescriptorsPredictedExhausted", "JvmCodeCachePredictedFull", "JvmCodeCacheNearlyFull"):
        assert BY_NAME[name].story.failure, name


def test_the_issue_specific_healthy_cases_exist():
    # S3: heap rising together with state rows is not a leak; S1: many running sessions are not a pile-up
    s3 = BY_NAME["SparkHeapFloorRisingWithFlatState"]
    assert any("state rows" in h.name and "rising" in h.name for h in s3.healthy)
    assert any("spark_streaming_state_rows" in s and "+" in v for h in s3.healthy for s, v in h.series)
    s1 = BY_NAME["LivyFinishedSessionsPilingUp"]
    assert any('state="running"' in s and (v.startswith("500") or "+" in v) for h in s1.healthy for s, v in h.series)


def test_each_signature_has_an_alert_and_every_kind_a_target_down_alert():
    for sig in ("S1", "S2", "S3", "S4", "S5"):
        assert any(a.signature == sig for a in ALERTS), sig
    down = {a.component for a in ALERTS if a.problem == "target-down"}
    assert set(COLLECTOR_KINDS) <= down, f"kinds without a target-down alert: {set(COLLECTOR_KINDS) - down}"
    # critical pages exist for the imminent failures and warnings for the trends
    assert {a.severity for a in ALERTS} == {"critical", "warning"}
    for sig in ("S2", "S3", "S4", "S5"):
        assert any(a.signature == sig and a.severity == "critical" for a in ALERTS), sig


# --------------------------------------------------------------------------
# lint over the generated rules file


def test_rule_groups_cover_every_alert_once():
    assert sorted(r["alert"] for r in RULE_LIST) == sorted(a.name for a in ALERTS)


@pytest.mark.parametrize("rule", RULE_LIST, ids=lambda r: r["alert"])
def test_lint_rule(rule):
    name = rule["alert"]
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", name), f"{name} is not CamelCase"
    labels, ann = rule["labels"], rule["annotations"]
    assert labels["severity"] in ("critical", "warning")
    assert labels["signature"] in SIGNATURES
    assert labels["problem"] and labels["component"]
    assert set(ann) == {"summary", "description", "runbook_url"}
    # static summary
    assert "{{" not in ann["summary"] and "$" not in ann["summary"], ann["summary"]
    # templated description, with locating labels, and only label templates we can render in tests
    actions = all_template_actions(ann["description"])
    assert actions, f"{name}: description has no template"
    assert all(re.fullmatch(r"\{\{ \$labels\.[a-z_]+ \}\}", x) for x in actions), actions
    used = set(template_labels(ann["description"]))
    assert used & {"target", "instance", "process", "app_id", "job"}, f"{name}: description does not locate"
    story_labels = set().union(*[set(lbl) for lbl in BY_NAME[name].story.labels])
    assert used <= story_labels, f"{name}: description uses labels the alert does not carry: {used - story_labels}"
    assert "$" not in re.sub(r"\{\{ \$labels\.[a-z_]+ \}\}", "", ann["description"]), "unrendered parameter"
    # runbook in this repository
    m = re.search(r"/alerts/runbooks/([A-Za-z]+\.md)$", ann["runbook_url"])
    assert m, ann["runbook_url"]
    runbook = ROOT / "alerts" / "runbooks" / m.group(1)
    assert runbook.is_file(), runbook
    text = runbook.read_text()
    for heading in ("## What the signal means", "## How to confirm it", "## What to do", "The fix the war story found"):
        assert heading in text, f"{runbook}: {heading}"
    # for: against flapping on trends (and a parsable duration)
    if "for" in rule:
        parse_duration(rule["for"])
    if any(f in rule["expr"] for f in ("predict_linear", "deriv", "min_over_time", "delta(")):
        assert parse_duration(rule.get("for", "0s")) > 0, f"{name}: a trend alert needs for:"


@pytest.mark.parametrize("rule", RULE_LIST, ids=lambda r: r["alert"])
def test_every_metric_a_rule_uses_is_exported(rule):
    used = metrics_used(rule["expr"])
    assert used, rule["expr"]
    unknown = {m for m in used if m not in CATALOG and m not in PROMETHEUS_METRICS}
    assert not unknown, f"{rule['alert']} uses metrics the exporter does not export: {unknown}"
    # and the label names it aggregates by or matches on exist on those metrics
    declared = {"job", "instance", "target"}
    for m in used:
        if m in CATALOG:
            declared |= set(CATALOG[m].labels)
    declared |= {"heap", "space", "process"}  # set by label_replace in the Spark driver branches
    for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", rule["expr"]):
        for lbl in (x.strip() for x in group.split(",") if x.strip()):
            assert lbl in declared, f"{rule['alert']}: label {lbl} is not on any metric it reads"


def test_trends_are_computed_by_prometheus():
    exprs = " ".join(r["expr"] for r in RULE_LIST)
    for fn in ("predict_linear(", "min_over_time(", "delta("):
        assert fn in exprs


def test_rules_keep_each_attempt_of_an_application_apart():
    """Every label that identifies an application's Spark series (the spark collector's APP_LABELS,
    attempt_id included: a history server may export several attempts of one application) is in the
    labels the rules aggregate by and join on, so that two attempts are never summed or matched as one."""
    from sparkwatch.collectors.spark.metrics import APP_LABELS
    from sparkwatch.pack.expressions import APP_JOIN_LABELS, APP_SERIES_LABELS

    series = {x.strip() for x in APP_SERIES_LABELS.split(",")}
    join = {x.strip() for x in APP_JOIN_LABELS.split(",")}
    assert set(APP_LABELS) <= series
    assert set(APP_LABELS) - {"app_name"} <= join  # the name may differ between an application's series
