"""``sparkwatch doctor`` against real states: a ZooKeeper holding Livy's recovery
store and a JVM standing in for Livy under an NPROC limit (S2), a JVM whose code
cache is full (S5), JVMs that sparkwatch cannot see or read (setup), the Livy
stand-in holding finished sessions (S1), Spark applications with the metrics
sources off and healthy, targets that are down and configurations that are bad.

Each test runs the real command (``sparkwatch.cli.main(["doctor", ...])``, or
the console entry point in a subprocess) and checks its exit status, the JSON
shape and the verdicts, with every threshold read from the alerting pack.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest
import yaml

from sparkwatch.cli import main
from sparkwatch.pack.alerts import BY_NAME
from testbed.jvm import jcmd, running_jvm
from testbed.livy_server import livy_server
from testbed.procs import free_port, stop_process_group
from tests.helpers import os_user, requires_java, spark_python

ROOT = Path(__file__).resolve().parent.parent
FINDING_KEYS = {"severity", "signature", "target", "subject", "summary", "evidence", "fix", "runbook"}
TARGET_KEYS = {"kind", "name", "up", "error"}


# ------------------------------------------------------------------ helpers


def write_config(cfg: dict) -> str:
    """The configuration in a file every user can read (a doctor run as another user reads it too)."""
    d = tempfile.mkdtemp(prefix="sparkwatch-doctor-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "sparkwatch.yml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    os.chmod(path, 0o644)
    return path


class Run:
    def __init__(self, rc: int, out: str, err: str):
        self.rc, self.out, self.err = rc, out, err
        self.doc = json.loads(out) if out.startswith("{") else None

    @property
    def findings(self) -> List[dict]:
        return self.doc["findings"]

    def having(self, **kv) -> List[dict]:
        return [f for f in self.findings if all(f[k] == v for k, v in kv.items())]


def doctor(capsys, cfg: Optional[dict], *args: str, as_json: bool = True) -> Run:
    argv = ["doctor"]
    if cfg is not None:
        argv += ["--config.file", write_config(cfg)]
    if as_json:
        argv.append("--json")
    capsys.readouterr()
    rc = main(argv + list(args))
    out, err = capsys.readouterr()
    run = Run(rc, out, err)
    if as_json:
        check_shape(run.doc)
    return run


def check_shape(doc: dict) -> None:
    """The JSON shape the issue promises, exactly."""
    assert set(doc) == {"findings", "targets"}
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS, f
        assert f["severity"] in ("critical", "warning", "info")
        assert f["signature"] in ("S1", "S2", "S3", "S4", "S5", "setup")
        for k in ("target", "subject", "summary", "fix", "runbook"):
            assert isinstance(f[k], str), (k, f)
        assert f["summary"] and f["fix"] and f["target"] and f["subject"]
        assert isinstance(f["evidence"], dict)
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in f["evidence"].values()), f
        if f["runbook"]:
            assert (ROOT / f["runbook"]).is_file(), f["runbook"]
    for t in doc["targets"]:
        assert set(t) == TARGET_KEYS
        assert isinstance(t["up"], bool)
        assert t["error"] is None if t["up"] else isinstance(t["error"], str) and t["error"]
    order = [("critical", "warning", "info").index(f["severity"]) for f in doc["findings"]]
    assert order == sorted(order), "worst first"


def param(alert: str, name: str):
    return BY_NAME[alert].params[name].default


# ------------------------------------------------------------------ configuration and targets


def test_bad_config_exits_2_and_names_the_key(capsys, tmp_path):
    run = doctor(capsys, {"spark": [{"url": "http://127.0.0.1:4040", "timout": 5}]}, as_json=False)
    assert run.rc == 2
    assert "spark[0].timout: unknown key" in run.err
    assert run.out == ""
    bad_rules = tmp_path / "rules.yml"
    bad_rules.write_text("alerts:\n  LivyRestartWouldExhaustThreads:\n    params: {ratoi: 2}\n")
    run = doctor(capsys, {"spark": []}, "--rules.config", str(bad_rules), as_json=False)
    assert run.rc == 2 and "ratoi: unknown key" in run.err
    with pytest.raises(SystemExit) as e:
        main(["doctor", "--watch", "-3"])
    assert e.value.code == 2


def test_a_target_down_is_a_setup_finding_with_its_reason(capsys):
    port = free_port()
    run = doctor(capsys, {"spark": [{"url": f"http://127.0.0.1:{port}", "name": "etl"}]})
    assert run.rc == 1
    [f] = run.having(signature="setup", target="etl")
    assert f["severity"] == BY_NAME["SparkTargetDown"].severity == "critical"
    assert "(connection)" in f["summary"] and str(port) in f["summary"]
    assert f["runbook"] == "alerts/runbooks/SparkTargetDown.md"
    assert run.doc["targets"] == [{"kind": "spark", "name": "etl", "up": False, "error": f["summary"].split(": ", 1)[1]}]


def test_a_watched_process_that_is_gone(capsys):
    run = doctor(capsys, {"jvm": [{"name": "livy", "match": "org.apache.livy.server.NoSuchLivyServer"}]})
    assert run.rc == 1
    [f] = run.having(runbook="alerts/runbooks/JvmWatchedProcessMissing.md")
    assert f["severity"] == "warning" and f["signature"] == "setup" and f["evidence"] == {"jvm_processes": 0}


def test_text_report_fits_a_terminal_and_a_ticket(capsys):
    port = free_port()
    run = doctor(capsys, {"spark": [{"url": f"http://127.0.0.1:{port}/a/very/long/path/" + "x" * 90, "name": "etl"}],
                          "livy": [{"url": f"http://127.0.0.1:{port}", "name": "livy"}]}, as_json=False)
    assert run.rc == 1
    lines = run.out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "\033" not in run.out  # not a terminal: no colour
    assert lines[1] == "Read 2 targets (2 down), one reading."
    assert lines[2] == "Verdict: 2 critical."
    assert lines[4].startswith("CRITICAL setup | ")
    assert "runbook: alerts/runbooks/LivyTargetDown.md" in run.out
    assert "Targets:" in lines and "--watch" in run.out


# ------------------------------------------------------------------ S1 on the Livy stand-in


def test_s1_finished_sessions_held(capsys):
    min_finished = param("LivyFinishedSessionsPilingUp", "min_finished")
    with livy_server() as srv:
        srv.state.add("batch", int(min_finished) + 100, state="success")
        srv.state.add("batch", 7, state="dead")
        srv.state.add("batch", 5, state="running")
        cfg = {"livy": [{"url": srv.url, "name": "livy"}]}
        run = doctor(capsys, cfg, "--watch", "1")
        assert run.rc == 1
        [f] = run.having(signature="S1")
        assert f["severity"] == "warning" and f["subject"] == "Livy batch sessions"
        assert f["evidence"]["finished_sessions"] == min_finished + 107
        assert f["evidence"]["success_sessions"] == min_finished + 100 and f["evidence"]["dead_sessions"] == 7
        assert f["evidence"]["min_finished"] == min_finished
        assert 1 <= f["evidence"]["oldest_finished_seen_seconds"] < 30  # seen since the first reading
        assert f"{int(min_finished) + 107:,} finished batch sessions" in f["summary"]
        assert "livy.server.session.state-retain.sec" in f["fix"] and "DELETE" in f["fix"]
        assert f["runbook"] == "alerts/runbooks/LivyFinishedSessionsPilingUp.md"

        # the same threshold, lowered by a rules configuration: one definition for rules and doctor
        rules = write_config({"alerts": {"LivyFinishedSessionsPilingUp": {"params": {"min_finished": 10000}}}})
        run = doctor(capsys, cfg, "--rules.config", rules)
        assert run.rc == 0 and not run.having(signature="S1")
        rules = write_config({"alerts": {"LivyFinishedSessionsPilingUp": {"enabled": False}}})
        assert not doctor(capsys, cfg, "--rules.config", rules).having(signature="S1")


def test_s1_quiet_below_the_threshold(capsys):
    with livy_server() as srv:
        srv.state.add("batch", 20, state="success")
        srv.state.add("interactive", 3, state="idle")
        run = doctor(capsys, {"livy": [{"url": srv.url, "name": "livy"}]})
    assert run.rc == 0 and run.findings == []
    assert run.doc["targets"] == [{"kind": "livy", "name": "livy", "up": True, "error": None}]


# ------------------------------------------------------------------ S2: ZooKeeper + a JVM under an NPROC limit

NPROC = 200
# zk: the server of conftest.py; its Livy stores: "livy" (the war story's 40,000 batches), "small" (10)


@pytest.fixture(scope="module")
def livy_jvm(jvm_classes):
    """A JVM standing in for Livy: a user of its own, RLIMIT_NPROC of 200 (the kernel
    counts every thread of the user against it)."""
    with os_user("swdoc") as user:
        with running_jvm(jvm_classes, "Workload", args=["doctor-livy-standin"], user=user, nproc=NPROC) as jvm:
            yield jvm


def s2_config(zk, prefix: str) -> dict:
    return {"exporter": {"scrape_timeout": 30},
            "zookeeper": [{"hosts": zk.hosts, "name": "zk", "timeout": 20,
                           "livy_state_store": {"key_prefix": prefix, "process": "livy"}}],
            "jvm": [{"name": "livy", "match": r"\bWorkload doctor-livy-standin$", "tcp_connections": False}]}


@requires_java
@pytest.mark.zookeeper
@pytest.mark.slow
def test_s2_a_restart_would_exhaust_the_threads(capsys, zk, livy_jvm):
    run = doctor(capsys, s2_config(zk, "livy"))
    assert run.rc == 1
    [f] = run.having(signature="S2")
    assert f["severity"] == "critical" and f["target"] == "zk"
    assert f["subject"] == f"Livy process livy (pid {livy_jvm.pid})"
    ev = f["evidence"]
    assert ev["recovery_sessions"] == ev["recovery_sessions_batch"] == 40000
    assert ev["thread_limit"] == NPROC
    assert 0 < ev["thread_headroom"] < NPROC and ev["threads_in_use"] == NPROC - ev["thread_headroom"]
    assert ev["ratio"] == param("LivyRestartWouldExhaustThreads", "ratio")
    assert f"A restart of Livy would start 40,000 threads, the limit leaves {ev['thread_headroom']:,}" in f["summary"]
    assert "DELETE finished sessions" in f["fix"] and "raise the limit" in f["fix"] and "/livy/v1/batch" in f["fix"]
    assert f["runbook"] == "alerts/runbooks/LivyRestartWouldExhaustThreads.md"
    assert f == run.findings[0]  # the worst first
    assert {t["name"]: t["up"] for t in run.doc["targets"]} == {"zk": True, "livy": True}

    # as the person on call reads it
    text = doctor(capsys, s2_config(zk, "livy"), as_json=False)
    assert text.rc == 1
    assert text.out.splitlines()[4] == f"CRITICAL S2 | zk | Livy process livy (pid {livy_jvm.pid})"


@requires_java
@pytest.mark.zookeeper
@pytest.mark.slow
def test_s2_ten_stored_sessions_are_no_finding(capsys, zk, livy_jvm):
    run = doctor(capsys, s2_config(zk, "small"))
    assert not run.having(signature="S2"), run.findings
    assert run.rc == 0, run.findings
    # a store the ratio makes dangerous: the rules configuration's threshold is the doctor's
    ratio = 10 / NPROC / 2
    rules = write_config({"alerts": {"LivyRestartWouldExhaustThreads": {"params": {"ratio": ratio}}}})
    run = doctor(capsys, s2_config(zk, "small"), "--rules.config", rules)
    [f] = run.having(signature="S2")
    assert f["evidence"]["recovery_sessions"] == 10 and f["evidence"]["ratio"] == ratio


@requires_java
def test_s2_from_livys_filesystem_recovery_store(capsys, livy_jvm, tmp_path):
    """The same verdict from a filesystem state store, counted by the livy target."""
    store = tmp_path / "livy-store"
    (store / "v1" / "batch").mkdir(parents=True)
    for sid in range(NPROC * 2):
        (store / "v1" / "batch" / str(sid)).write_text("{}")
    (store / "v1" / "batch" / "state").write_text('{"nextSessionId": 400}')
    with livy_server() as srv:
        cfg = {"livy": [{"url": srv.url, "name": "livy-api", "process": "livy",
                         "filesystem_state_store": str(store)}],
               "jvm": [{"name": "livy", "match": r"\bWorkload doctor-livy-standin$", "tcp_connections": False}]}
        run = doctor(capsys, cfg)
    assert run.rc == 1
    [f] = run.having(signature="S2")
    assert f["severity"] == "critical" and f["target"] == "livy-api"
    assert f["evidence"]["recovery_sessions"] == NPROC * 2 and f["evidence"]["thread_limit"] == NPROC
    assert f"would start {NPROC * 2} threads" in f["summary"]


@requires_java
@pytest.mark.zookeeper
def test_livy_recovery_path_missing_in_zookeeper(capsys, zk):
    cfg = {"zookeeper": [{"hosts": zk.hosts, "name": "zk", "livy_state_store": {"key_prefix": "nosuch"}}]}
    run = doctor(capsys, cfg)
    assert run.rc == 1
    [f] = run.having(signature="setup", target="zk")
    assert f["severity"] == "warning" and "/nosuch/v1 does not exist" in f["summary"]
    assert "key_prefix" in f["fix"] and f["runbook"] == "docs/livy.md"


@requires_java
def test_watch_threads_rising_towards_the_limit(capsys, jvm_classes, monkeypatch):
    """Two readings: the thread headroom falls fast enough to reach zero within the pack's horizon."""
    from sparkwatch.doctor.reading import Reader

    with os_user("swdoc") as user:
        with running_jvm(jvm_classes, "Workload", args=["doctor-threads"], user=user, nproc=NPROC) as jvm:
            cfg = {"jvm": [{"name": "leaky", "match": r"\bWorkload doctor-threads$", "tcp_connections": False}]}
            real_read, reads = Reader.read, []

            def read_then_start_threads(self):
                reading = real_read(self)
                reads.append(reading)
                if len(reads) == 1:  # between the two readings, however long the first took
                    jvm.send(f"threads {NPROC - 60}")
                return reading

            monkeypatch.setattr(Reader, "read", read_then_start_threads)
            run = doctor(capsys, cfg, "--watch", "4")
            assert len(reads) == 2
            jvm.expect("done")
    [f] = run.having(signature="S3", subject=f"process leaky (pid {jvm.pid})")
    assert f["severity"] == "warning" and f["runbook"] == "alerts/runbooks/JvmThreadsPredictedToHitLimit.md"
    assert f["evidence"]["thread_headroom"] < f["evidence"]["thread_headroom_before"]
    assert run.rc == 1


def test_watch_says_when_the_second_reading_comes(tmp_path):
    """--watch 60 is not a silent minute: once the first reading is done, stderr says when the
    second comes (stdout, the report, stays clean for --json)."""
    cfg = write_config({"spark": []})
    proc = subprocess.Popen([sys.executable, "-m", "sparkwatch", "doctor", "--config.file", cfg, "--json",
                             "--watch", "60"], cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = proc.stderr.readline()  # blocks until the line, or the end of the run
        arrived = time.time()
        still_waiting = proc.poll() is None
    finally:
        stop_process_group(proc)
        proc.communicate()
    m = re.fullmatch(r"sparkwatch doctor: first reading done; second reading at (\d\d):(\d\d):(\d\d) "
                     r"\(in 60 s\)\.\.\.\n", line)
    assert m, line
    assert still_waiting, "the message came only when the wait was over"
    local = time.localtime(arrived)
    named = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    now = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec
    assert 30 <= (named - now) % 86400 <= 61  # when it comes, in local time


# ------------------------------------------------------------------ S5 and setup on real JVMs


@requires_java
@pytest.mark.slow
def test_s5_full_code_cache_is_critical(capsys, jvm_classes):
    opts = ["-XX:ReservedCodeCacheSize=3m", "-XX:-SegmentedCodeCache", "-XX:-UseCodeCacheFlushing"]
    with running_jvm(jvm_classes, "Workload", args=["doctor-codecache"], jvm_opts=opts) as jvm:
        for _ in range(40):
            jvm.command("compile 300")
            if "compilation: disabled" in jcmd(jvm.pid, "Compiler.codecache"):
                break
        else:
            pytest.fail("the JIT was never disabled")
        cfg = {"jvm": [{"name": "rules", "match": r"\bWorkload doctor-codecache$", "attach": True}]}
        run = doctor(capsys, cfg)
    assert run.rc == 1
    s5 = run.having(signature="S5", severity="critical")
    assert s5 and all(f["subject"] == f"process rules (pid {jvm.pid})" for f in s5)
    [jit] = [f for f in s5 if f["runbook"] == "alerts/runbooks/JvmJitCompilationDisabled.md"]
    assert jit["evidence"]["jit_compilation_enabled"] == 0 and jit["evidence"]["code_cache_full_events"] >= 1
    assert "spark.cleaner.periodicGC.interval" in jit["fix"]
    for f in s5:
        if f["runbook"] == "alerts/runbooks/JvmCodeCacheNearlyFull.md":
            ev = f["evidence"]
            assert ev["code_cache_max_bytes"] == 3 * 1024 * 1024
            assert ev["code_cache_used_bytes"] / ev["code_cache_max_bytes"] > param("JvmCodeCacheNearlyFull", "ratio")


@requires_java
def test_setup_jvm_without_perf_data_and_without_attach(capsys, jvm_classes):
    cfg = {"jvm": [{"name": "hidden", "match": r"\bWorkload doctor-noperf$"},
                   {"name": "noattach", "match": r"\bWorkload doctor-noattach$", "attach": True,
                    "attach_timeout": 1.5}]}
    with running_jvm(jvm_classes, "Workload", args=["doctor-noperf"], jvm_opts=["-XX:-UsePerfData"]) as hidden, \
            running_jvm(jvm_classes, "Workload", args=["doctor-noattach"],
                        jvm_opts=["-XX:+DisableAttachMechanism"]) as noattach:
        run = doctor(capsys, cfg)
    assert run.rc == 1
    [perf] = [f for f in run.having(signature="setup", target="hidden") if "UsePerfData" in f["summary"]]
    assert perf["severity"] == "warning" and perf["subject"] == f"process Workload (pid {hidden.pid}, user root)"
    assert perf["evidence"] == {"pid": hidden.pid} and perf["runbook"] == "docs/jvm.md"
    # the entry's JVM runs: not reported as gone (what the collector alone would conclude)
    assert not run.having(runbook="alerts/runbooks/JvmWatchedProcessMissing.md")
    [att] = [f for f in run.having(signature="setup", target="noattach") if "DisableAttachMechanism" in f["summary"]]
    assert att["severity"] == "warning" and str(noattach.pid) in att["subject"]


@contextmanager
def jvm_held_at_startup(classes: Path, tag: str, perf_file: str) -> Iterator[Tuple[int, str]]:
    """(pid, match): a real JVM held at the start of its initialisation (``-XX:+PauseAtStartup``:
    it waits until its pause file is removed), before it writes its performance-data file.
    ``perf_file``: "absent" (as it is), or "being created" (the file the JVM creates, its size set
    and still zeros: what a reader meets before the JVM has written the header)."""
    d = Path(tempfile.mkdtemp(prefix="sparkwatch-young-"))
    pause = d / f"vm.paused.{tag}"
    proc = subprocess.Popen(["java", "-XX:+UnlockDiagnosticVMOptions", "-XX:+PauseAtStartup",
                             f"-XX:PauseAtStartupFile={pause}", "-cp", str(classes), "Workload", tag],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    perf = Path(f"/tmp/hsperfdata_{pwd.getpwuid(os.geteuid()).pw_name}/{proc.pid}")
    try:
        end = time.monotonic() + 60
        while not pause.exists():  # it has reached the pause
            assert proc.poll() is None and time.monotonic() < end, "the JVM never paused"
            time.sleep(0.05)
        assert not perf.exists()
        if perf_file == "being created":
            perf.parent.mkdir(mode=0o755, exist_ok=True)
            fd = os.open(perf, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, bytes(32768))
            os.close(fd)
        yield proc.pid, re.escape(f"PauseAtStartupFile={pause}")
    finally:
        stop_process_group(proc, grace=0)
        perf.unlink(missing_ok=True)
        shutil.rmtree(d, ignore_errors=True)


@requires_java
@pytest.mark.parametrize("perf_file", ["absent", "being created"])
def test_a_young_jvm_without_its_perf_data_yet_is_info(capsys, jvm_classes, perf_file):
    """A JVM seconds old has no readable performance-data file yet: said as it is, not as a problem
    of file modes, and it does not make the doctor exit 1."""
    tag = "doctor-young-" + perf_file.replace(" ", "-")
    with jvm_held_at_startup(jvm_classes, tag, perf_file) as (pid, match):
        run = doctor(capsys, {"jvm": [{"name": "young", "match": match}]})
    [f] = [f for f in run.findings if f["target"] == "young" and f["evidence"].get("pid") == pid]
    assert f["severity"] == "info" and f["signature"] == "setup"
    assert re.match(rf"JVM pid {pid} started \d+ s ago; its performance-data file is not written yet", f["summary"])
    assert 0 <= f["evidence"]["age_seconds"] < 30
    assert "mode" not in f["fix"]
    assert run.rc == 0, [g for g in run.findings if g["severity"] != "info"]


@requires_java
def test_an_old_jvm_with_an_unreadable_perf_data_file_gets_the_file_mode_advice(capsys, jvm_classes, monkeypatch):
    """The same file in a JVM past its start (here: every JVM counts as old) is a warning."""
    import sparkwatch.doctor.judgements.targets as setup

    monkeypatch.setattr(setup, "YOUNG_JVM_SECONDS", 0.0)
    with jvm_held_at_startup(jvm_classes, "doctor-old-unreadable", "being created") as (pid, match):
        run = doctor(capsys, {"jvm": [{"name": "old", "match": match}]})
    [f] = [f for f in run.findings if f["target"] == "old" and f["evidence"].get("pid") == pid]
    assert f["severity"] == "warning" and "cannot be read" in f["summary"]
    assert "owner and mode" in f["fix"]
    assert run.rc == 1


@requires_java
def test_setup_another_users_jvm_unreadable_without_root(jvm_classes):
    """The doctor run as one user, the JVM as another: its performance-data file is private."""
    with os_user("swdoc") as owner, os_user("swdoc") as reader:
        with running_jvm(jvm_classes, "Workload", args=["doctor-private"], user=owner) as jvm:
            cfg = write_config({"jvm": [{"name": "private", "match": r"\bWorkload doctor-private$"}]})
            pw = pwd.getpwnam(reader)
            r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                                "--reset-env", "--", sys.executable, "-m", "sparkwatch", "doctor",
                                "--config.file", cfg, "--json"],
                               capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    check_shape(doc)
    [f] = [f for f in doc["findings"] if f["signature"] == "setup" and f"user {owner}" in f["subject"]]
    assert f["severity"] == "warning" and str(jvm.pid) in f["subject"]
    assert f"runs as uid {pw.pw_uid}, not root" in f["summary"] and "as root" in f["fix"]


# ------------------------------------------------------------------ Spark applications

SPARK_TIMEOUT = 60


def spark_config(app) -> dict:
    return {"exporter": {"scrape_timeout": SPARK_TIMEOUT},
            "spark": [{"url": app.url, "name": "drv", "timeout": SPARK_TIMEOUT}]}


@pytest.mark.spark
@pytest.mark.slow
def test_spark_metrics_sources_off_are_setup_findings(capsys):
    from testbed.spark import spark_app

    with spark_app("4.0", spark_python("4.0"), metrics=False) as app:
        run = doctor(capsys, spark_config(app))
    assert run.rc == 1
    off = run.having(signature="setup", target="drv", runbook="alerts/runbooks/SparkMetricsSourceDisabled.md")
    assert {tuple(f["evidence"]) for f in off} == {("metrics_source_jvm_enabled",),
                                                   ("metrics_source_streaming_enabled",)}
    assert all(f["severity"] == "warning" and app.app_id in f["subject"] for f in off)
    assert all("spark.sql.streaming.metricsEnabled=true" in f["fix"] for f in off)
    # Spark's default cleaner settings in a young application: said, not judged a problem
    [cleaner] = run.having(signature="S5", runbook="alerts/runbooks/SparkCleanerSettingsRisky.md")
    assert cleaner["severity"] == "info" and cleaner["evidence"]["periodic_gc_interval_seconds"] == 1800


@pytest.mark.spark
@pytest.mark.slow
def test_healthy_spark_application_exits_0(capsys):
    from testbed.spark import spark_app

    with spark_app("4.0", spark_python("4.0"), metrics=True, periodic_gc="3min", blocking="false") as app:
        # a second reading after several 2-second triggers (a starved local[2] may skip some): progress
        run = doctor(capsys, spark_config(app), "--watch", "15")
    assert run.rc == 0, run.findings
    assert not [f for f in run.findings if f["severity"] != "info"]
    assert run.doc["targets"] == [{"kind": "spark", "name": "drv", "up": True, "error": None}]


# ------------------------------------------------------------------ the trend rules, on two readings


def test_trend_judgements_on_two_readings():
    """What only --watch shows, judged on two readings 60 s apart (the series as the
    collectors name them): a stalled query and one falling behind (S4), an old
    generation that stays full (S3), classes rising in a JVM past its warm-up (S5)."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.findings import Judge
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.thresholds import Thresholds

    now = time.time()
    q = {"target": "app", "app_id": "app-1", "app_name": "pipeline"}
    jvm = {"target": "local", "process": "executor", "app_id": "", "executor_id": "", "pid": ""}
    ratio = param("JvmHeapFloorNearlyFull", "ratio")

    def reading(t: float, input_rate: float, old_used: float, classes: float) -> Reading:
        return Reading(t, now + t, [
            ("spark_streaming_input_rows_per_second", dict(q, query="stuck"), 1000.0),
            ("spark_streaming_batch_duration_seconds", dict(q, query="stuck"), 20.0),
            ("spark_streaming_input_rows_per_second", dict(q, query="behind"), input_rate),
            ("spark_streaming_processed_rows_per_second", dict(q, query="behind"), input_rate / 2),
            ("spark_streaming_batch_duration_seconds", dict(q, query="behind"), 30.0 + t / 10),
            ("jvm_memory_space_used_bytes", dict(jvm, space="old"), old_used),
            ("jvm_memory_space_max_bytes", dict(jvm, space="old"), 4e9),
            ("jvm_classes_currently_loaded", jvm, classes),
            ("jvm_start_time_seconds", jvm, now - 86400),
        ], [TargetStatus("spark", "app", True, "", {}), TargetStatus("jvm", "local", True, "", {})])

    readings = [reading(0.0, 1000.0, 3.9e9, 20000), reading(60.0, 1100.0, (ratio + 0.01) * 4e9, 20100)]
    findings = Judge(readings, Thresholds(), None, parse_config({})).judge()
    by_runbook = {f.runbook.rsplit("/", 1)[-1][:-3]: f for f in findings}
    stalled = by_runbook["SparkStreamingQueryStalled"]
    # 60 s frozen is less than the alert's 10-minute window: a warning, not yet the page
    assert stalled.severity == "warning" and stalled.subject == "query stuck of application pipeline (app-1)"
    assert by_runbook["SparkStreamingFallingBehind"].severity == "warning"
    assert "query behind" in by_runbook["SparkStreamingFallingBehind"].subject
    heap = by_runbook["JvmHeapFloorNearlyFull"]
    assert heap.severity == "critical" and heap.evidence["old_used_bytes"] == (ratio + 0.01) * 4e9
    classes = by_runbook["JvmLoadedClassesRising"]
    assert classes.severity == "warning" and classes.evidence["per_trend_window"] == 100 / 60 * 6 * 3600
    # one reading: no trend is guessed
    single = Judge(readings[-1:], Thresholds(), None, parse_config({})).judge()
    assert {f.runbook.rsplit("/", 1)[-1][:-3] for f in single} == {"JvmHeapFloorNearlyFull"}


def test_cleaner_settings_alone_are_info_a_rising_nonheap_floor_with_them_a_warning():
    """S5's cleaner settings are Spark's defaults: alone they are said (info), whatever the
    application's age; with the driver's non-heap memory rising between two readings (extrapolated
    over the alert's trend window, above its min_growth) they are the alert's warning."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.findings import Judge
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.thresholds import Thresholds

    now = time.time()
    growth = param("SparkCleanerSettingsRisky", "min_growth")
    app = {"target": "app", "app_id": "app-1", "app_name": "service"}
    fixed = {"target": "app", "app_id": "app-2", "app_name": "fixed"}

    def reading(t: float, nonheap: float) -> Reading:
        return Reading(t, now + t, [
            ("spark_cleaner_periodic_gc_interval_seconds", app, 1800.0),
            ("spark_cleaner_reference_tracking_blocking", app, 1.0),
            ("spark_app_uptime_seconds", app, 3 * 86400.0 + t),
            ("spark_driver_jvm_nonheap_used_bytes", app, nonheap),
            ("spark_cleaner_periodic_gc_interval_seconds", fixed, 180.0),
            ("spark_cleaner_reference_tracking_blocking", fixed, 0.0),
            ("spark_app_uptime_seconds", fixed, 3 * 86400.0 + t),
            ("spark_driver_jvm_nonheap_used_bytes", fixed, nonheap),
        ], [TargetStatus("spark", "app", True, "", {})])

    def cleaner(readings):
        found = Judge(readings, Thresholds(), None, parse_config({})).judge()
        return [f for f in found if f.runbook.endswith("/SparkCleanerSettingsRisky.md")]

    # one reading of a three-day-old service on the defaults: said, not a warning
    [f] = cleaner([reading(0.0, 300e6)])
    assert f.severity == "info" and "app-1" in f.subject
    assert f.evidence["periodic_gc_interval_seconds"] == 1800 and f.evidence["reference_tracking_blocking"] == 1
    # flat non-heap between two readings: still info
    [f] = cleaner([reading(0.0, 300e6), reading(60.0, 300e6)])
    assert f.severity == "info"
    # rising: 0.1 MB a minute is 36 MB in 6 h, 12% of 300 MB; 0.5 MB a minute is 60%
    slow = 0.1e6
    assert slow * 60 * 6 / 300e6 < growth
    [f] = cleaner([reading(0.0, 300e6), reading(60.0, 300e6 + slow)])
    assert f.severity == "info"
    [f] = cleaner([reading(0.0, 300e6), reading(60.0, 300.5e6)])
    assert f.severity == "warning" and "app-1" in f.subject
    assert f.evidence["nonheap_growth_per_trend_window"] == pytest.approx(0.5e6 * 60 * 6 / 300e6)
    assert "non-heap" in f.summary


def test_prometheus_joins_the_readings_finding_about_the_same_series():
    """With --prometheus, an alert Prometheus has firing for a series a reading's finding is already
    about joins that finding (its state added, the worse severity kept); for another series of the
    same target it is a finding of its own; pending, it is one step below the alert's severity."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.findings import Judge
    from sparkwatch.doctor.prometheus import Active, History
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.thresholds import Thresholds
    from sparkwatch.pack.alerts.s2_restart import JVM_THREADS_NEAR_LIMIT
    from sparkwatch.pack.alerts.s3_leaks import JVM_GC_TIME_HIGH

    now = time.time()
    jvm = {"target": "local", "process": "executor", "app_id": "app-1", "executor_id": "2", "pid": ""}
    reading = Reading(0.0, now, [("jvm_process_thread_headroom", jvm, 5.0), ("jvm_process_thread_limit", jvm, 4096.0)],
                      [TargetStatus("jvm", "local", True, "", {})])
    at = dict(jvm, job="sparkwatch", instance="node7:9951", severity="critical", signature="S2")
    other = dict(at, executor_id="3")
    history = History("http://prometheus:9090", now, active=[
        Active(JVM_THREADS_NEAR_LIMIT, "firing", at, since=now - 1800, value=5.0),
        Active(JVM_THREADS_NEAR_LIMIT, "firing", other, since=now - 60, value=7.0),
        Active(JVM_GC_TIME_HIGH, "pending", at, since=now - 120, value=0.4)])
    found = Judge([reading], Thresholds(), None, parse_config({}), history=history).judge()
    near = [f for f in found if f.runbook.endswith("/JvmThreadsNearLimit.md")]
    assert len(near) == 2
    joined = next(f for f in near if "executor 2" in f.subject)
    assert joined.summary.startswith("Only 5 more threads can start")
    assert joined.summary.endswith(f"Prometheus: {JVM_THREADS_NEAR_LIMIT.name} firing for 30min.")
    assert joined.evidence["prometheus_firing"] == 1 and joined.evidence["thread_headroom"] == 5
    alone = next(f for f in near if f is not joined)
    assert alone.subject == "process executor (app app-1, executor 3) on node7:9951" and alone.severity == "critical"
    assert alone.summary == f"{JVM_THREADS_NEAR_LIMIT.summary} Prometheus: {JVM_THREADS_NEAR_LIMIT.name} firing for " \
                            "1min; the rule's value: 7."
    [gc] = [f for f in found if f.runbook.endswith("/JvmGcTimeHigh.md")]
    assert gc.severity == "info" and "pending for 2min (it fires after 15min)" in gc.summary
    # without --prometheus, none of it
    assert len(Judge([reading], Thresholds(), None, parse_config({})).judge()) == 1


# ------------------------------------------------------------------ one definition: the pack's alerts


def test_every_alert_is_judged_by_the_doctor_or_says_why_not():
    """For every alert of the pack: the doctor's judgements of the readings that cover it, or the
    reason one or two readings cannot judge it (a trend over hours, a series that is gone) together
    with the judgement that reads it from Prometheus (--prometheus). An alert added, renamed or
    retired without its judgement fails here, not silently in the doctor."""
    from sparkwatch.doctor.judgements import JUDGEMENTS, NOT_JUDGED
    from sparkwatch.pack.alerts import ALERTS

    read, from_prometheus, fallback = {}, {}, set()
    for j in JUDGEMENTS:
        for a in j.alerts:
            if j.fallback:
                fallback.add(a.name)
            else:
                (from_prometheus if j.prometheus else read).setdefault(a.name, []).append(j.name)
    table = {a.name: read.get(a.name) or (NOT_JUDGED.get(a) and from_prometheus.get(a.name)) for a in ALERTS}
    assert all(table.values()), {name: how for name, how in table.items() if not how}
    assert not [a.name for a in NOT_JUDGED if a.name in read], "both judged from the readings and not judgeable"
    # with --prometheus, whatever Prometheus has firing or pending is reported: by its own judgement or the fallback
    assert fallback == {a.name for a in ALERTS}
    # the trend alerts over hours have a judgement from Prometheus of their own (with their numbers)
    for a in ALERTS:
        if a.evidence:
            assert a.name in from_prometheus, f"{a.name} declares evidence that no judgement reports"
    # a retired alert still named by the doctor
    assert all(a in ALERTS for a in NOT_JUDGED) and all(a in ALERTS for j in JUDGEMENTS for a in j.alerts)
    assert all(len(reason.split()) >= 5 for reason in NOT_JUDGED.values()), NOT_JUDGED
    # docs/doctor.md names each: in the table of judgements, or under "Not judged" with its reason
    doc = (ROOT / "docs" / "doctor.md").read_text()
    assert not [a.name for a in ALERTS if not re.search(rf"\b{a.name}\b", doc)]


def test_the_doctor_names_no_alert_by_a_string():
    """The doctor imports the pack's Alert objects; no alert name is spelled in its code."""
    import ast

    from sparkwatch.pack.alerts import ALERTS

    names = re.compile(r"\b(?:" + "|".join(a.name for a in ALERTS) + r")\b")
    spelled = []
    for path in sorted((ROOT / "exporter" / "doctor").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and names.search(node.value):
                spelled.append((str(path.relative_to(ROOT)), node.lineno, names.search(node.value).group()))
    assert not spelled


def test_a_judgement_reports_only_the_alerts_it_declares():
    """A finding for an alert its judgement does not declare is a bug of the doctor: said
    as one (an info finding naming the judgement), never passed off as that alert."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.findings import Judge, judges
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.thresholds import Thresholds
    from sparkwatch.pack.alerts.s3_leaks import JVM_GC_TIME_HIGH, JVM_THREADS_LEAKING

    @judges(JVM_GC_TIME_HIGH)
    def undeclared(j):
        j.add(JVM_THREADS_LEAKING, target="local", subject="process x", summary="leaking")

    reading = Reading(0.0, time.time(), [], [TargetStatus("jvm", "local", True, "", {})])
    [f] = Judge([reading], Thresholds(), None, parse_config({}), judgements=[undeclared]).judge()
    assert (f.severity, f.signature, f.runbook) == ("info", "setup", "")
    assert "undeclared failed" in f.summary and JVM_THREADS_LEAKING.name in f.summary


def test_the_report_carries_no_terminal_escape_a_target_or_application_chose():
    """Names and error texts come from targets (an application's name, a server's error
    text) and reach the person's terminal: an escape sequence in them could clear the
    screen or rewrite the verdict. The text report holds only printable characters
    (with colour off, not one ESC byte)."""
    from sparkwatch.doctor.findings import Finding
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.render import to_text

    esc = "\x1b[2J\x1b[1;1HVerdict: nothing found\r\x07"
    reading = Reading(0.0, 1_700_000_000.0, [],
                      [TargetStatus("spark", "ui" + esc, False, "HTTP 500: " + esc, {"http_status": 1})])
    finding = Finding("warning", "S4", "ui" + esc, "app " + esc, "stalled " + esc, fix="restart " + esc)
    text = to_text([finding], [reading], colour=False)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert all(line.isprintable() for line in text.splitlines())
    assert "stalled" in text and "HTTP 500" in text


def test_the_host_scan_reads_no_file_once_its_deadline_has_passed(monkeypatch):
    """The doctor's look at the host's JVMs is bounded as the jvm collector's scrape is:
    files a local user leaves for processes named java (never ready, each read three
    times with a sleep) cannot hold it; past the deadline a file is not read and its
    JVM says why."""
    from testbed.jvm import compile_apps, have_java, running_jvm

    if not have_java():
        pytest.skip("no JDK")
    from sparkwatch.collector import Deadline
    from sparkwatch.collectors.jvm import JvmTarget
    from sparkwatch.doctor import reading
    from sparkwatch.hotspot import perfdata

    reads = []
    real_read = perfdata.read_file
    monkeypatch.setattr(perfdata, "read_file", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    import tempfile
    with tempfile.TemporaryDirectory() as d, running_jvm(compile_apps(Path(d)), "Workload", args=["doctor-deadline"]) as jvm:
        clock = [0.0]
        expired = Deadline(5.0, clock=lambda: clock[0])
        clock[0] = 10.0
        scan = reading.scan_jvms([JvmTarget(discover=True)], expired)
        mine = [j for j in scan.jvms if j.pid == jvm.pid]
        assert mine and not mine[0].perf_readable and "ran out" in mine[0].perf_error
        assert not reads
        scan = reading.scan_jvms([JvmTarget(discover=True)], Deadline(30.0))
        mine = [j for j in scan.jvms if j.pid == jvm.pid]
        assert mine and mine[0].perf_readable and mine[0].main == "Workload" and reads


def test_code_cache_filling_within_the_page_horizon_is_the_page_on_two_readings():
    """Issue 21, item 1: a code cache three quarters full whose pace between two readings fills it
    within JvmCodeCacheNearlyFull's horizon is the page (critical), though under its 95%; the same
    use at a pace that fills it only within JvmCodeCachePredictedFull's longer horizon is the ticket."""
    from sparkwatch.config import parse_config
    from sparkwatch.doctor.findings import Judge
    from sparkwatch.doctor.reading import Reading, TargetStatus
    from sparkwatch.doctor.thresholds import Thresholds
    from sparkwatch.pack.promql import parse_duration
    from sparkwatch.pack.alerts import BY_NAME

    now = time.time()
    page = BY_NAME["JvmCodeCacheNearlyFull"].params
    ticket = BY_NAME["JvmCodeCachePredictedFull"].params
    page_h, ticket_h = parse_duration(page["horizon"].default), parse_duration(ticket["horizon"].default)
    mx = 240e6
    used = (page["min_ratio"].default + 0.05) * mx
    assert used / mx < page["ratio"].default
    jvm = {"target": "local", "process": "executor", "app_id": "", "executor_id": "", "pid": ""}

    def judge(pace_per_s: float):
        readings = [Reading(t, now + t, [("jvm_codecache_used_bytes", dict(jvm, heap="CodeCache"), used + pace_per_s * t),
                                         ("jvm_codecache_max_bytes", dict(jvm, heap="CodeCache"), mx)],
                            [TargetStatus("jvm", "local", True, "", {})]) for t in (0.0, 60.0)]
        found = Judge(readings, Thresholds(), None, parse_config({})).judge()
        return {f.runbook.rsplit("/", 1)[-1][:-3]: f for f in found if "CodeCache" in f.runbook}

    left = mx - used
    fast = judge(left / (page_h / 2))  # full in about half the page's horizon
    assert set(fast) == {"JvmCodeCacheNearlyFull"} and fast["JvmCodeCacheNearlyFull"].severity == "critical"
    assert fast["JvmCodeCacheNearlyFull"].evidence["horizon_seconds"] == page_h
    slow = judge(left / ((page_h + ticket_h) / 2))  # beyond the page's horizon, within the ticket's
    assert set(slow) == {"JvmCodeCachePredictedFull"} and slow["JvmCodeCachePredictedFull"].severity == "warning"
