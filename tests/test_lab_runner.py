"""The incident lab's machinery, without starting anything slow: its rules config goes
through the pack's rules config (not a copy of the rules), the verdicts and the docs/lab.md
table it prints."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparkwatch.pack.rules import build_rules
from sparkwatch.pack.rulesconfig import load_rules_config
from lab.core import RULES_CONFIG, AlertResult, Expect, Fired, FiredAlerts, Result, evaluate, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def _rules(cfg=None):
    return {r["alert"]: r for g in build_rules(cfg)["groups"] for r in g["rules"]}


def test_lab_rules_are_the_shipped_rules_with_compressed_windows():
    lab = _rules(load_rules_config(RULES_CONFIG))
    shipped = _rules()
    assert set(lab) == set(shipped)  # every alert of the pack is loaded, none added
    assert shipped["LivyRestartRiskRising"]["for"] == "1h" and lab["LivyRestartRiskRising"]["for"] == "1m"
    assert "[6h]" in shipped["LivyRestartRiskRising"]["expr"] and "[6m]" in lab["LivyRestartRiskRising"]["expr"]
    assert lab["JvmJitCompilationDisabled"]["expr"] == shipped["JvmJitCompilationDisabled"]["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_generated_through_the_cli_and_accepted_by_promtool(tmp_path):
    out = tmp_path / "rules.yml"
    r = subprocess.run([sys.executable, "-m", "sparkwatch", "rules", "--config", str(RULES_CONFIG), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(out.read_text()) == build_rules(load_rules_config(RULES_CONFIG))
    r = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _watch(*fired: Fired) -> FiredAlerts:
    return FiredAlerts({f"{f.alertname}{i}": f for i, f in enumerate(fired)})


def test_a_view_is_the_alerts_it_keeps_when_it_is_taken():
    # how a cluster scenario sees its own alerts (by app_id or pid), and S4b those after S4a's
    w = _watch(Fired("A", "warning", {"app_id": "app-1"}, 1.0, 1100.0),
               Fired("A", "critical", {"app_id": "app-2"}, 1.0, 1050.0),
               Fired("B", "warning", {"app_id": "app-2"}, 1.0, 1060.0))
    v = w.view(lambda labels: labels.get("app_id") == "app-1")
    assert v.names() == ["A"] and v.first("A").fired_at == 1100.0 and v.first("B") is None
    assert w.names() == ["A", "B"] and w.first("A").fired_at == 1050.0  # the watch itself keeps everything
    w.fired["late"] = Fired("C", "warning", {"app_id": "app-1"}, 1.0, 1200.0)
    assert v.names() == ["A"]  # a snapshot: what fired after it was taken is not in it
    seen = [f.labels for f in w.fired.values()]
    w.fired["later"] = Fired("D", "warning", {"app_id": "app-3"}, 1.0, 1300.0)
    assert w.view(lambda labels: labels not in seen).names() == ["D"]


def _result(**kw):
    return Result("S9", "test", "induced", "the failure", "meaning", started_at=1000.0, trouble_at=1000.0, **kw)


def test_an_alert_after_the_failure_is_not_a_warning_in_time():
    w = _watch(Fired("Early", "warning", {}, 1090.0, 1100.0), Fired("Late", "critical", {}, 1290.0, 1300.0))
    r = evaluate(_result(failure_at=1200.0), w, [Expect("Early"), Expect("Late")])
    assert not r.ok
    assert [a.lead_s for a in r.alerts] == [100.0, -100.0]
    assert any("Late fired 100s after the failure" in p for p in r.problems)
    r = evaluate(_result(failure_at=1200.0), w, [Expect("Early"), Expect("Late", "after")])
    assert r.ok, r.problems


def test_an_early_warning_needs_a_quarter_of_the_course_as_lead():
    # trouble at 1000, failure at 1400: a quarter of the course is 100 s
    w = _watch(Fired("Trend", "warning", {}, 1200.0, 1320.0))
    r = evaluate(_result(failure_at=1400.0), w, [Expect("Trend", min_lead_share=0.25)])
    assert not r.ok and "less than 0.25 of the 400s" in r.problems[0]
    w = _watch(Fired("Trend", "warning", {}, 1200.0, 1300.0))
    r = evaluate(_result(failure_at=1400.0), w, [Expect("Trend", min_lead_share=0.25)])
    assert r.ok, r.problems
    assert r.alerts[0].lead_s == 100.0


def test_missing_alert_and_unobserved_failure_fail():
    r = evaluate(_result(), _watch(Fired("A", "warning", {}, 1.0, 1100.0)), [Expect("A"), Expect("B", "after")])
    assert not r.ok
    assert "B did not fire" in r.problems
    assert any("failure was never observed" in p for p in r.problems)


def test_baseline_any_alert_is_a_false_positive():
    r = evaluate(_result(), _watch(), [], forbid_all=True)
    assert r.ok
    r = evaluate(_result(), _watch(Fired("SparkStreamingQueryStalled", "critical", {"query": "q"}, 1.0, 1500.0)), [],
                 forbid_all=True)
    assert not r.ok and "SparkStreamingQueryStalled fired" in r.problems[0]


def test_markdown_table():
    r = _result(failure_at=1200.0)
    r.alerts = [AlertResult("JvmCodeCachePredictedFull", "warning", 1030.0, 30.0, 170.0, "before", True),
                AlertResult("JvmJitCompilationDisabled", "critical", 1205.0, 205.0, -5.0, "after", True),
                AlertResult("SparkTargetDown", "critical", 1100.0, 100.0, 100.0, "", True)]
    b = Result("baseline", "healthy", "", "none", "", 0.0, ok=True)
    lines = markdown_table([r, b]).splitlines()
    assert lines[0].startswith("| scenario |")
    assert lines[2] == ("| **S9** test | the failure | `JvmCodeCachePredictedFull` | warning | 30s | 2m50s |")
    assert lines[3] == "|  |  | `JvmJitCompilationDisabled` | critical | 3m25s | 5s after |"
    assert lines[4] == "|  |  | `SparkTargetDown` (also) | critical | 1m40s | 1m40s |"
    assert lines[5] == "| **baseline** healthy | none | none fired (as required) | | | |"


def test_cli_lists_the_scenarios():
    r = subprocess.run([sys.executable, "-m", "lab", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for name in ("s1", "s2", "s3-heap", "s3-threads", "s4", "s5", "baseline", "cluster"):
        assert name in r.stdout
    r = subprocess.run([sys.executable, "-m", "lab", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown scenario" in r.stderr


def test_readme_section_shows_a_table_of_every_scenario():
    readme = (ROOT / "docs" / "lab.md").read_text()  # the lab's page: the section is the rest of it
    assert "# See it catch the war stories" in readme
    section = readme.split("# See it catch the war stories", 1)[1]
    assert "<!-- lab:table -->" in section
    header = markdown_table([]).splitlines()[0]
    assert header in section  # the table the runner prints
    for scenario in ("S1", "S2", "S3a", "S3b", "S4a", "S4b", "S4c", "S5", "baseline"):
        assert f"| **{scenario}** " in section, scenario
    for name in ("s1", "s2", "s3-heap", "s3-threads", "s4", "s5", "baseline", "cluster"):
        assert f"`{name}`" in section, name


def test_all_runs_the_cluster_first_and_nothing_with_a_jvm_beside_it():
    from lab.__main__ import ALL, PHASES, phases_for

    assert PHASES[0][0] == ["cluster"]
    assert all(n == "s1" for lane in PHASES[0][1:] for n in lane)  # S1 starts no JVM
    assert set(ALL) == {"cluster", "s1", "s2", "s4"}
    assert phases_for(["s1", "s5"]) == [[["s1"]], [["s5"]]]


def test_cluster_executors_run_without_forced_collections(monkeypatch):
    """Issue 21, item 3: the cluster's executors are production's: no periodic GC plugin, even
    with the lab's jar (of UDFs) at hand."""
    import importlib

    c = importlib.import_module("lab.scenarios.cluster")  # the module (lab.scenarios.cluster is also its function)
    monkeypatch.setattr(c, "_JAR", [Path("/nonexistent/sparkwatch-lab-udfs.jar")])
    conf = " ".join(c._cluster_conf({"spark.executor.cores": "2"}))
    assert "spark.executor.cores=2" in conf
    assert "PeriodicGc" not in conf and "spark.plugins" not in conf and "executorGcSeconds" not in conf, conf


def test_a_scenario_waits_for_its_own_view_of_an_alert():
    """The long view's copy of an alert (lab_view=long) fired a moment before the lab's own: a
    scenario that waits for the alert must not stop waiting, and judge, on the copy."""
    from lab.core import VIEW_LABEL, AlertWatch

    w = AlertWatch(prom=None)  # not started: the test fills what it saw
    w.fired["long"] = Fired("A", "critical", {"alertname": "A", VIEW_LABEL: "long"}, 1.0, 2.0)
    own = lambda labels: VIEW_LABEL not in labels  # noqa: E731
    assert w.wait(["A"], 0.2) and not w.wait(["A"], 0.2, keep=own)
    w.fired["own"] = Fired("A", "critical", {"alertname": "A"}, 1.0, 3.0)
    assert w.wait(["A"], 0.2, keep=own)


def test_the_long_view_is_the_lab_rules_at_its_scale_with_every_window_of_three_scrapes(tmp_path):
    import re

    from lab.core import RULES_CONFIG, VIEW_LABEL, View, view_rules_config
    from sparkwatch.pack.alerts import ALERTS
    from sparkwatch.pack.promql import parse_duration
    from sparkwatch.pack.rules import build_rules
    from sparkwatch.pack.rulesconfig import load_rules_config

    view = View("long", 1 / 120)
    cfg = load_rules_config(view_rules_config(RULES_CONFIG, view, tmp_path / "long.yml"))
    assert cfg.time_scale == view.time_scale and cfg.labels[VIEW_LABEL] == "long"
    rules = {r["alert"]: r for g in build_rules(cfg)["groups"] for r in g["rules"]}
    lab = {r["alert"]: r for g in build_rules(load_rules_config(RULES_CONFIG))["groups"] for r in g["rules"]}
    assert set(rules) == {a.name for a in ALERTS} and all(r["labels"][VIEW_LABEL] == "long" for r in rules.values())
    windows = {name: [parse_duration(w) for w in re.findall(r"\[([0-9.]+(?:ms|s|m|h|d))(?::[^\]]*)?\]", r["expr"])]
               for name, r in rules.items()}
    assert all(w >= 3 * view.scrape_s for ws in windows.values() for w in ws), windows
    # at half the lab's scale, what was long enough stays half as long; what was not is three scrapes
    assert "[9s]" in rules["JvmGcTimeHigh"]["expr"] and "[10s]" in lab["JvmGcTimeHigh"]["expr"]
    assert "[3m]" in rules["LivyRestartRiskRising"]["expr"] and "[6m]" in lab["LivyRestartRiskRising"]["expr"]
