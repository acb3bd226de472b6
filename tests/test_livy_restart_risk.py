"""The restart-risk signal (seed 001), as the pack ships it: the alert
``LivyRestartWouldExhaustThreads``, rendered from the pack with the default
rules configuration, fires when the sessions a Livy restart would recover
exceed 90% of the Livy JVM's thread headroom (joined on the ``process`` label).
Evaluated by Prometheus' own promtool.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
import yaml

from sparkwatch.catalog import catalog
from sparkwatch.pack.alerts import BY_NAME
from sparkwatch.pack.promql import metrics_used
from sparkwatch.pack.rules import build_rules
from sparkwatch.pack.rulesconfig import parse_rules_config
from testbed.exporter import find, running_exporter, samples, scrape

CATALOG = catalog()
ROOT = Path(__file__).resolve().parent.parent
ALERT = "LivyRestartWouldExhaustThreads"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def _shipped_rule(rules_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The alert's rule exactly as the pack renders it (default rules config unless given),
    without its annotations: those are checked by the pack's generated promtool tests
    (tests/test_alerts.py); here promtool compares labels only."""
    groups = build_rules(parse_rules_config(rules_config or {}))["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == ALERT)
    return {k: v for k, v in rule.items() if k != "annotations"}


def _firing(process: str, rule: Dict[str, Any]) -> Dict[str, Any]:
    return {"exp_labels": dict(rule["labels"], process=process)}


def _promtool(tmp_path: Path, rule: Dict[str, Any], tests: dict) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "livy-restart", "rules": [rule]}]},
                                                       sort_keys=False))
    tests = dict(tests, rule_files=["rules.yml"])
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_the_documentation_shows_the_shipped_expression():
    # docs/livy.md is where the restart risk is explained; it quotes the shipped rule
    norm = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    text = norm((ROOT / "docs" / "livy.md").read_text())
    assert norm(_shipped_rule()["expr"]) in text


def test_the_series_it_joins_are_declared_with_a_process_label():
    assert "process" in CATALOG["livy_recovery_sessions"].labels
    assert "kind" in CATALOG["livy_recovery_sessions"].labels
    for name in ("jvm_process_user_threads", "jvm_process_thread_limit"):
        assert name in CATALOG, f"{name} is not exported by the jvm collector"
        assert "process" in CATALOG[name].labels
    # every series the shipped rule reads is exported, with the labels it joins on
    join = [label.strip() for label in str(BY_NAME[ALERT].params["join"].default).split(",")]
    used = metrics_used(_shipped_rule()["expr"])
    assert used == {"livy_recovery_sessions", "jvm_process_thread_headroom"}
    for name in used:
        assert name in CATALOG, f"{name} is not exported"
        assert set(join) <= set(CATALOG[name].labels), name


def test_alert_fires_when_recovered_sessions_would_exhaust_the_headroom(tmp_path):
    """A Livy JVM (jvm target on the Livy host) and its ZooKeeper store (another target):
    27,768 threads of headroom (a 32,768 limit, 5,000 threads in use); the stored sessions
    grow by 8,000 a minute, then stay."""
    rule = _shipped_rule()
    assert rule["for"] == "5m" and rule["labels"]["severity"] == "critical"
    jvm = 'target="livy-host",app_id="",executor_id="",pid=""'
    inputs = [
        {"series": f'jvm_process_thread_headroom{{{jvm},process="livy"}}', "values": "27768x15"},
        {"series": 'livy_recovery_sessions{target="zk1",kind="batch",process="livy"}', "values": "0+8000x4 32000x10"},
        {"series": 'livy_recovery_sessions{target="zk1",kind="interactive",process="livy"}', "values": "12x15"},
        # a Livy JVM named LivyServer with plenty of headroom and a small store: never fires
        {"series": f'jvm_process_thread_headroom{{{jvm},process="LivyServer"}}', "values": "4000x15"},
        {"series": 'livy_recovery_sessions{target="zk2",kind="batch",process="LivyServer"}', "values": "100x15"},
        # a JVM that is not Livy, nearly out of threads, with a store under its name: not Livy's restart, never fires
        {"series": f'jvm_process_thread_headroom{{{jvm},process="other"}}', "values": "10x15"},
        {"series": 'livy_recovery_sessions{target="zk3",kind="batch",process="other"}', "values": "100x15"},
    ]
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            # 24,012 sessions <= 0.9 x 27,768 = 24,991.2: not yet
            {"expr": rule["expr"], "eval_time": "3m", "exp_samples": []},
            # 32,012 > 24,991.2: a restart now would die with "unable to create new native thread"
            {"expr": rule["expr"], "eval_time": "4m",
             "exp_samples": [{"labels": '{process="livy"}', "value": 32000 + 12}]},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": ALERT, "exp_alerts": []},
            # pending: the condition must hold for 5 minutes
            {"eval_time": "6m", "alertname": ALERT, "exp_alerts": []},
            {"eval_time": "10m", "alertname": ALERT, "exp_alerts": [_firing("livy", rule)]},
        ],
    }]}
    r = _promtool(tmp_path, rule, tests)
    assert r.returncode == 0, r.stdout + r.stderr

    # the same test with the expression broken (no recovery sessions counted) must fail:
    # promtool really checks what we claim
    broken = dict(rule, expr=rule["expr"].replace("livy_recovery_sessions", "livy_no_such_metric"))
    r = _promtool(tmp_path, broken, tests)
    assert r.returncode != 0


@pytest.mark.zookeeper
def test_join_on_real_series(tmp_path, zk):
    """End to end: a real JVM (the ZooKeeper server of conftest.py, standing in for the Livy
    JVM: it is watched by a jvm target named 'livy') and Livy's store with 40,000 batches in
    that ZooKeeper; the scraped series, fed to promtool, join on process in the shipped rule."""
    cfg = {"exporter": {"scrape_timeout": 20},
           "zookeeper": [{"hosts": zk.hosts, "name": "zk", "mntr": False,
                          "livy_state_store": {"process": "livy"}}],
           "jvm": [{"name": "livy", "match": re.escape(str(zk.cfg)), "tcp_connections": False}]}
    with running_exporter(cfg) as (base, _):
        ss = samples(scrape(base))
    headroom = find(ss, "jvm_process_thread_headroom", process="livy")
    rec = find(ss, "livy_recovery_sessions", process="livy")
    assert headroom and rec, "a joined series is missing from the scrape"

    def series(s):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s[1].items()))
        return {"series": f"{s[0]}{{{labels}}}", "values": f"{s[2]:.0f}x10"}

    sessions = sum(s[2] for s in rec)
    least = min(s[2] for s in headroom)
    assert sessions == 40000

    def check(rule, fires):
        tests = {"evaluation_interval": "1m", "tests": [{
            "interval": "1m",
            "input_series": [series(s) for s in headroom + rec],
            "alert_rule_test": [{"eval_time": "8m", "alertname": ALERT,
                                 "exp_alerts": [_firing("livy", rule)] if fires else []}],
        }]}
        r = _promtool(tmp_path, rule, tests)
        assert r.returncode == 0, r.stdout + r.stderr

    # the default rule: it fires exactly when the 40,000 stored sessions exceed 90% of the headroom
    check(_shipped_rule(), sessions > 0.9 * least)
    # the same rule with a ratio (a rules config parameter) the store must exceed: the series join
    ratio = sessions / max(least, 1) / 2
    check(_shipped_rule({"alerts": {ALERT: {"params": {"ratio": ratio}}}}), True)
