"""``sparkwatch doctor --prometheus URL`` against a real Prometheus loaded with the
shipped rules (``alerts/sparkwatch.rules.yml``, unchanged: real windows of hours).

Seven and a half hours of history are written into its storage before it starts
(``promtool tsdb create-blocks-from openmetrics``, testbed/prometheus.py), and it
scrapes a loopback server that continues the same series now: an executor whose
old generation's floor rises 31% in 6 h with the streaming state rows flat, a JVM
whose loaded classes never unload, a query that stopped reporting 20 minutes ago
while its application runs (its name hostile: an escape sequence and 5,000
characters), an application that ran for ten hours and is gone, and the same gone
query on a target the doctor does not check. Its rules then find the trend alerts
pending and the gone query and application firing; the doctor must name each, with
the numbers, the fix and the runbook, and leave the other target's alone.

Also: Prometheus behind basic auth (the doctor without the credentials says so);
a Prometheus that cannot be reached, hangs, or answers what is not its API (a setup
finding, within --prometheus.timeout); one without the pack's rules; bad flags
(exit 2, naming the flag).
"""

from __future__ import annotations

import math
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import bcrypt
import pytest
import requests
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from sparkwatch.cli import main
from sparkwatch.pack.alerts import BY_NAME
from testbed.faulty_http import faulty_server
from testbed.procs import free_port
from testbed.prometheus import available, prometheus_server, write_history
from tests.test_doctor import Run, check_shape, write_config

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "sparkwatch.rules.yml"
HOUR = 3600.0

pytestmark = pytest.mark.skipif(not available(), reason="prometheus and promtool not installed")

# the world Prometheus remembers
APP = "app-20261206-0007"  # the streaming application of the leaking executor
EXECUTOR = {"target": "worker", "process": "CoarseGrainedExecutorBackend", "app_id": APP, "executor_id": "3",
            "pid": ""}
CLASSES_JVM = {"target": "worker", "process": "driver-service", "app_id": "", "executor_id": "", "pid": ""}
STATE = {"target": "etl", "app_id": APP, "app_name": "sessions", "query": "sessionize"}
HOSTILE_NAME = "enrich\x1b[2J\x1b[31mRED" + "x" * 5000
GONE_QUERY = {"target": "etl", "app_id": "app-20261206-0011", "app_name": HOSTILE_NAME, "query": "enrich"}
FOREIGN_QUERY = dict(GONE_QUERY, target="other-host-etl", app_id="app-20261206-0099", app_name="foreign")
GONE_APP = {"target": "cluster", "app_id": "app-20261205-0001", "app_name": "billing"}

#: a JVM of no application whose old generation's floor rises 4 MB a minute towards its 4.5 GB maximum
FAST_JVM = {"target": "worker", "process": "ingest-service", "app_id": "", "executor_id": "", "pid": ""}
FAST_PER_MINUTE, FAST_MAX = 4e6, 4.5e9
FLOOR_RISE_6H = 0.31  # the executor's old generation floor, over 6 h
OLD_BASE = 1.0e9
SAW = 600.0  # an old-generation collection every 10 minutes
CLASSES_PER_MINUTE = 50.0
GONE_AGO = 20 * 60.0  # the query and the application stopped reporting this long ago


def old_gen(t: float, start: float) -> float:
    """The executor's old generation: a sawtooth over a floor rising FLOOR_RISE_6H in 6 h."""
    base = OLD_BASE * (1 + FLOOR_RISE_6H * (t - start) / (6 * HOUR))
    return base + 4e8 * ((t - start) % SAW) / SAW


def fast_old_gen(t: float, start: float) -> float:
    """FAST_JVM's old generation: the same sawtooth over a floor rising FAST_PER_MINUTE."""
    return OLD_BASE + FAST_PER_MINUTE * (t - start) / 60 + 4e8 * ((t - start) % SAW) / SAW


def series_at(t: float, start: float, now0: float) -> List[Tuple[str, Dict[str, str], float]]:
    """Every series of the world at Unix time ``t`` (``start``: history begins; ``now0``: the test's start)."""
    out = [
        ("jvm_memory_space_used_bytes", dict(EXECUTOR, space="old"), old_gen(t, start)),
        ("jvm_gc_collections_total", dict(EXECUTOR, collector="G1 concurrent cycle pauses"), (t - start) // SAW),
        ("jvm_memory_space_used_bytes", dict(FAST_JVM, space="old"), fast_old_gen(t, start)),
        ("jvm_memory_space_max_bytes", dict(FAST_JVM, space="old"), FAST_MAX),
        ("jvm_gc_collections_total", dict(FAST_JVM, collector="G1 concurrent cycle pauses"), (t - start) // SAW),
        ("spark_streaming_state_rows", STATE, 1079 + 5 * math.sin(t / 300)),
        ("spark_app_info", {"target": "etl", "app_id": APP, "app_name": "sessions", "spark_version": "4.0.1",
                            "spark_user": "etl"}, 1),
        ("jvm_classes_currently_loaded", CLASSES_JVM, 20000 + CLASSES_PER_MINUTE * (t - start) / 60),
        ("spark_app_info", {"target": "etl", "app_id": GONE_QUERY["app_id"], "app_name": HOSTILE_NAME,
                            "spark_version": "4.0.1", "spark_user": "etl"}, 1),
        ("spark_app_info", {"target": "other-host-etl", "app_id": FOREIGN_QUERY["app_id"], "app_name": "foreign",
                            "spark_version": "4.0.1", "spark_user": "etl"}, 1),
        ("sparkwatch_target_up", {"target": "cluster", "kind": "spark"}, 1),
        ("sparkwatch_target_up", {"target": "etl", "kind": "spark"}, 1),
        ("sparkwatch_target_up", {"target": "worker", "kind": "jvm"}, 1),
    ]
    if t < now0 - GONE_AGO:
        out += [("spark_streaming_input_rows_per_second", GONE_QUERY, 42.0),
                ("spark_streaming_input_rows_per_second", FOREIGN_QUERY, 42.0),
                ("spark_app_uptime_seconds", GONE_APP, 10 * HOUR + (t - start))]
    return out


class World:
    """The series now, as an exporter would serve them (prometheus_client's exposition)."""

    def __init__(self, start: float, now0: float):
        self.start, self.now0 = start, now0

    def collect(self):
        families: Dict[str, GaugeMetricFamily] = {}
        for name, labels, v in series_at(time.time(), self.start, self.now0):
            keys = sorted(labels)  # the same label names for every series of a name, here
            fam = families.setdefault(name, GaugeMetricFamily(name, name, labels=keys))
            fam.add_metric([labels[k] for k in keys], v)
        return list(families.values())


@contextmanager
def exporter_stand_in(start: float, now0: float) -> Iterator[str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(World(start, now0))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


PASSWORD = "doctor-s3cret"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[Tuple[str, Path, float]]:
    """The real Prometheus with the shipped rules, its history written, its alerts evaluated; behind
    basic auth (user doctor). Yields its URL, the password file and when its history starts."""
    work = tmp_path_factory.mktemp("prometheus")
    now0 = time.time()
    start = now0 - 7.5 * HOUR
    with exporter_stand_in(start, now0) as instance:
        history = []
        t = start
        while t < now0 - 15:
            for name, labels, v in series_at(t, start, now0):
                history.append((name, dict(labels, job="sparkwatch", instance=instance), float(v), t))
            t += 60
        write_history(history, work / "data", work)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "sparkwatch", "static_configs": [{"targets": [instance]}]}]}
        web = {"basic_auth_users": {"doctor": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}}
        with prometheus_server(config, [RULES], work, web_config=web, auth=("doctor", PASSWORD)) as url:
            password_file = work / "password"
            password_file.write_text(PASSWORD + "\n")
            wanted = {("JvmHeapFloorRisingWithFlatState", "pending"), ("JvmLoadedClassesRising", "pending"),
                      ("JvmHeapFloorPredictedFull", "pending"),
                      ("SparkStreamingQueryTerminated", "firing"), ("SparkApplicationVanished", "firing")}
            end = time.monotonic() + 90
            while True:
                got = requests.get(url + "/api/v1/query", params={"query": "ALERTS"}, timeout=10,
                                   auth=("doctor", PASSWORD)).json()["data"]["result"]
                states = {(r["metric"]["alertname"], r["metric"]["alertstate"]) for r in got}
                if wanted <= states:
                    break
                assert time.monotonic() < end, f"Prometheus' rules did not get there: {sorted(states)}"
                time.sleep(1)
            yield url, password_file, start


def doctor_config() -> dict:
    """The doctor checks etl, cluster and worker (not other-host-etl); their readings fail here (nothing
    listens at etl's and cluster's URLs, no JVM matches worker): Prometheus is what knows."""
    closed = free_port()
    return {"spark": [{"name": "etl", "url": f"http://127.0.0.1:{closed}"},
                      {"name": "cluster", "url": f"http://127.0.0.1:{closed}/cluster"}],
            "jvm": [{"name": "worker", "match": "sparkwatch-doctor-prometheus-no-such-jvm"}]}


def doctor(capsys, cfg: dict, *args: str, as_json: bool = True) -> Run:
    argv = ["doctor", "--config.file", write_config(cfg)] + (["--json"] if as_json else []) + list(args)
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    run = Run(rc, out, err)
    if as_json:
        check_shape(run.doc)
    return run


def by_runbook(run: Run, alert: str) -> List[dict]:
    return run.having(runbook=f"alerts/runbooks/{alert}.md")


def test_the_doctor_reads_the_pending_and_firing_alerts_with_their_numbers(capsys, prometheus):
    url, password_file, start = prometheus
    cfg = doctor_config()
    run = doctor(capsys, cfg, "--prometheus", url, "--prometheus.user", "doctor",
                 "--prometheus.password-file", str(password_file))
    assert run.rc == 1

    # the executor's heap floor: pending (its for: is 1 h), so one step below the alert's warning
    alert = BY_NAME["JvmHeapFloorRisingWithFlatState"]
    [heap] = by_runbook(run, alert.name)
    assert heap["signature"] == "S3" and heap["severity"] == "info" and heap["target"] == "worker"
    assert heap["subject"].startswith("process CoarseGrainedExecutorBackend (app app-20261206-0007, executor 3)")
    ev = heap["evidence"]
    # the floor now (the lowest over the last hour) and 6 h earlier, as the history's samples (a minute apart,
    # at the bottoms of the sawtooth) make them
    at = time.time()
    samples = [start + 60 * k for k in range(int(7.5 * 60))]
    assert ev["heap_floor_bytes"] == pytest.approx(min(old_gen(t, start) for t in samples if t >= at - HOUR),
                                                   rel=0.01)
    assert ev["heap_floor_before_bytes"] == pytest.approx(
        min(old_gen(t, start) for t in samples if at - 7 * HOUR <= t <= at - 6 * HOUR), rel=0.01)
    assert ev["heap_floor_rise"] == pytest.approx(ev["heap_floor_bytes"] / ev["heap_floor_before_bytes"] - 1,
                                                  abs=0.002)
    assert 0.25 < ev["heap_floor_rise"] < 0.35 and ev["state_rows_change"] < 0.05 and ev["state_rows"] > 1000
    said = re.search(r"rose (\d+)% in 6h, from (\S+ GiB|\S+ MiB) to", heap["summary"])
    assert said and abs(int(said.group(1)) - ev["heap_floor_rise"] * 100) <= 1, heap["summary"]
    assert "state rows of app-20261206-0007 changed by" in heap["summary"]
    assert f"Prometheus: {alert.name} pending" in heap["summary"] and "it fires after 1h" in heap["summary"]
    assert ev["prometheus_firing"] == 0 and heap["fix"] == alert.action

    # the floor that reaches the maximum within hours at its pace (issue 21, item 2): pending, its numbers
    [fast] = by_runbook(run, "JvmHeapFloorPredictedFull")
    assert fast["severity"] == "info" and fast["subject"].startswith("process ingest-service")
    fe = fast["evidence"]
    assert fe["heap_max_bytes"] == FAST_MAX and fe["trend_window_seconds"] == 2 * HOUR
    assert fe["heap_floor_bytes"] - fe["heap_floor_before_bytes"] == pytest.approx(120 * FAST_PER_MINUTE, rel=0.05)
    left = (FAST_MAX - fe["heap_floor_bytes"]) / (FAST_PER_MINUTE / 60)
    assert fe["seconds_to_max"] == pytest.approx(left, rel=0.05) and left < 12 * HOUR
    said = re.search(r"rose from \S+ GiB to \S+ GiB in 2h; at that pace it reaches the maximum of 4\.2 GiB in "
                     r"(\d+(?:\.\d)?)h", fast["summary"])
    assert said and float(said.group(1)) == pytest.approx(fe["seconds_to_max"] / HOUR, abs=0.06), fast["summary"]
    assert "Prometheus: JvmHeapFloorPredictedFull pending" in fast["summary"]
    assert not by_runbook(run, "JvmHeapFloorNearlyFull")  # its floor is far from the maximum yet

    # classes that are never unloaded: pending too, with the floor then and now
    [classes] = by_runbook(run, "JvmLoadedClassesRising")
    assert classes["severity"] == "info" and classes["subject"].startswith("process driver-service")
    ce = classes["evidence"]
    assert ce["classes_floor"] - ce["classes_floor_before"] == pytest.approx(6 * 60 * CLASSES_PER_MINUTE, rel=0.05)
    assert f"rose from {int(ce['classes_floor_before']):,} to {int(ce['classes_floor']):,} in 6h" in classes["summary"]

    # the query that stopped: firing, critical (the alert's severity), its hostile name made harmless
    [gone] = by_runbook(run, "SparkStreamingQueryTerminated")
    assert gone["severity"] == "critical" and gone["signature"] == "S4" and gone["target"] == "etl"
    assert gone["subject"].startswith("query enrich of application enrich\ufffd[2J\ufffd[31mREDxxx")
    assert "\x1b" not in run.out and len(gone["subject"]) < 300
    assert gone["evidence"]["last_input_rows_per_second"] == 42 and gone["evidence"]["prometheus_firing"] == 1
    assert "its last input rate: 42.0 rows/s" in gone["summary"] and "firing for" in gone["summary"]
    assert gone["fix"] == BY_NAME["SparkStreamingQueryTerminated"].action

    # the application that is gone: it had run for 10 h and more
    [app] = by_runbook(run, "SparkApplicationVanished")
    assert app["severity"] == "warning" and app["subject"] == "application billing (app-20261205-0001)"
    assert app["evidence"]["last_uptime_seconds"] >= 10 * HOUR + 7 * HOUR - GONE_AGO - 120
    assert "It had run for 17h" in app["summary"] and "target cluster no longer lists it" in app["summary"]

    # the other exporter's target is not the doctor's
    assert not [f for f in run.findings if "other-host" in f["target"] or "foreign" in f["subject"]]
    # the readings still judged: the targets that cannot be read
    assert {f["target"] for f in run.having(runbook="alerts/runbooks/SparkTargetDown.md")} == {"etl", "cluster"}

    # as the person on call reads it: 80 columns, no escape sequence, Prometheus' verdict in the head
    text = doctor(capsys, cfg, "--prometheus", url, "--prometheus.user", "doctor",
                  "--prometheus.password-file", str(password_file), as_json=False)
    lines = text.out.splitlines()
    assert text.rc == 1 and all(len(line) <= 80 for line in lines) and "\x1b" not in text.out
    head = re.search(rf"Prometheus \({re.escape(url)}\): (\d+) of the pack's alerts firing, (\d+) pending for these "
                     "targets.", " ".join(text.out.split()))
    assert head and int(head.group(1)) >= 2 and int(head.group(2)) >= 2
    assert "  runbook: alerts/runbooks/JvmHeapFloorRisingWithFlatState.md" in lines
    assert "sparkwatch doctor --prometheus URL" not in text.out  # the hint is for runs without it


def test_without_the_flag_the_doctor_is_as_before(capsys, prometheus):
    run = doctor(capsys, doctor_config())
    assert not [f for f in run.findings if f["signature"] in ("S3", "S4", "S5")]
    assert not [f for f in run.findings if "Prometheus" in f["summary"]]
    text = doctor(capsys, doctor_config(), as_json=False)
    assert "sparkwatch doctor --prometheus URL" in " ".join(text.out.split())


def test_prometheus_refusing_the_doctor_is_a_setup_finding(capsys, prometheus, tmp_path):
    url, _, _ = prometheus
    run = doctor(capsys, doctor_config(), "--prometheus", url)
    [f] = run.having(subject="Prometheus")
    assert f["severity"] == "warning" and f["signature"] == "setup" and f["target"] == url
    assert "Prometheus could not be read (auth)" in f["summary"] and "--prometheus.password-file" in f["fix"]
    assert f["runbook"] == "docs/doctor.md"
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    run = doctor(capsys, doctor_config(), "--prometheus", url, "--prometheus.user", "doctor",
                 "--prometheus.password-file", str(wrong))
    assert "(auth)" in run.having(subject="Prometheus")[0]["summary"]
    assert "not-the-password" not in run.out


def test_a_prometheus_without_the_packs_rules(capsys, tmp_path):
    with prometheus_server({"global": {"evaluation_interval": "1s"}}, [], tmp_path / "bare") as url:
        run = doctor(capsys, doctor_config(), "--prometheus", url)
    [f] = run.having(subject="Prometheus")
    assert f["severity"] == "warning" and "none of the pack's alert rules loaded" in f["summary"]
    assert "rule_files" in f["fix"] and f["evidence"]["rules_missing"] == len(BY_NAME)


@pytest.mark.parametrize("mode, reason", [("hang", "timeout"), ("trickle", "timeout"), ("html", "invalid_response"),
                                          ("deep", "invalid_response"), ("containers", "limit"),
                                          ("http500", "http_status"), ("reset", "connection"), ("closed", "connection")])
def test_a_prometheus_that_cannot_be_read_is_a_setup_finding(capsys, mode, reason):
    """Whatever answers at --prometheus (nothing, a hang, a proxy's page, JSON nested 100,000 deep, 12 MB of
    containers): a setup finding with the reason, within --prometheus.timeout; the readings are still judged."""
    timeout = 3.0
    cfg = doctor_config()
    if mode == "closed":
        url, server = f"http://127.0.0.1:{free_port()}", None
    else:
        server = faulty_server(mode)
        url = server.__enter__().url
    try:
        started = time.monotonic()
        run = doctor(capsys, cfg, "--prometheus", url, "--prometheus.timeout", str(timeout))
        took = time.monotonic() - started
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    [f] = run.having(subject="Prometheus")
    assert f["severity"] == "warning" and f"Prometheus could not be read ({reason})" in f["summary"], f
    assert run.rc == 1 and run.having(runbook="alerts/runbooks/SparkTargetDown.md")
    print(f"{mode}: the doctor took {took:.1f} s with --prometheus.timeout {timeout:g}")


@pytest.mark.parametrize("args, message", [
    (["--prometheus", "ftp://prometheus:9090"], "--prometheus: must be an http:// or https:// URL"),
    (["--prometheus", "http://user:pw@127.0.0.1:9090"], "--prometheus: must not carry credentials"),
    (["--prometheus", "http://127.0.0.1:9090", "--prometheus.selector", "instance=node7"],
     "--prometheus.selector: not a list of label matchers"),
    (["--prometheus", "http://127.0.0.1:9090", "--prometheus.bearer-token-file", "/nonexistent/token"],
     "--prometheus.bearer-token-file: bearer_token_file /nonexistent/token does not exist"),
    (["--prometheus", "http://127.0.0.1:9090", "--prometheus.password-file", "/etc/hostname"],
     "--prometheus.password-file: needs --prometheus.user"),
    (["--prometheus.selector", 'job="x"'], "--prometheus.selector: needs --prometheus URL"),
])
def test_bad_prometheus_flags_exit_2_naming_the_flag(capsys, args, message):
    run = doctor(capsys, {"spark": []}, *args, as_json=False)
    assert run.rc == 2 and message in run.err and run.out == ""
    assert "pw@" not in run.err


def test_every_evidence_expression_is_valid_promql(prometheus):
    """Each alert's evidence (and its own expression), as the doctor renders and joins them to the
    alert's series: Prometheus evaluates them without error."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.prometheus import History, PrometheusSource, _Reading
    from sparkwatch.doctor.thresholds import Thresholds
    from sparkwatch.pack.alerts import ALERTS
    from sparkwatch.pack.rules import render_expr

    url, password_file, _ = prometheus
    source = PrometheusSource(url, user="doctor", password_file=str(password_file))
    from sparkwatch.collector import Deadline
    from sparkwatch.httpclient import HttpClient

    client = HttpClient(source.target)
    try:
        reading = _Reading(source, client, Deadline(60), parse_config(doctor_config()), Thresholds(),
                           History(url, time.time()))
        checked = 0
        for alert in ALERTS:
            reading.joined(alert, render_expr(alert, reading.t.cfg), None)
            for ev in alert.evidence.values():
                reading.query(render_expr(alert, reading.t.cfg, ev.expr))
                reading.joined(alert, render_expr(alert, reading.t.cfg, ev.expr), ev.on)
                checked += 1
        assert checked >= 20 and not reading.history.problems
    finally:
        client.close()
