"""S1, Livy sessions pile up: the finished sessions Livy holds, judged with the
thresholds of ``exporter/pack/alerts/s1_livy.py``."""

from __future__ import annotations

from typing import Dict

from ...pack.alerts.s1_livy import LIVY_FINISHED_SESSIONS_NOT_COLLECTED, LIVY_FINISHED_SESSIONS_PILING_UP, LIVY_TERMINAL
from ...pack.signatures import SIGNATURES
from ..findings import Judge, count, duration, judges


@judges(LIVY_FINISHED_SESSIONS_PILING_UP, LIVY_FINISHED_SESSIONS_NOT_COLLECTED)
def s1_finished_sessions(j: Judge) -> None:
    """Finished sessions Livy holds, per target and kind: too many, or kept too long."""
    a1, a2 = LIVY_FINISHED_SESSIONS_PILING_UP, LIVY_FINISHED_SESSIONS_NOT_COLLECTED
    min_finished = j.t.number(a1, "min_finished")
    min_growth = j.t.number(a1, "min_growth")
    window = j.t.seconds(a1, "window")
    max_age = j.t.seconds(a2, "max_age")
    terminal = LIVY_TERMINAL.split("|")
    groups: Dict[tuple, Dict[str, float]] = {}
    first_groups: Dict[tuple, float] = {}
    for reading, store in ((j.last, groups), (j.first if j.watching else None, None)):
        if reading is None:
            continue
        for _, lbl, v in reading.find("livy_sessions"):
            if lbl.get("state") in terminal:
                if store is not None:
                    store.setdefault((lbl["target"], lbl["kind"]), {})[lbl["state"]] = v
                else:
                    k = (lbl["target"], lbl["kind"])
                    first_groups[k] = first_groups.get(k, 0) + v
    ages = {k: v for k, (_, v) in j.series(j.last, "livy_finished_session_oldest_age_seconds",
                                           ("target", "kind")).items()}
    fix = SIGNATURES[a1.signature].fix
    for (target, kind), states in sorted(groups.items()):
        finished = sum(states.values())
        age = ages.get((target, kind))
        ev = {"finished_sessions": finished, **{f"{s}_sessions": n for s, n in states.items() if n},
              "min_finished": min_finished, "oldest_finished_seen_seconds": age}
        growth = None
        if (target, kind) in first_groups and j.dt > 0:
            growth = (finished - first_groups[(target, kind)]) / j.dt * window
            ev["growth_per_window_extrapolated"] = growth
            ev["min_growth"] = min_growth
        if finished > min_finished:
            grow = ""
            if growth is not None and growth > 0:
                grow = (f"; at the pace of the last {duration(j.dt)}, {count(growth)} more per "
                        f"{duration(window)}")
            j.add(a1, target=target, labels={"kind": kind}, subject=f"Livy {kind} sessions",
                  summary=f"Livy holds {count(finished)} finished {kind} sessions (more than "
                          f"{count(min_finished)}); nobody deletes them and the retention does not remove "
                          f"them{grow}. Oldest seen finished: {duration(age or 0)} (since sparkwatch first "
                          "saw it).", fix=fix, evidence=ev)
        elif age is not None and age > max_age:
            j.add(a2, target=target, labels={"kind": kind}, subject=f"Livy {kind} sessions",
                  summary=f"The oldest finished {kind} session has been kept for more than "
                          f"{duration(age)} (the retention should remove it within {duration(max_age)}).",
                  fix=fix, evidence=ev)
