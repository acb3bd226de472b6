"""Targets down and blind spots: what makes sparkwatch blind, reported as
``setup``. The pack's target alerts (``exporter/pack/alerts/targets.py``): a
target down, a watched JVM gone, a Spark metrics source off; and what only the
doctor can see: parts of a target unreadable, JVMs of this host that the jvm
collector cannot see or read, Livy's recovery path missing in ZooKeeper.
"""

from __future__ import annotations

from typing import Dict, List

from ...pack.alerts import ALERTS
from ...pack.alerts.targets import (
    JVM_WATCHED_PROCESS_MISSING,
    SPARK_METRICS_SOURCE_DISABLED,
    SPARKWATCH_EXPORTER_DOWN,
    TARGET_DOWN,
)
from ..findings import APP_KEY, DOCS_CONFIG, DOCS_DOCTOR, DOCS_JVM, DOCS_LIVY, SETUP, Judge, duration, judges
from ..reading import NO_ATTACH_FLAG, NO_PERF_FLAGS, HostJvm, store_paths

DOCS_SPARK = "docs/spark.md"

#: a JVM younger than this (seconds) may not have written its performance-data file yet
YOUNG_JVM_SECONDS = 30.0

#: what the readings cannot judge (the judgements from Prometheus below do, with --prometheus)
NOT_JUDGED = {
    SPARKWATCH_EXPORTER_DOWN: "it is Prometheus' record of scraping the exporter (`up`); the doctor reads the "
                              "targets itself and never sees Prometheus' scrapes",
}


@judges(*TARGET_DOWN.values())
def targets_down(j: Judge) -> None:
    """A target that cannot be read: its kind's target-down alert, with what its reason says to check."""
    hints = {
        "timeout": "It did not answer within the scrape deadline: is it overloaded or hung? (The deadline is "
                   "exporter.scrape_timeout; each target has its own timeout.)",
        "connection": "Nothing answered: is it running, and are the URL, host and port right?",
        "tls": "The TLS handshake failed: check tls_config (ca_file, server name, client certificate).",
        "auth": "It refused the request: the error says what it wants (e.g. Kerberos) or which of the "
                "target's credentials it refused.",
        "http_status": "It answered with an error status: is the URL that of the right service?",
        "invalid_response": "It answered something that is not what this kind of target sends: is the URL "
                            "that of the right service (not a proxy's page)?",
    }
    for ts in j.last.targets:
        if ts.up:
            continue
        reason = next(iter(ts.reasons), "")
        alert = TARGET_DOWN.get(ts.kind)
        action = alert.action if alert else "Restart or repair the target; if it is healthy, fix the exporter's " \
                                            "configuration for it."
        j.add(alert, signature=SETUP, severity=None if alert else "warning", target=ts.name, labels={},
              subject=f"{ts.kind} target",
              summary=f"The {ts.kind} target cannot be read ({reason or 'down'}): {ts.error}",
              fix=" ".join(x for x in (hints.get(reason, ""), action) if x),
              runbook=None if alert else DOCS_CONFIG, evidence={"up": 0})


@judges()
def partial_errors(j: Judge) -> None:
    """Parts of a target that is up (one JVM, one application) that could not be read."""
    for ts in j.last.targets:
        if not ts.up or not ts.reasons:
            continue
        reasons = ", ".join(f"{r} x{n}" for r, n in sorted(ts.reasons.items()))
        fix = {"jvm": "The exporter's log names each JVM and why (a performance-data file it cannot read, "
                      "an attach that failed); see the setup findings about JVMs above.",
               "livy": "With 'limit': raise max_sessions; otherwise the exporter's log says which part failed.",
               }.get(ts.kind, "The exporter's log says which part failed and why.")
        j.add(None, signature=SETUP, severity="info", target=ts.name, subject=f"{ts.kind} target",
              summary=f"Part of the {ts.kind} target could not be read ({reasons}); the rest was judged.",
              fix=fix, runbook=DOCS_CONFIG, evidence={f"errors_{r}": n for r, n in ts.reasons.items()})


@judges(JVM_WATCHED_PROCESS_MISSING)
def watched_missing(j: Judge) -> None:
    """A jvm entry with match: that no running JVM matches (unless its JVM runs unseen: host_jvms)."""
    # entries whose JVM runs but cannot be seen or read: host_jvms says why, this would mislead
    hidden = {n for jvm in (j.host.jvms if j.host else []) if jvm.perf_path is None or not jvm.perf_readable
              for n in jvm.labels}
    for labels, v in j.series(j.last, "jvm_processes", ("target",)).values():
        tc = next((t for t in j.config.jvm if t.display_name() == labels["target"]), None)
        if v == 0 and tc is not None and tc.match is not None and labels["target"] not in hidden:
            j.add(JVM_WATCHED_PROCESS_MISSING, target=labels["target"], labels=labels,
                  subject=f"process {labels['target']}",
                  summary=f"No running JVM matches the jvm entry {labels['target']!r} "
                          f"(match: {tc.match}): the process it watches is gone, or never started.",
                  evidence={"jvm_processes": 0})


@judges(SPARK_METRICS_SOURCE_DISABLED)
def metrics_sources(j: Judge) -> None:
    """A Spark application without the streaming or the JVM metrics source; one that has ended
    (completed, or stale on a history server) only said, in the past tense: nothing can be changed
    for it now."""
    blind = {"streaming": "its streaming queries are invisible (S3's flat-state check, every S4 judgement)",
             "jvm": "its driver heap and code cache pools are invisible (S3, S5)"}
    were = {"streaming": "its streaming queries were invisible", "jvm": "its driver heap and code cache pools "
            "were invisible"}
    for labels, v in j.series(j.last, "spark_metrics_source_enabled", APP_KEY + ("source",)).values():
        if v == 0:
            src = labels.get("source", "")
            ended = j.app_ended(labels)
            if ended:
                j.add(SPARK_METRICS_SOURCE_DISABLED, target=labels["target"], labels=labels,
                      subject=j.app_subject(labels), severity="info",
                      summary=f"Spark's {src} metrics source was off while it ran: "
                              f"{were.get(src, 'its series were absent')}. It has {ENDED[ended]}.",
                      fix="Nothing for this application. Applications still to run need the source on "
                          "(the runbook).",
                      evidence={f"metrics_source_{src}_enabled": 0})
                continue
            j.add(SPARK_METRICS_SOURCE_DISABLED, target=labels["target"], labels=labels, subject=j.app_subject(labels),
                  summary=f"Spark's {src} metrics source is off: {blind.get(src, 'its series are absent')}.",
                  evidence={f"metrics_source_{src}_enabled": 0})


#: how an application that has ended ended (Judge.app_ended), in words
ENDED = {"completed": "completed", "stale": "stopped (its event log was never closed: see the finding about it)"}


@judges()
def stale_applications(j: Judge) -> None:
    """An application a history server lists as running whose event log was never closed and
    shows no sign of life for stale_after (spark_app_stale): its driver most likely died. Said
    (info) as such, with when it last did something, not as an application running for years."""
    uptime = j.series(j.last, "spark_app_uptime_seconds", APP_KEY)
    for k, (labels, v) in j.series(j.last, "spark_app_stale", APP_KEY).items():
        if v != 1:
            continue
        up = uptime.get(k, (None, None))[1]
        ran = f" after running for {duration(up)}" if up is not None else ""
        j.add(None, signature=SETUP, severity="info", target=labels["target"], subject=j.app_subject(labels),
              summary=f"Its event log was never closed, yet nothing happened in it for longer than the target's "
                      f"stale_after: the application stopped{ran} (its driver most likely died) and the history "
                      "server still lists it as running. Its figures are those of its last sign of life.",
              fix="Nothing to do in sparkwatch: it reports the application with spark_app_stale 1 "
                  "(docs/spark-correctness.md: leaving such applications out of a query). Delete its event "
                  "log, or let the history server's cleaner remove it (spark.history.fs.cleaner.maxAge).",
              runbook=DOCS_SPARK, evidence={"stale": 1, "uptime_seconds": up})


def starting(jvm: HostJvm) -> bool:
    """A JVM young enough that a missing performance-data file, or one that is not
    written yet, is its start (not a permission: a private file stays private)."""
    not_written = jvm.perf_path is None or (not jvm.perf_readable and jvm.perf_error != "permission")
    return not_written and jvm.age is not None and jvm.age < YOUNG_JVM_SECONDS


@judges()
def host_jvms(j: Judge) -> None:
    """JVMs the jvm targets should watch but cannot see or read, and attach that cannot work."""
    if j.host is None or not j.config.jvm:
        return
    jvm_targets = {t.display_name(): t for t in j.config.jvm}
    unreadable: Dict[str, List[int]] = {}
    for jvm in j.host.jvms:
        if not jvm.labels:
            continue  # no jvm target wants it
        targets = ", ".join(sorted(jvm.labels))
        subject = f"process {jvm.main or '?'} (pid {jvm.pid}, user {jvm.user})"
        flags = [f for f in NO_PERF_FLAGS if jvm.has(f)]
        if starting(jvm) and not flags:
            j.add(None, signature=SETUP, severity="info", target=targets, subject=subject,
                  summary=f"JVM pid {jvm.pid} started {jvm.age:.0f} s ago; its performance-data file is not "
                          "written yet: sparkwatch reads the JVM once it has initialised.",
                  fix=f"Nothing, if it is starting: run the doctor again in a minute (a JVM writes the file "
                      f"within a second or two of its start; past {YOUNG_JVM_SECONDS:.0f} s the doctor says "
                      "what keeps it unreadable).",
                  runbook=DOCS_JVM, evidence={"pid": jvm.pid, "age_seconds": jvm.age})
        elif jvm.perf_path is None and flags:
            j.add(None, signature=SETUP, severity="warning", target=targets, subject=subject,
                  summary=f"This JVM runs with {' '.join(flags)}: it has no performance-data file, so "
                          "sparkwatch cannot see it at all (classes, GC, heap, threads, limits).",
                  fix=f"Remove {' and '.join(flags)} from its JVM options and restart it at a quiet moment "
                      "(the file costs nothing measurable; jstat and jcmd need it too).",
                  runbook=DOCS_JVM, evidence={"pid": jvm.pid})
        elif jvm.perf_path is None:
            j.add(None, signature=SETUP, severity="info", target=targets, subject=subject,
                  summary="This JVM has no performance-data file the exporter can find (another /tmp it "
                          "cannot reach, or -XX:Flags hiding -XX:-UsePerfData): sparkwatch does not see it.",
                  fix="Run the exporter on the host (or with --pid=host) as root; check the JVM's flags "
                      "(jcmd PID VM.flags).", runbook=DOCS_JVM, evidence={"pid": jvm.pid})
        elif not jvm.perf_readable and j.host.euid != 0 and jvm.uid != j.host.euid:
            unreadable.setdefault(jvm.user, []).append(jvm.pid)
        elif not jvm.perf_readable:
            why = f" ({jvm.perf_error})" if jvm.perf_error else ""
            j.add(None, signature=SETUP, severity="warning", target=targets, subject=subject,
                  summary=f"Its performance-data file {jvm.perf_path} cannot be read{why}: sparkwatch is "
                          "blind to this JVM.", fix="Check the file's owner and mode, and the exporter's user.",
                  runbook=DOCS_JVM, evidence={"pid": jvm.pid})
        if jvm.has(NO_ATTACH_FLAG) and any(jvm_targets[n].attach for n in jvm.labels if n in jvm_targets):
            j.add(None, signature=SETUP, severity="warning", target=targets, subject=subject,
                  summary=f"This JVM runs with {NO_ATTACH_FLAG}: its code cache and JIT state cannot be "
                          "read (S5's code cache judgements are blind for it).",
                  fix=f"Remove {NO_ATTACH_FLAG} at its next restart; until then watch its loaded classes "
                      "(jvm_classes_currently_loaded) instead.", runbook=DOCS_JVM, evidence={"pid": jvm.pid})
    for user, pids in sorted(unreadable.items()):
        j.add(None, signature=SETUP, severity="warning", target=", ".join(sorted(jvm_targets)),
              subject=f"JVMs of user {user} ({len(pids)}: pid {', '.join(map(str, pids[:5]))}"
                      f"{', ...' if len(pids) > 5 else ''})",
              summary=f"{len(pids)} JVM(s) of user {user} cannot be read: sparkwatch runs as uid "
                      f"{j.host.euid}, not root, and their performance-data files are private.",
              fix="Run the exporter as root" + ("" if user == "root" else f" (or as {user}, for its JVMs "
                                                                           "only)")
                  + ", on the host or with the host's PID namespace.", runbook=DOCS_JVM,
              evidence={"jvms": len(pids)})
    # attach off: the code cache and the JIT state are not read at all
    seen = {lbl.get("target") for _, lbl, _ in j.last.find("jvm_info")}
    for name, tc in jvm_targets.items():
        if not tc.attach and name in seen:
            j.add(None, signature=SETUP, severity="info", target=name, subject="jvm target",
                  summary="attach is off for this entry: the code cache and the JIT state of its JVMs are "
                          "not read, so S5's code cache judgements cannot be made for them.",
                  fix="Set attach: true on the jvm entry (one 'Attach Listener' thread per JVM, once).",
                  runbook=DOCS_JVM)


@judges()
def livy_store_setup(j: Judge) -> None:
    """A ZooKeeper without Livy's recovery path: the key prefix differs, or Livy does not recover from it."""
    exists = j.series(j.last, "zookeeper_znode_exists", ("target", "path"))
    for tc in j.config.zookeeper:
        paths = store_paths(tc)
        name = tc.display_name()
        got = [exists.get((name, p)) for p in paths]
        if paths and all(g is not None and g[1] == 0 for g in got):
            root = paths[0].rsplit("/", 1)[0]
            j.add(None, signature=SETUP, severity="warning", target=name, subject="Livy recovery store",
                  summary=f"Livy's recovery path {root} does not exist in this ZooKeeper: the sessions a "
                          "Livy restart would recover cannot be counted (S2 is blind).",
                  fix="Set livy_state_store.key_prefix to Livy's livy.server.recovery.zk-state-store."
                      "key-prefix (default 'livy'), and check that livy.server.recovery.mode=recovery uses "
                      "this ZooKeeper (livy.server.recovery.state-store.url); or set "
                      "livy_state_store.enabled: false.", runbook=DOCS_LIVY)


# ------------------------------------------------------------------ from Prometheus (--prometheus)


@judges(SPARKWATCH_EXPORTER_DOWN, prometheus=True)
def exporter_down_history(j: Judge) -> None:
    """Prometheus cannot scrape the exporter (its own `up`): the selector says which exporter is this one."""
    for a in j.active(SPARKWATCH_EXPORTER_DOWN):
        j.add_active(a, summary=f"Prometheus cannot scrape the exporter {a.labels.get('instance') or '?'} (job "
                                f"{a.labels.get('job') or '?'}): no series of its targets arrive, and every "
                                "alert about them is blind.",
                     evidence={"up": a.value})


#: what to check when Prometheus cannot be read, by the reason
PROMETHEUS_HINTS = {
    "connection": "Is Prometheus running, and is --prometheus its URL as this host reaches it (with its path "
                  "prefix, if it has one)?",
    "timeout": "It did not answer in time: raise --prometheus.timeout, or narrow what is read with "
               "--prometheus.selector.",
    "tls": "Give the CA that signed Prometheus' certificate: --prometheus.ca-file.",
    "auth": "Give its credentials: --prometheus.user and --prometheus.password-file, or "
            "--prometheus.bearer-token-file.",
    "http_status": "Is --prometheus the URL of Prometheus itself (its HTTP API answers /api/v1/query)?",
    "invalid_response": "Is --prometheus the URL of Prometheus itself (its HTTP API answers /api/v1/query), "
                        "with no proxy page in between?",
    "limit": "Its answer was too large: narrow it with --prometheus.selector.",
}


@judges(prometheus=True)
def prometheus_setup(j: Judge) -> None:
    """Prometheus that cannot be read, or does not hold the pack's rules: what --prometheus cannot see."""
    h = j.history
    if h is None:
        return
    if h.error:
        j.add(None, signature=SETUP, severity="warning", target=h.url, subject="Prometheus",
              summary=f"Prometheus could not be read ({h.reason}): {h.error}. The pack's alerts and trends "
                      "are not in this report.",
              fix=PROMETHEUS_HINTS.get(h.reason, "Check --prometheus and its options."), runbook=DOCS_DOCTOR)
        return
    enabled = [a for a in ALERTS if j.t.enabled(a)]
    if h.missing is not None and enabled and len(h.missing) == len(enabled):
        j.add(None, signature=SETUP, severity="warning", target=h.url, subject="Prometheus",
              summary="Prometheus has none of the pack's alert rules loaded: none of them can be firing, and "
                      "the trends they compute are not judged.",
              fix="Add the pack's rules to Prometheus' rule_files (alerts/sparkwatch.rules.yml, or the output "
                  "of sparkwatch rules --config with your rules configuration) and reload it.",
              runbook=DOCS_DOCTOR, evidence={"rules_missing": len(h.missing)})
    elif h.missing:
        names = ", ".join(a.name for a in h.missing[:5]) + (", ..." if len(h.missing) > 5 else "")
        j.add(None, signature=SETUP, severity="info", target=h.url, subject="Prometheus",
              summary=f"Prometheus has no rule for {len(h.missing)} of the pack's alerts ({names}).",
              fix="Load the rules generated with the same rules configuration as the doctor's --rules.config "
                  "(sparkwatch rules --config FILE); disable in it the alerts you do not want.",
              runbook=DOCS_DOCTOR, evidence={"rules_missing": len(h.missing)})
    for alert, error in h.failing:
        j.add(None, signature=SETUP, severity="warning", target=h.url, subject=f"Prometheus' rule {alert.name}",
              summary=f"Prometheus fails to evaluate the rule: {error or 'no error given'}. It cannot fire.",
              fix="Check the rule against the metrics Prometheus holds (a relabelling that renamed them, "
                  "two exporters with the same series).", runbook=j.t.runbook(alert))
    if h.problems:
        more = f" (and {len(h.problems) - 3} more)" if len(h.problems) > 3 else ""
        j.add(None, signature=SETUP, severity="info", target=h.url, subject="Prometheus",
              summary="Part of what Prometheus holds could not be read: " + "; ".join(h.problems[:3]) + more + ".",
              fix="The findings from Prometheus above lack those numbers; run the doctor again, or read them "
                  "in Prometheus.", runbook=DOCS_DOCTOR)
