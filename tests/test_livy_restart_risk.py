"""The restart-risk signal (seed 001): threads the Livy process' user runs now
plus the sessions a Livy restart would recover, against the thread limit,
joined on the ``process`` label. Evaluated by Prometheus' own promtool.

The expression is the one the README documents (``RESTART_RISK`` below is
checked against it). The real alert rule belongs to the alerting pack.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from kazoo.client import KazooClient

from exporter.catalog import catalog
from testbed.exporter import find, running_exporter, samples, scrape
from testbed.zookeeper import available, write_livy_store, zookeeper_server

CATALOG = catalog()

ROOT = Path(__file__).resolve().parent.parent

THREADS_IF_RESTARTED = """\
  max by (process) (jvm_process_user_threads)
+ on (process)
  sum by (process) (livy_recovery_sessions)"""

RESTART_RISK = THREADS_IF_RESTARTED + """
>= on (process)
  min by (process) (jvm_process_thread_limit)"""

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def _promtool(tmp_path: Path, rules: dict, tests: dict) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = dict(tests, rule_files=["rules.yml"])
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def _rules():
    return {"groups": [{"name": "livy-restart-risk", "rules": [
        {"record": "livy:threads_if_restarted", "expr": THREADS_IF_RESTARTED},
        {"alert": "LivyRestartWouldExhaustThreads", "expr": RESTART_RISK, "for": "0m",
         "labels": {"severity": "critical"}},
    ]}]}


def test_the_readme_shows_this_expression():
    readme = (ROOT / "README.md").read_text()
    norm = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    assert norm(RESTART_RISK) in norm(readme)


def test_the_series_it_joins_are_declared_with_a_process_label():
    assert "process" in CATALOG["livy_recovery_sessions"].labels
    assert "kind" in CATALOG["livy_recovery_sessions"].labels
    for name in ("jvm_process_user_threads", "jvm_process_thread_limit"):
        assert name in CATALOG, f"{name} is not exported by the jvm collector"
        assert "process" in CATALOG[name].labels


def test_alert_fires_when_recovered_sessions_would_exhaust_the_limit(tmp_path):
    """A Livy JVM (jvm target on the Livy host) and its ZooKeeper store (another target):
    5,000 threads in use, a 32,768 limit; the stored sessions grow by 8,000 a step."""
    inputs = [
        {"series": 'jvm_process_user_threads{target="livy-host",process="livy",app_id="",executor_id="",pid=""}',
         "values": "5000x6"},
        {"series": 'jvm_process_thread_limit{target="livy-host",process="livy",app_id="",executor_id="",pid=""}',
         "values": "32768x6"},
        {"series": 'livy_recovery_sessions{target="zk1",kind="batch",process="livy"}',
         "values": "0+8000x6"},
        {"series": 'livy_recovery_sessions{target="zk1",kind="interactive",process="livy"}',
         "values": "12x6"},
        # another JVM with plenty of headroom and a store that is empty: never fires
        {"series": 'jvm_process_user_threads{target="h2",process="other",app_id="",executor_id="",pid=""}',
         "values": "100x6"},
        {"series": 'jvm_process_thread_limit{target="h2",process="other",app_id="",executor_id="",pid=""}',
         "values": "4096x6"},
        {"series": 'livy_recovery_sessions{target="zk2",kind="batch",process="other"}', "values": "0x6"},
    ]
    alert = {"severity": "critical", "process": "livy"}
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": "livy:threads_if_restarted", "eval_time": "3m",
             "exp_samples": [{"labels": 'livy:threads_if_restarted{process="livy"}', "value": 5000 + 24000 + 12},
                             {"labels": 'livy:threads_if_restarted{process="other"}', "value": 100}]},
        ],
        "alert_rule_test": [
            # 5,000 + 24,012 = 29,012 < 32,768: not yet
            {"eval_time": "3m", "alertname": "LivyRestartWouldExhaustThreads", "exp_alerts": []},
            # 5,000 + 32,012 = 37,012 >= 32,768: a restart now would die with "unable to create new native thread"
            {"eval_time": "4m", "alertname": "LivyRestartWouldExhaustThreads",
             "exp_alerts": [{"exp_labels": alert}]},
        ],
    }]}
    r = _promtool(tmp_path, _rules(), tests)
    assert r.returncode == 0, r.stdout + r.stderr

    # the same test with the expression broken (no recovery sessions counted) must fail:
    # promtool really checks what we claim
    broken = _rules()
    broken["groups"][0]["rules"][1]["expr"] = RESTART_RISK.replace("livy_recovery_sessions", "livy_no_such_metric")
    r = _promtool(tmp_path, broken, tests)
    assert r.returncode != 0


@pytest.mark.zookeeper
@pytest.mark.skipif(not available(), reason="Debian zookeeper not installed")
def test_join_on_real_series(tmp_path):
    """End to end: a real JVM (the ZooKeeper server, standing in for the Livy JVM: it is
    watched by a jvm target named 'livy-server') and Livy's store with 40,000 batches in
    that ZooKeeper; the scraped series, fed to promtool, join on process."""
    with zookeeper_server(tmp_path / "zk") as zk:
        c = KazooClient(hosts=zk.hosts)
        c.start(30)
        write_livy_store(c, "livy", "batch", 40000)
        c.stop()
        c.close()
        cfg = {"exporter": {"scrape_timeout": 20},
               "zookeeper": [{"hosts": zk.hosts, "name": "zk", "mntr": False,
                              "livy_state_store": {"process": "livy-server"}}],
               "jvm": [{"name": "livy-server", "match": re.escape(str(zk.cfg)), "tcp_connections": False}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    user_threads = find(ss, "jvm_process_user_threads", process="livy-server")
    limit = find(ss, "jvm_process_thread_limit", process="livy-server")
    rec = find(ss, "livy_recovery_sessions", process="livy-server")
    assert user_threads and limit and rec, "a joined series is missing from the scrape"

    def series(s):
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s[1].items()))
        return {"series": f"{s[0]}{{{labels}}}", "values": f"{s[2]:.0f}x3"}

    expected = max(s[2] for s in user_threads) + 40000
    risk = expected >= min(s[2] for s in limit)
    tests = {"evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [series(s) for s in user_threads + limit + rec],
        "promql_expr_test": [{"expr": "livy:threads_if_restarted", "eval_time": "2m",
                              "exp_samples": [{"labels": 'livy:threads_if_restarted{process="livy-server"}',
                                               "value": expected}]}],
        "alert_rule_test": [{"eval_time": "2m", "alertname": "LivyRestartWouldExhaustThreads",
                             "exp_alerts": ([{"exp_labels": {"severity": "critical", "process": "livy-server"}}]
                                            if risk else [])}],
    }]}
    r = _promtool(tmp_path, _rules(), tests)
    assert r.returncode == 0, r.stdout + r.stderr
