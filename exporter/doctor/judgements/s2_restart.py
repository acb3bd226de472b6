"""S2, a Livy restart recovers tens of thousands of sessions and runs out of
threads: judged with the thresholds of ``exporter/pack/alerts/s2_restart.py``."""

from __future__ import annotations

from typing import Dict

from ...pack.alerts.s2_restart import (
    JVM_THREADS_NEAR_LIMIT,
    LIVY_RESTART_RISK_RISING,
    LIVY_RESTART_WOULD_EXHAUST_THREADS,
)
from ..findings import DOCS_LIVY, JVM_KEY, SETUP, Judge, count, duration, judges, key_of, pct
from ..reading import Reading


@judges(LIVY_RESTART_WOULD_EXHAUST_THREADS, LIVY_RESTART_RISK_RISING)
def s2_restart(j: Judge) -> None:
    """The sessions a Livy restart would recover against the Livy JVM's thread headroom, now and
    (with two readings) at the store's pace; a store whose Livy JVM is not named or not watched."""
    a, ar = LIVY_RESTART_WOULD_EXHAUST_THREADS, LIVY_RESTART_RISK_RISING
    ratio = j.t.number(a, "ratio")
    livy = j.t.regex(a, "livy_process")
    join = [x.strip() for x in j.t.text(a, "join").split(",") if x.strip()]
    horizon = j.t.seconds(ar, "horizon")
    ratio_r = j.t.number(ar, "ratio")

    def stored(reading: Reading):
        out: Dict[tuple, Dict[str, object]] = {}
        for _, lbl, v in reading.find("livy_recovery_sessions"):
            g = out.setdefault(key_of(lbl, join), {"sessions": 0.0, "targets": set(), "kinds": {}})
            g["sessions"] += v
            g["targets"].add(lbl["target"])
            g["kinds"][lbl["kind"]] = g["kinds"].get(lbl["kind"], 0) + v
        return out

    now = stored(j.last)
    before = stored(j.first) if j.watching else {}
    headroom = j.series(j.last, "jvm_process_thread_headroom",
                        where=lambda lbl: bool(livy.match(lbl.get("process", ""))))
    limits = j.series(j.last, "jvm_process_thread_limit")
    users = j.series(j.last, "jvm_process_user_threads")
    for jv, g in sorted(now.items()):
        sessions = g["sessions"]
        target = ", ".join(sorted(g["targets"]))
        label = dict(zip(join, jv))
        if not any(jv):
            if sessions > 0:
                j.add(None, signature=SETUP, severity="info", target=target, subject="Livy recovery store",
                      summary=f"The store holds {count(sessions)} sessions, but the target does not name the "
                              "Livy JVM (process), so they cannot be weighed against its thread limit.",
                      fix="Set livy_state_store.process (zookeeper) or process (livy) to the name of a jvm "
                          "entry that matches the Livy server, e.g. {name: livy, match: LivyServer}.",
                      runbook=DOCS_LIVY, evidence={"recovery_sessions": sessions})
            continue
        cands = [(lbl, v) for (lbl, v) in headroom.values() if all(lbl.get(k) == label[k] for k in join)]
        if not cands:
            if sessions > 0:
                j.add(None, signature=SETUP, severity="warning", target=target,
                      subject=f"Livy process {label.get('process', jv[0])}",
                      summary=f"A Livy restart would recover {count(sessions)} sessions, but no watched JVM "
                              f"matching {j.t.text(a, 'livy_process')} has {label}: its thread headroom "
                              "is unknown, so whether a restart survives cannot be judged.",
                      fix="Add a jvm entry for the Livy server, named as the store's process: "
                          "{name: livy, match: org.apache.livy.server.LivyServer}, on the Livy host.",
                      runbook=DOCS_LIVY, evidence={"recovery_sessions": sessions})
            continue
        hlbl, room = min(cands, key=lambda c: c[1])
        k = key_of(hlbl, JVM_KEY)
        limit = limits.get(k, (None, None))[1]
        ev = {"recovery_sessions": sessions, **{f"recovery_sessions_{kd}": n for kd, n in g["kinds"].items()},
              "thread_headroom": room, "thread_limit": limit,
              "threads_in_use": (limit - room) if limit is not None else None,
              "user_threads": users.get(k, (None, None))[1], "ratio": ratio}
        subject = f"Livy {j.jvm_subject(hlbl)}"
        if sessions > ratio * room:
            j.add(a, target=target, labels=label, subject=subject,
                  summary=f"A restart of Livy would start {count(sessions)} threads, the limit leaves "
                          f"{count(room)} (limit {count(limit) if limit is not None else '?'}): it would die "
                          "with \"unable to create new native thread\". Do not restart Livy before the "
                          "recovery store is cleaned.",
                  evidence=ev)
        elif jv in before and j.dt > 0 and sessions > before[jv]["sessions"]:
            rate = (sessions - before[jv]["sessions"]) / j.dt
            predicted = sessions + rate * horizon
            ev.update(growth_per_hour=rate * 3600, predicted_sessions=predicted)
            if predicted > ratio_r * room:
                left = (ratio_r * room - sessions) / rate
                j.add(ar, target=target, labels=label, subject=subject,
                      summary=f"Livy's recovery store grows by {count(rate * 3600)} sessions an hour "
                              f"({count(sessions)} now; the thread headroom is {count(room)}): a restart "
                              f"after about {duration(left)} from now would fail.", evidence=ev)


@judges(JVM_THREADS_NEAR_LIMIT)
def s2_threads_near_limit(j: Judge) -> None:
    """A JVM with less than the alert's share of its thread limit left."""
    a = JVM_THREADS_NEAR_LIMIT
    r = j.t.number(a, "min_headroom_ratio")
    limits = j.series(j.last, "jvm_process_thread_limit")
    for k, (lbl, room) in j.series(j.last, "jvm_process_thread_headroom").items():
        limit = limits.get(k, (None, None))[1]
        if limit is not None and room < r * limit:
            j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                  summary=f"Only {count(room)} more threads can start before the thread limit of "
                          f"{count(limit)} (less than {pct(r)} of it free): the next ones fail with "
                          "\"unable to create new native thread\".",
                  evidence={"thread_headroom": room, "thread_limit": limit, "min_headroom_ratio": r})
