"""The judgements: one or two readings of every target, judged signature by
signature with the alerting pack's thresholds (:mod:`.thresholds`).

Each rule names the alert whose condition it applies to what it can see now:
the severity is that alert's, the fix its runbook's action (or the signature's
fix, where that says more to the person on call), the runbook its page. What
an alert computes over hours (a rising floor, a growth over six hours) the
doctor cannot see in one look: such rules either need ``--watch`` (two
readings; the trend between them is extrapolated over the alert's own window
or horizon) or report what they see as ``info``. docs/doctor.md lists every
rule and what it keeps of its alert.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..pack.alerts import LIVY_TERMINAL, TARGET_KINDS
from ..pack.signatures import SIGNATURES
from .reading import NO_ATTACH_FLAG, NO_PERF_FLAGS, HostScan, Reading, store_paths
from .thresholds import Thresholds

log = logging.getLogger("sparkwatch.doctor")

SEVERITIES = ("critical", "warning", "info")
SIGNATURE_ORDER = ("S1", "S2", "S3", "S4", "S5", "setup")
JVM_KEY = ("target", "process", "app_id", "executor_id", "pid")
APP_KEY = ("target", "app_id", "app_name")
#: a share of time (GC) is measured between two readings only over at least this many seconds
#: (of wall clock, or of task time); below, one collection would dominate it: the share since start is used
MIN_RATE_SECONDS = 60.0
DOCS_JVM = "docs/jvm.md"
DOCS_LIVY = "docs/livy.md"
DOCS_SPARK = "docs/spark.md"
DOCS_CONFIG = "docs/configuration.md"
#: a JVM younger than this (seconds) may not have written its performance-data file yet
YOUNG_JVM_SECONDS = 30.0


@dataclass
class Finding:
    severity: str  # critical | warning | info
    signature: str  # S1..S5 | setup
    target: str  # the sparkwatch target it was read from
    subject: str  # what it is about: a process, an application, a query
    summary: str  # the verdict, with the numbers that prove it
    evidence: Dict[str, float] = field(default_factory=dict)
    fix: str = ""
    runbook: str = ""  # path in the repository: alerts/runbooks/<Alert>.md or docs/<page>.md

    def as_dict(self) -> dict:
        return asdict(self)

    def sort_key(self):
        return (SEVERITIES.index(self.severity), SIGNATURE_ORDER.index(self.signature), self.target, self.subject)


# --------------------------------------------------------------------------
# Formatting numbers for a verdict


def count(v: float) -> str:
    return f"{int(round(v)):,}"


def pct(ratio: float) -> str:
    p = ratio * 100
    return f"{p:.0f}%" if p >= 10 or p == int(p) else f"{p:.1f}%"


def size(b: float) -> str:
    for unit, n in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(b) >= n:
            return f"{b / n:.1f} {unit}"
    return f"{int(b)} B"


def duration(s: float) -> str:
    s = float(s)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(s) >= n:
            v = s / n
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{s:.0f}s"


def _num(v: float) -> float:
    """A number for the JSON evidence: an integer when it is one."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return round(v, 3) if isinstance(v, float) else v


def _key(labels: Dict[str, str], keys: Iterable[str]) -> Tuple[str, ...]:
    return tuple(labels.get(k, "") for k in keys)


# --------------------------------------------------------------------------


class Judge:
    def __init__(self, readings: List[Reading], thresholds: Thresholds, host: Optional[HostScan], config):
        self.readings = readings
        self.first, self.last = readings[0], readings[-1]
        self.watching = len(readings) > 1
        self.dt = self.last.monotonic - self.first.monotonic if self.watching else 0.0
        self.t = thresholds
        self.host = host
        self.config = config
        self.findings: List[Finding] = []

    # ------------------------------------------------------------ helpers

    def add(self, alert: Optional[str], signature: Optional[str] = None, severity: Optional[str] = None,
            fix: Optional[str] = None, runbook: Optional[str] = None, **kw) -> None:
        """A finding; by default the alert's signature, severity, action and runbook."""
        if alert is not None:
            if not self.t.enabled(alert):
                return
            a = self.t.alert(alert)
            signature = signature or ("setup" if a.signature == "targets" else a.signature)
            severity = severity or self.t.severity(alert)
            fix = fix if fix is not None else a.action
            runbook = runbook or self.t.runbook(alert)
        ev = {k: _num(float(v)) for k, v in kw.pop("evidence", {}).items() if v is not None and math.isfinite(v)}
        self.findings.append(Finding(severity, signature, kw["target"], kw["subject"], kw["summary"], ev,
                                     fix or "", runbook or ""))

    def series(self, reading: Reading, name: str, keys: Iterable[str] = JVM_KEY,
               where: Optional[Callable[[Dict[str, str]], bool]] = None) -> Dict[tuple, Tuple[Dict[str, str], float]]:
        keys = tuple(keys)
        out = {}
        for _, labels, v in reading.find(name):
            if where is None or where(labels):
                out[_key(labels, keys)] = (labels, v)
        return out

    def trend(self, name: str, keys: Iterable[str] = JVM_KEY, where=None):
        """key -> (labels, first value or None, last value) of a series in both readings."""
        last = self.series(self.last, name, keys, where)
        first = self.series(self.first, name, keys, where) if self.watching else {}
        return {k: (lv[0], first[k][1] if k in first else None, lv[1]) for k, lv in last.items()}

    def jvm_subject(self, labels: Dict[str, str]) -> str:
        s = f"process {labels.get('process') or '?'}"
        extra = []
        if labels.get("app_id"):
            extra.append(f"app {labels['app_id']}")
        if labels.get("executor_id"):
            extra.append(f"executor {labels['executor_id']}")
        pid = labels.get("pid") or ""
        if not pid and self.host is not None:
            pids = self.host.pids_of(labels.get("target", ""), labels.get("process", ""), labels.get("app_id", ""),
                                     labels.get("executor_id", ""))
            if len(pids) == 1:
                pid = str(pids[0])
        if pid:
            extra.append(f"pid {pid}")
        return s + (f" ({', '.join(extra)})" if extra else "")

    @staticmethod
    def app_subject(labels: Dict[str, str]) -> str:
        return f"application {labels.get('app_name') or '?'} ({labels.get('app_id') or '?'})"

    @staticmethod
    def query_subject(labels: Dict[str, str]) -> str:
        return f"query {labels.get('query') or '?'} of {Judge.app_subject(labels)}"

    def uptime(self, labels: Dict[str, str]) -> Optional[float]:
        """Seconds a JVM (jvm collector labels) has been running."""
        for _, lbl, v in self.last.find("jvm_start_time_seconds"):
            if _key(lbl, JVM_KEY) == _key(labels, JVM_KEY):
                return self.last.wall - v
        return None

    # ------------------------------------------------------------ all rules

    def judge(self) -> List[Finding]:
        for rule in (self.targets_down, self.partial_errors, self.watched_missing, self.metrics_sources,
                     self.host_jvms, self.livy_store_setup,
                     self.s1_finished_sessions, self.s2_restart, self.s2_threads_near_limit,
                     self.s3_heap_floor, self.s3_gc, self.s3_executor_gc, self.s3_threads_trend, self.s3_fds,
                     self.s4_streaming, self.s5_codecache, self.s5_jit, self.s5_classes, self.s5_cleaner,
                     self.s5_listener, self.s5_jobs):
            try:
                rule()
            except Exception as e:  # a bug in one rule must not hide the others' findings
                log.exception("doctor rule %s failed", rule.__name__)
                self.findings.append(Finding("info", "setup", "sparkwatch", "sparkwatch doctor",
                                             f"The judgement {rule.__name__} failed ({type(e).__name__}: {e}); "
                                             "what it checks was not judged.", {}, "Report this as a bug.", ""))
        return sorted(self.findings, key=Finding.sort_key)

    # ------------------------------------------------------------ setup: what makes sparkwatch blind

    def targets_down(self) -> None:
        alerts = {kind: name for kind, name, _, _ in TARGET_KINDS}
        hints = {
            "timeout": "It did not answer within the scrape deadline: is it overloaded or hung? (The deadline is "
                       "exporter.scrape_timeout; each target has its own timeout.)",
            "connection": "Nothing answered: is it running, and are the URL, host and port right?",
            "tls": "The TLS handshake failed: check tls_config (ca_file, server name, client certificate).",
            "auth": "It refused the credentials: check basic_auth, bearer_token or digest_auth.",
            "http_status": "It answered with an error status: is the URL that of the right service?",
            "invalid_response": "It answered something that is not what this kind of target sends: is the URL "
                                "that of the right service (not a proxy's page)?",
        }
        for ts in self.last.targets:
            if ts.up:
                continue
            reason = next(iter(ts.reasons), "")
            alert = alerts.get(ts.kind)
            action = self.t.alert(alert).action if alert else "Restart or repair the target; if it is healthy, " \
                                                               "fix the exporter's configuration for it."
            self.add(alert, signature="setup", severity=None if alert else "warning", target=ts.name,
                     subject=f"{ts.kind} target",
                     summary=f"The {ts.kind} target cannot be read ({reason or 'down'}): {ts.error}",
                     fix=" ".join(x for x in (hints.get(reason, ""), action) if x),
                     runbook=None if alert else DOCS_CONFIG, evidence={"up": 0})

    def partial_errors(self) -> None:
        for ts in self.last.targets:
            if not ts.up or not ts.reasons:
                continue
            reasons = ", ".join(f"{r} x{n}" for r, n in sorted(ts.reasons.items()))
            fix = {"jvm": "The exporter's log names each JVM and why (a performance-data file it cannot read, "
                          "an attach that failed); see the setup findings about JVMs above.",
                   "livy": "With 'limit': raise max_sessions; otherwise the exporter's log says which part failed.",
                   }.get(ts.kind, "The exporter's log says which part failed and why.")
            self.add(None, signature="setup", severity="info", target=ts.name, subject=f"{ts.kind} target",
                     summary=f"Part of the {ts.kind} target could not be read ({reasons}); the rest was judged.",
                     fix=fix, runbook=DOCS_CONFIG, evidence={f"errors_{r}": n for r, n in ts.reasons.items()})

    def watched_missing(self) -> None:
        # entries whose JVM runs but cannot be seen or read: host_jvms says why, this would mislead
        hidden = {n for j in (self.host.jvms if self.host else []) if j.perf_path is None or not j.perf_readable
                  for n in j.labels}
        for labels, v in self.series(self.last, "jvm_processes", ("target",)).values():
            tc = next((t for t in self.config.jvm if t.display_name() == labels["target"]), None)
            if v == 0 and tc is not None and tc.match is not None and labels["target"] not in hidden:
                self.add("JvmWatchedProcessMissing", target=labels["target"], subject=f"process {labels['target']}",
                         summary=f"No running JVM matches the jvm entry {labels['target']!r} "
                                 f"(match: {tc.match}): the process it watches is gone, or never started.",
                         evidence={"jvm_processes": 0})

    def metrics_sources(self) -> None:
        blind = {"streaming": "its streaming queries are invisible (S3's flat-state check, every S4 judgement)",
                 "jvm": "its driver heap and code cache pools are invisible (S3, S5)"}
        for labels, v in self.series(self.last, "spark_metrics_source_enabled", APP_KEY + ("source",)).values():
            if v == 0:
                src = labels.get("source", "")
                self.add("SparkMetricsSourceDisabled", target=labels["target"], subject=self.app_subject(labels),
                         summary=f"Spark's {src} metrics source is off: {blind.get(src, 'its series are absent')}.",
                         evidence={f"metrics_source_{src}_enabled": 0})

    @staticmethod
    def starting(j) -> bool:
        """A JVM young enough that a missing performance-data file, or one that is not
        written yet, is its start (not a permission: a private file stays private)."""
        not_written = j.perf_path is None or (not j.perf_readable and j.perf_error != "permission")
        return not_written and j.age is not None and j.age < YOUNG_JVM_SECONDS

    def host_jvms(self) -> None:
        """JVMs the jvm targets should watch but cannot see or read, and attach that cannot work."""
        if self.host is None or not self.config.jvm:
            return
        jvm_targets = {t.display_name(): t for t in self.config.jvm}
        unreadable: Dict[str, List[int]] = {}
        for j in self.host.jvms:
            if not j.labels:
                continue  # no jvm target wants it
            targets = ", ".join(sorted(j.labels))
            subject = f"process {j.main or '?'} (pid {j.pid}, user {j.user})"
            flags = [f for f in NO_PERF_FLAGS if j.has(f)]
            if self.starting(j) and not flags:
                self.add(None, signature="setup", severity="info", target=targets, subject=subject,
                         summary=f"JVM pid {j.pid} started {j.age:.0f} s ago; its performance-data file is not "
                                 "written yet: sparkwatch reads the JVM once it has initialised.",
                         fix=f"Nothing, if it is starting: run the doctor again in a minute (a JVM writes the file "
                             f"within a second or two of its start; past {YOUNG_JVM_SECONDS:.0f} s the doctor says "
                             "what keeps it unreadable).",
                         runbook=DOCS_JVM, evidence={"pid": j.pid, "age_seconds": j.age})
            elif j.perf_path is None and flags:
                self.add(None, signature="setup", severity="warning", target=targets, subject=subject,
                         summary=f"This JVM runs with {' '.join(flags)}: it has no performance-data file, so "
                                 "sparkwatch cannot see it at all (classes, GC, heap, threads, limits).",
                         fix=f"Remove {' and '.join(flags)} from its JVM options and restart it at a quiet moment "
                             "(the file costs nothing measurable; jstat and jcmd need it too).",
                         runbook=DOCS_JVM, evidence={"pid": j.pid})
            elif j.perf_path is None:
                self.add(None, signature="setup", severity="info", target=targets, subject=subject,
                         summary="This JVM has no performance-data file the exporter can find (another /tmp it "
                                 "cannot reach, or -XX:Flags hiding -XX:-UsePerfData): sparkwatch does not see it.",
                         fix="Run the exporter on the host (or with --pid=host) as root; check the JVM's flags "
                             "(jcmd PID VM.flags).", runbook=DOCS_JVM, evidence={"pid": j.pid})
            elif not j.perf_readable and self.host.euid != 0 and j.uid != self.host.euid:
                unreadable.setdefault(j.user, []).append(j.pid)
            elif not j.perf_readable:
                why = f" ({j.perf_error})" if j.perf_error else ""
                self.add(None, signature="setup", severity="warning", target=targets, subject=subject,
                         summary=f"Its performance-data file {j.perf_path} cannot be read{why}: sparkwatch is "
                                 "blind to this JVM.", fix="Check the file's owner and mode, and the exporter's user.",
                         runbook=DOCS_JVM, evidence={"pid": j.pid})
            if j.has(NO_ATTACH_FLAG) and any(jvm_targets[n].attach for n in j.labels if n in jvm_targets):
                self.add(None, signature="setup", severity="warning", target=targets, subject=subject,
                         summary=f"This JVM runs with {NO_ATTACH_FLAG}: its code cache and JIT state cannot be "
                                 "read (S5's code cache judgements are blind for it).",
                         fix=f"Remove {NO_ATTACH_FLAG} at its next restart; until then watch its loaded classes "
                             "(jvm_classes_currently_loaded) instead.", runbook=DOCS_JVM, evidence={"pid": j.pid})
        for user, pids in sorted(unreadable.items()):
            self.add(None, signature="setup", severity="warning", target=", ".join(sorted(jvm_targets)),
                     subject=f"JVMs of user {user} ({len(pids)}: pid {', '.join(map(str, pids[:5]))}"
                             f"{', ...' if len(pids) > 5 else ''})",
                     summary=f"{len(pids)} JVM(s) of user {user} cannot be read: sparkwatch runs as uid "
                             f"{self.host.euid}, not root, and their performance-data files are private.",
                     fix="Run the exporter as root" + ("" if user == "root" else f" (or as {user}, for its JVMs "
                                                                               "only)")
                         + ", on the host or with the host's PID namespace.", runbook=DOCS_JVM,
                     evidence={"jvms": len(pids)})
        # attach off: the code cache and the JIT state are not read at all
        seen = {lbl.get("target") for _, lbl, _ in self.last.find("jvm_info")}
        for name, tc in jvm_targets.items():
            if not tc.attach and name in seen:
                self.add(None, signature="setup", severity="info", target=name, subject="jvm target",
                         summary="attach is off for this entry: the code cache and the JIT state of its JVMs are "
                                 "not read, so S5's code cache judgements cannot be made for them.",
                         fix="Set attach: true on the jvm entry (one 'Attach Listener' thread per JVM, once).",
                         runbook=DOCS_JVM)

    def livy_store_setup(self) -> None:
        exists = self.series(self.last, "zookeeper_znode_exists", ("target", "path"))
        for tc in self.config.zookeeper:
            paths = store_paths(tc)
            name = tc.display_name()
            got = [exists.get((name, p)) for p in paths]
            if paths and all(g is not None and g[1] == 0 for g in got):
                root = paths[0].rsplit("/", 1)[0]
                self.add(None, signature="setup", severity="warning", target=name, subject="Livy recovery store",
                         summary=f"Livy's recovery path {root} does not exist in this ZooKeeper: the sessions a "
                                 "Livy restart would recover cannot be counted (S2 is blind).",
                         fix="Set livy_state_store.key_prefix to Livy's livy.server.recovery.zk-state-store."
                             "key-prefix (default 'livy'), and check that livy.server.recovery.mode=recovery uses "
                             "this ZooKeeper (livy.server.recovery.state-store.url); or set "
                             "livy_state_store.enabled: false.", runbook=DOCS_LIVY)

    # ------------------------------------------------------------ S1

    def s1_finished_sessions(self) -> None:
        a1, a2 = "LivyFinishedSessionsPilingUp", "LivyFinishedSessionsNotCollected"
        min_finished = self.t.number(a1, "min_finished")
        min_growth = self.t.number(a1, "min_growth")
        window = self.t.seconds(a1, "window")
        max_age = self.t.seconds(a2, "max_age")
        terminal = LIVY_TERMINAL.split("|")
        groups: Dict[tuple, Dict[str, float]] = {}
        first_groups: Dict[tuple, float] = {}
        for reading, store in ((self.last, groups), (self.first if self.watching else None, None)):
            if reading is None:
                continue
            for _, lbl, v in reading.find("livy_sessions"):
                if lbl.get("state") in terminal:
                    if store is not None:
                        store.setdefault((lbl["target"], lbl["kind"]), {})[lbl["state"]] = v
                    else:
                        k = (lbl["target"], lbl["kind"])
                        first_groups[k] = first_groups.get(k, 0) + v
        ages = {k: v for k, (_, v) in self.series(self.last, "livy_finished_session_oldest_age_seconds",
                                                  ("target", "kind")).items()}
        fix = SIGNATURES["S1"].fix
        for (target, kind), states in sorted(groups.items()):
            finished = sum(states.values())
            age = ages.get((target, kind))
            ev = {"finished_sessions": finished, **{f"{s}_sessions": n for s, n in states.items() if n},
                  "min_finished": min_finished, "oldest_finished_seen_seconds": age}
            growth = None
            if (target, kind) in first_groups and self.dt > 0:
                growth = (finished - first_groups[(target, kind)]) / self.dt * window
                ev["growth_per_window_extrapolated"] = growth
                ev["min_growth"] = min_growth
            if finished > min_finished:
                grow = ""
                if growth is not None and growth > 0:
                    grow = (f"; at the pace of the last {duration(self.dt)}, {count(growth)} more per "
                            f"{duration(window)}")
                self.add(a1, target=target, subject=f"Livy {kind} sessions",
                         summary=f"Livy holds {count(finished)} finished {kind} sessions (more than "
                                 f"{count(min_finished)}); nobody deletes them and the retention does not remove "
                                 f"them{grow}. Oldest seen finished: {duration(age or 0)} (since sparkwatch first "
                                 "saw it).", fix=fix, evidence=ev)
            elif age is not None and age > max_age:
                self.add(a2, target=target, subject=f"Livy {kind} sessions",
                         summary=f"The oldest finished {kind} session has been kept for more than "
                                 f"{duration(age)} (the retention should remove it within {duration(max_age)}).",
                         fix=fix, evidence=ev)

    # ------------------------------------------------------------ S2

    def s2_restart(self) -> None:
        a, ar = "LivyRestartWouldExhaustThreads", "LivyRestartRiskRising"
        ratio = self.t.number(a, "ratio")
        livy = self.t.regex(a, "livy_process")
        join = [x.strip() for x in self.t.text(a, "join").split(",") if x.strip()]
        horizon = self.t.seconds(ar, "horizon")
        ratio_r = self.t.number(ar, "ratio")

        def stored(reading: Reading):
            out: Dict[tuple, Dict[str, object]] = {}
            for _, lbl, v in reading.find("livy_recovery_sessions"):
                g = out.setdefault(_key(lbl, join), {"sessions": 0.0, "targets": set(), "kinds": {}})
                g["sessions"] += v
                g["targets"].add(lbl["target"])
                g["kinds"][lbl["kind"]] = g["kinds"].get(lbl["kind"], 0) + v
            return out

        now = stored(self.last)
        before = stored(self.first) if self.watching else {}
        headroom = self.series(self.last, "jvm_process_thread_headroom",
                               where=lambda lbl: bool(livy.match(lbl.get("process", ""))))
        limits = self.series(self.last, "jvm_process_thread_limit")
        users = self.series(self.last, "jvm_process_user_threads")
        for jv, g in sorted(now.items()):
            sessions = g["sessions"]
            target = ", ".join(sorted(g["targets"]))
            label = dict(zip(join, jv))
            if not any(jv):
                if sessions > 0:
                    self.add(None, signature="setup", severity="info", target=target, subject="Livy recovery store",
                             summary=f"The store holds {count(sessions)} sessions, but the target does not name the "
                                     "Livy JVM (process), so they cannot be weighed against its thread limit.",
                             fix="Set livy_state_store.process (zookeeper) or process (livy) to the name of a jvm "
                                 "entry that matches the Livy server, e.g. {name: livy, match: LivyServer}.",
                             runbook=DOCS_LIVY, evidence={"recovery_sessions": sessions})
                continue
            cands = [(lbl, v) for (lbl, v) in headroom.values() if all(lbl.get(k) == label[k] for k in join)]
            if not cands:
                if sessions > 0:
                    self.add(None, signature="setup", severity="warning", target=target,
                             subject=f"Livy process {label.get('process', jv[0])}",
                             summary=f"A Livy restart would recover {count(sessions)} sessions, but no watched JVM "
                                     f"matching {self.t.text(a, 'livy_process')} has {label}: its thread headroom "
                                     "is unknown, so whether a restart survives cannot be judged.",
                             fix="Add a jvm entry for the Livy server, named as the store's process: "
                                 "{name: livy, match: org.apache.livy.server.LivyServer}, on the Livy host.",
                             runbook=DOCS_LIVY, evidence={"recovery_sessions": sessions})
                continue
            hlbl, room = min(cands, key=lambda c: c[1])
            k = _key(hlbl, JVM_KEY)
            limit = limits.get(k, (None, None))[1]
            ev = {"recovery_sessions": sessions, **{f"recovery_sessions_{kd}": n for kd, n in g["kinds"].items()},
                  "thread_headroom": room, "thread_limit": limit,
                  "threads_in_use": (limit - room) if limit is not None else None,
                  "user_threads": users.get(k, (None, None))[1], "ratio": ratio}
            subject = f"Livy {self.jvm_subject(hlbl)}"
            if sessions > ratio * room:
                self.add(a, target=target, subject=subject,
                         summary=f"A restart of Livy would start {count(sessions)} threads, the limit leaves "
                                 f"{count(room)} (limit {count(limit) if limit is not None else '?'}): it would die "
                                 "with \"unable to create new native thread\". Do not restart Livy before the "
                                 "recovery store is cleaned.",
                         evidence=ev)
            elif jv in before and self.dt > 0 and sessions > before[jv]["sessions"]:
                rate = (sessions - before[jv]["sessions"]) / self.dt
                predicted = sessions + rate * horizon
                ev.update(growth_per_hour=rate * 3600, predicted_sessions=predicted)
                if predicted > ratio_r * room:
                    left = (ratio_r * room - sessions) / rate
                    self.add(ar, target=target, subject=subject,
                             summary=f"Livy's recovery store grows by {count(rate * 3600)} sessions an hour "
                                     f"({count(sessions)} now; the thread headroom is {count(room)}): a restart "
                                     f"after about {duration(left)} from now would fail.", evidence=ev)

    def s2_threads_near_limit(self) -> None:
        a = "JvmThreadsNearLimit"
        r = self.t.number(a, "min_headroom_ratio")
        limits = self.series(self.last, "jvm_process_thread_limit")
        for k, (lbl, room) in self.series(self.last, "jvm_process_thread_headroom").items():
            limit = limits.get(k, (None, None))[1]
            if limit is not None and room < r * limit:
                self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                         summary=f"Only {count(room)} more threads can start before the thread limit of "
                                 f"{count(limit)} (less than {pct(r)} of it free): the next ones fail with "
                                 "\"unable to create new native thread\".",
                         evidence={"thread_headroom": room, "thread_limit": limit, "min_headroom_ratio": r})

    # ------------------------------------------------------------ S3

    def s3_heap_floor(self) -> None:
        a = "JvmHeapFloorNearlyFull"
        ratio = self.t.number(a, "ratio")
        old = self.t.regex(a, "old_space")
        maxes = self.series(self.last, "jvm_memory_space_max_bytes", JVM_KEY + ("space",))
        for k, (lbl, _, _) in self.trend("jvm_memory_space_used_bytes", JVM_KEY + ("space",),
                                      where=lambda lbl: bool(old.match(lbl.get("space", "")))).items():
            used = [v for v in self.values_of("jvm_memory_space_used_bytes", JVM_KEY + ("space",), k)]
            mx = maxes.get(k, (None, None))[1]
            if mx and used and min(used) / mx > ratio:
                floor = min(used)
                self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                         summary=f"Its old generation ({lbl['space']}) stays at {pct(floor / mx)} of its maximum "
                                 f"({size(floor)} of {size(mx)}): collections free almost nothing; expect \"GC "
                                 "overhead limit exceeded\" or \"Java heap space\".",
                         evidence={"old_used_bytes": floor, "old_max_bytes": mx, "ratio": ratio})
        pool = self.t.regex(a, "old_pool")
        keys = APP_KEY + ("pool",)
        pmax = self.series(self.last, "spark_driver_jvm_memory_pool_max_bytes", keys)
        after = self.series(self.last, "spark_driver_jvm_memory_pool_used_after_gc_bytes", keys)
        for k, (lbl, used) in self.series(self.last, "spark_driver_jvm_memory_pool_used_bytes", keys,
                                          where=lambda lbl: bool(pool.match(lbl.get("pool", "")))).items():
            mx = pmax.get(k, (None, None))[1]
            floor = after[k][1] if k in after else min(self.values_of("spark_driver_jvm_memory_pool_used_bytes",
                                                                      keys, k) or [used])
            if mx and floor / mx > ratio:
                self.add(a, target=lbl["target"], subject=f"driver of {self.app_subject(lbl)}",
                         summary=f"The driver's old generation ({lbl['pool']}) stays at {pct(floor / mx)} of its "
                                 f"maximum after GC ({size(floor)} of {size(mx)}): out of memory soon.",
                         evidence={"old_used_bytes": floor, "old_max_bytes": mx, "ratio": ratio})

    def values_of(self, name: str, keys, k) -> List[float]:
        out = []
        for r in self.readings:
            got = self.series(r, name, keys).get(k)
            if got is not None:
                out.append(got[1])
        return out

    def s3_gc(self) -> None:
        a = "JvmGcTimeHigh"
        ratio = self.t.number(a, "ratio")
        sums: Dict[tuple, List[float]] = {}
        labels = {}
        for i, r in enumerate(self.readings):
            for _, lbl, v in r.find("jvm_gc_seconds_total"):
                k = _key(lbl, JVM_KEY)
                labels[k] = lbl
                sums.setdefault(k, [0.0] * len(self.readings))[i] += v
        for k, vals in sums.items():
            lbl = labels[k]
            if self.dt >= MIN_RATE_SECONDS:
                share, over = (vals[-1] - vals[0]) / self.dt, f"the last {duration(self.dt)}"
            else:
                up = self.uptime(lbl)
                if not up or up <= 0:
                    continue
                share, over = vals[-1] / up, f"its {duration(up)} of uptime"
            if share > ratio:
                self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                         summary=f"It spent {pct(share)} of {over} collecting garbage (more than {pct(ratio)}).",
                         evidence={"gc_share": share, "ratio": ratio, "gc_seconds_total": vals[-1]})

    def s3_executor_gc(self) -> None:
        a = "SparkExecutorGcTimeHigh"
        ratio = self.t.number(a, "ratio")
        keys = APP_KEY + ("executor_id",)
        gc = self.trend("spark_executor_gc_seconds_total", keys)
        run = self.trend("spark_executor_run_seconds_total", keys)
        for k, (lbl, g0, g1) in gc.items():
            if k not in run:
                continue
            _, r0, r1 = run[k]
            if g0 is not None and r0 is not None and r1 - r0 >= MIN_RATE_SECONDS:
                share, over = (g1 - g0) / (r1 - r0), f"its task time in the last {duration(self.dt)}"
            elif r1 > 0:
                share, over = g1 / r1, "its task time since it started"
            else:
                continue
            if share > ratio:
                self.add(a, target=lbl["target"], subject=f"executor {lbl['executor_id']} of {self.app_subject(lbl)}",
                         summary=f"It spent {pct(share)} of {over} in garbage collection (more than {pct(ratio)}).",
                         evidence={"gc_share": share, "ratio": ratio, "gc_seconds": g1, "run_seconds": r1})

    def s3_threads_trend(self) -> None:
        a = "JvmThreadsPredictedToHitLimit"
        if not self.watching or self.dt <= 0:
            return
        horizon = self.t.seconds(a, "horizon")
        for k, (lbl, h0, h1) in self.trend("jvm_process_thread_headroom").items():
            if h0 is None or h1 >= h0:
                continue
            rate = (h0 - h1) / self.dt
            if h1 - rate * horizon < 0:
                self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                         summary=f"Its thread headroom fell from {count(h0)} to {count(h1)} in {duration(self.dt)}: "
                                 f"at that pace no thread can start in about {duration(h1 / rate)} (the pack warns "
                                 f"within {duration(horizon)}).",
                         evidence={"thread_headroom_before": h0, "thread_headroom": h1,
                                   "threads_per_hour": rate * 3600, "horizon_seconds": horizon})

    def s3_fds(self) -> None:
        a = "JvmFileDescriptorsPredictedExhausted"
        min_ratio = self.t.number(a, "min_ratio")
        horizon = self.t.seconds(a, "horizon")
        maxes = self.series(self.last, "jvm_process_max_fds")
        for k, (lbl, f0, f1) in self.trend("jvm_process_open_fds").items():
            mx = maxes.get(k, (None, None))[1]
            if not mx or f1 / mx <= min_ratio:
                continue
            ev = {"open_fds": f1, "max_fds": mx, "min_ratio": min_ratio}
            if f0 is not None and self.dt > 0 and f1 > f0:
                rate = (f1 - f0) / self.dt
                ev["fds_per_hour"] = rate * 3600
                if f1 + rate * horizon >= mx:
                    self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                             summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)}) and "
                                     f"opened {count(f1 - f0)} more in {duration(self.dt)}: at that pace it runs out "
                                     f"in about {duration((mx - f1) / rate)}.", evidence=ev)
                    continue
            self.add(a, severity="info", target=lbl["target"], subject=self.jvm_subject(lbl),
                     summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)})"
                             + ("; not growing." if self.watching else "; --watch shows whether they grow."),
                     evidence=ev)

    # ------------------------------------------------------------ S4

    def s4_streaming(self) -> None:
        keys = APP_KEY + ("query",)
        stalled, behind, slow = "SparkStreamingQueryStalled", "SparkStreamingFallingBehind", \
            "SparkStreamingBatchSlowerThanTrigger"
        window = self.t.seconds(stalled, "window")
        ratio = self.t.number(behind, "ratio")
        min_input = self.t.number(behind, "min_input_rate")
        trigger = self.t.seconds(slow, "trigger_interval")
        inp = self.trend("spark_streaming_input_rows_per_second", keys)
        dur = self.trend("spark_streaming_batch_duration_seconds", keys)
        proc = self.trend("spark_streaming_processed_rows_per_second", keys)
        for k, (lbl, i0, i1) in inp.items():
            subject, target = self.query_subject(lbl), lbl["target"]
            d = dur.get(k)
            if self.watching and i0 is not None and d is not None and d[1] is not None:
                if i0 == i1 and d[1] == d[2] and i1 > 0:
                    full = self.dt >= window
                    self.add(stalled, severity=None if full else "warning", target=target, subject=subject,
                             summary=f"No batch completed in {duration(self.dt)}: its progress figures are frozen "
                                     f"(input {i1:.1f} rows/s, last batch {d[2]:.1f}s) while input arrives"
                                     + ("." if full else f" (the pack pages after {duration(window)} of this; "
                                        "--watch longer than the trigger interval to be sure)."),
                             evidence={"input_rows_per_second": i1, "batch_duration_seconds": d[2],
                                       "frozen_seconds": self.dt, "window_seconds": window})
                    continue
            p = proc.get(k)
            if self.watching and p is not None and p[1] is not None and i0 is not None:
                avg_in, avg_p = (i0 + i1) / 2, (p[1] + p[2]) / 2
                if avg_p < ratio * avg_in and avg_in > min_input:
                    self.add(behind, target=target, subject=subject,
                             summary=f"It processes {avg_p:.1f} rows/s against {avg_in:.1f} rows/s arriving "
                                     f"({pct(avg_p / avg_in)}, less than {pct(ratio)}): the backlog grows.",
                             evidence={"processed_rows_per_second": avg_p, "input_rows_per_second": avg_in,
                                       "ratio": ratio})
            if d is not None:
                durations = [v for v in (d[1], d[2]) if v is not None]
                if durations and min(durations) > trigger:
                    self.add(slow, severity=None if self.watching else "info", target=target, subject=subject,
                             summary=f"Its batches take {min(durations):.0f}s, longer than the "
                                     f"{duration(trigger)} trigger interval the pack assumes: latency grows.",
                             evidence={"batch_duration_seconds": min(durations), "trigger_interval_seconds": trigger})

    # ------------------------------------------------------------ S5

    def s5_codecache(self) -> None:
        full, pred = "JvmCodeCacheNearlyFull", "JvmCodeCachePredictedFull"
        ratio = self.t.number(full, "ratio")
        min_ratio = self.t.number(pred, "min_ratio")
        horizon = self.t.seconds(pred, "horizon")
        maxes = self.series(self.last, "jvm_codecache_max_bytes", JVM_KEY + ("heap",))
        heaps = []
        for k, (lbl, u0, u1) in self.trend("jvm_codecache_used_bytes", JVM_KEY + ("heap",)).items():
            heaps.append((lbl, u0, u1, maxes.get(k, (None, None))[1], self.jvm_subject(lbl), lbl["heap"]))
        pools = self.t.regex(full, "code_pools")
        keys = APP_KEY + ("pool",)
        pmax = self.series(self.last, "spark_driver_jvm_memory_pool_max_bytes", keys)
        for k, (lbl, u0, u1) in self.trend("spark_driver_jvm_memory_pool_used_bytes", keys,
                                           where=lambda lbl: bool(pools.match(lbl.get("pool", "")))).items():
            heaps.append((lbl, u0, u1, pmax.get(k, (None, None))[1], f"driver of {self.app_subject(lbl)}",
                          lbl["pool"]))
        for lbl, u0, u1, mx, subject, heap in heaps:
            if not mx:
                continue
            ev = {"code_cache_used_bytes": u1, "code_cache_max_bytes": mx, "ratio": ratio}
            if u1 / mx > ratio:
                self.add(full, target=lbl["target"], subject=subject,
                         summary=f"Its JIT code cache heap '{heap}' is {pct(u1 / mx)} full ({size(u1)} of "
                                 f"{size(mx)}, more than {pct(ratio)}): compilation is about to be disabled "
                                 "(or already is).", evidence=ev)
            elif u1 / mx > min_ratio:
                ev["min_ratio"] = min_ratio
                if u0 is not None and self.dt > 0 and u1 > u0:
                    rate = (u1 - u0) / self.dt
                    ev["bytes_per_hour"] = rate * 3600
                    if u1 + rate * horizon >= mx:
                        self.add(pred, target=lbl["target"], subject=subject,
                                 summary=f"Its code cache heap '{heap}' is {pct(u1 / mx)} full and grew "
                                         f"{size(u1 - u0)} in {duration(self.dt)}: full in about "
                                         f"{duration((mx - u1) / rate)}, then the JIT is switched off.", evidence=ev)
                        continue
                self.add(pred, severity="info", target=lbl["target"], subject=subject,
                         summary=f"Its code cache heap '{heap}' is {pct(u1 / mx)} full ({size(u1)} of {size(mx)}).",
                         evidence=ev)

    def s5_jit(self) -> None:
        a = "JvmJitCompilationDisabled"
        full_events = self.series(self.last, "jvm_codecache_full_events_total")
        for k, (lbl, v) in self.series(self.last, "jvm_jit_compilation_enabled").items():
            if v == 0:
                n = full_events.get(k, (None, None))[1]
                self.add(a, target=lbl["target"], subject=self.jvm_subject(lbl),
                         summary="Its JIT compiler is disabled (\"compilation: disabled\"): the code cache filled "
                                 f"up{f' ({count(n)} times)' if n else ''}, it now runs interpreted and stays slow "
                                 "until restarted.",
                         fix=self.t.alert(a).action + " " + SIGNATURES["S5"].fix,
                         evidence={"jit_compilation_enabled": 0, "code_cache_full_events": n})

    def s5_classes(self) -> None:
        a = "JvmLoadedClassesRising"
        if not self.watching or self.dt <= 0:
            return
        min_increase = self.t.number(a, "min_increase")
        trend_window = self.t.seconds(a, "trend_window")
        floor_window = self.t.seconds(a, "floor_window")
        for k, (lbl, c0, c1) in self.trend("jvm_classes_currently_loaded").items():
            if c0 is None or c1 <= c0:
                continue
            pace = (c1 - c0) / self.dt * trend_window
            if pace <= min_increase:
                continue
            up = self.uptime(lbl)
            warm = up is not None and up < floor_window
            serious = not warm
            self.add(a, severity=None if serious else "info", target=lbl["target"], subject=self.jvm_subject(lbl),
                     summary=f"Loaded classes rose from {count(c0)} to {count(c1)} in {duration(self.dt)}: "
                             f"{count(pace)} per {duration(trend_window)} at that pace (the pack warns above "
                             f"{count(min_increase)})" + ("; it started less than "
                                                          f"{duration(floor_window)} ago (warm-up?)." if warm else "."),
                     evidence={"classes_before": c0, "classes": c1, "per_trend_window": pace,
                               "min_increase": min_increase, "uptime_seconds": up})

    def s5_cleaner(self) -> None:
        a = "SparkCleanerSettingsRisky"
        max_interval = self.t.seconds(a, "max_periodic_gc_interval")
        min_uptime = self.t.seconds(a, "min_uptime")
        blocking = self.series(self.last, "spark_cleaner_reference_tracking_blocking", APP_KEY)
        uptime = self.series(self.last, "spark_app_uptime_seconds", APP_KEY)
        for k, (lbl, interval) in self.series(self.last, "spark_cleaner_periodic_gc_interval_seconds", APP_KEY).items():
            b = blocking.get(k, (None, None))[1]
            risky = []
            if interval > max_interval:
                risky.append(f"spark.cleaner.periodicGC.interval is {duration(interval)} (above "
                             f"{duration(max_interval)})")
            if b == 1:
                risky.append("spark.cleaner.referenceTracking.blocking=true")
            if not risky:
                continue
            up = uptime.get(k, (None, None))[1]
            long_running = up is not None and up > min_uptime
            self.add(a, severity=None if long_running else "info", target=lbl["target"],
                     subject=self.app_subject(lbl),
                     summary=f"{' and '.join(risky)[0].upper()}{' and '.join(risky)[1:]}: the settings that let "
                             f"S5's war story's cleaner fall behind. It has run {duration(up or 0)}"
                             + ("." if long_running else f" (the pack warns after {duration(min_uptime)})."),
                     fix=SIGNATURES["S5"].fix,
                     evidence={"periodic_gc_interval_seconds": interval, "reference_tracking_blocking": b,
                               "uptime_seconds": up, "max_periodic_gc_interval_seconds": max_interval})

    def s5_listener(self) -> None:
        dropped, filling = "SparkListenerEventsDropped", "SparkListenerQueueFilling"
        keys = APP_KEY + ("queue",)
        for k, (lbl, d0, d1) in self.trend("spark_listener_dropped_events_total", keys).items():
            if d0 is not None and d1 > d0:
                self.add(dropped, target=lbl["target"], subject=f"{self.app_subject(lbl)}, queue {lbl['queue']}",
                         summary=f"Its listener queue {lbl['queue']} dropped {count(d1 - d0)} events in the last "
                                 f"{duration(self.dt)}: the UI, the cleaner and these figures fall behind.",
                         evidence={"dropped_events": d1 - d0, "dropped_events_total": d1})
            elif d1 > 0:
                self.add(dropped, severity="info", target=lbl["target"],
                         subject=f"{self.app_subject(lbl)}, queue {lbl['queue']}",
                         summary=f"Its listener queue {lbl['queue']} has dropped {count(d1)} events since the "
                                 "application started" + (", none in the last " + duration(self.dt) + "."
                                                          if self.watching else "."),
                         evidence={"dropped_events_total": d1})
        ratio = self.t.number(filling, "ratio")
        caps = self.series(self.last, "spark_listener_queue_capacity", keys)
        for k, (lbl, e0, e1) in self.trend("spark_listener_queue_events", keys).items():
            cap = caps.get(k, (None, None))[1]
            vals = [v for v in (e0, e1) if v is not None]
            if cap and min(vals) / cap > ratio:
                self.add(filling, severity=None if self.watching else "info", target=lbl["target"],
                         subject=f"{self.app_subject(lbl)}, queue {lbl['queue']}",
                         summary=f"Its listener queue {lbl['queue']} holds {count(min(vals))} of {count(cap)} events "
                                 f"({pct(min(vals) / cap)}): events will be dropped.",
                         evidence={"queue_events": min(vals), "queue_capacity": cap, "ratio": ratio})

    def s5_jobs(self) -> None:
        too_long, piling = "SparkJobRunningTooLong", "SparkJobsPilingUp"
        max_age = self.t.seconds(too_long, "max_age")
        max_jobs = self.t.number(piling, "max_jobs")
        for lbl, age in self.series(self.last, "spark_job_oldest_active_age_seconds", APP_KEY).values():
            if age > max_age:
                self.add(too_long, target=lbl["target"], subject=self.app_subject(lbl),
                         summary=f"Its oldest active job has been running for {duration(age)} (more than "
                                 f"{duration(max_age)}): stuck or starved.",
                         evidence={"oldest_job_age_seconds": age, "max_age_seconds": max_age})
        for k, (lbl, j0, j1) in self.trend("spark_jobs_active", APP_KEY).items():
            vals = [v for v in (j0, j1) if v is not None]
            if min(vals) > max_jobs:
                rising = j0 is not None and j1 > j0
                self.add(piling, severity=None if rising else "info", target=lbl["target"],
                         subject=self.app_subject(lbl),
                         summary=f"It has {count(j1)} active jobs (more than {count(max_jobs)})"
                                 + (f", {count(j1 - j0)} more than {duration(self.dt)} ago: jobs pile up."
                                    if rising else "."),
                         evidence={"active_jobs": j1, "max_jobs": max_jobs})
