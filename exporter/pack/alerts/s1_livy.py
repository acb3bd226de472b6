"""S1, Livy sessions pile up: the alerts on finished Livy sessions that nobody
deletes and that the retention does not remove (S1's war story)."""

from __future__ import annotations

from typing import List

from ..model import DURATION, NUMBER, Alert, Param, Replay, at, saw, series, values, wiggle

#: the states of a finished Livy session
LIVY_TERMINAL = "success|dead|killed|error"


def livy_sessions(state: str, kind: str = "batch") -> str:
    return series("livy_sessions", target="livy", kind=kind, state=state)


def oldest_finished_age(kind: str = "batch") -> str:
    return series("livy_finished_session_oldest_age_seconds", target="livy", kind=kind)


LIVY_FINISHED_SESSIONS_PILING_UP = Alert(
    name="LivyFinishedSessionsPilingUp", signature="S1", severity="warning", problem="livy-sessions",
    component="livy",
    summary="Livy keeps more and more finished sessions; it will run out of memory.",
    description="Livy {{ $labels.target }} on {{ $labels.instance }} holds more than $min_finished finished "
                "{{ $labels.kind }} sessions, $min_growth or more of them added in the last $window: "
                "nobody deletes them and the retention does not remove them.",
    expr=f"""
sum by (job, instance, target, kind) (livy_sessions{{state=~"{LIVY_TERMINAL}"}}) > $min_finished
and
sum by (job, instance, target, kind) (delta(livy_sessions{{state=~"{LIVY_TERMINAL}"}}[$window])) >= $min_growth
""",
    for_="1h",
    params={
        "min_finished": Param(200, NUMBER, "finished (success, dead, killed, error) sessions Livy may hold"),
        "min_growth": Param(50, NUMBER, "finished sessions added over the window that count as piling up"),
        "window": Param("6h", DURATION, "how far back the growth is measured"),
    },
    meaning="Livy keeps a session, with its log, after it finished until a client DELETEs it or the "
            "retention removes it. Terminal sessions that keep growing for hours mean neither happens; "
            "each costs Livy heap (and a ZooKeeper entry in recovery mode, see S2), so the server ends "
            "up out of memory and refuses every job. Running sessions are load, not this problem: "
            "the alert counts only sessions in a terminal state.",
    confirm=[
        "`curl -s http://LIVY:8998/batches?size=0` shows `total`; compare with "
        "`sum by (state) (livy_sessions{target=\"...\"})` on the Livy dashboard: the terminal states "
        "dominate and grow.",
        "`livy_finished_session_oldest_age_seconds` keeps rising past the retention you expect.",
        "Check Livy's `livy.conf`: `livy.server.session.state-retain.sec` (0.4+) or "
        "`livy.server.session.timeout` (0.3).",
    ],
    action="Find the client that does not DELETE finished sessions (the `name`/`owner` of the "
           "finished batches shows it) and make it DELETE them; delete the backlog now with "
           "`curl -X DELETE http://LIVY:8998/batches/<id>` for each finished id.",
    story=Replay(
        "a scheduler submits a batch every minute and never DELETEs it (S1's war story)",
        [(livy_sessions("success"), "0+1x720"), (livy_sessions("dead"), "0x720"), (livy_sessions("running"), "2x720")],
        quiet=["3h"], fires="5h", failure="666h", failure_is="Livy out of memory at the war story's 40,000 sessions",
        labels=[at(target="livy", kind="batch")],
    ),
    healthy=[
        Replay("500 running sessions, finished ones removed by the 10-minute retention",
               [(livy_sessions("running"), "500x720"), (livy_sessions("success"), values(wiggle(40, 5, 720)))],
               quiet=["4h", "8h", "12h"]),
        Replay("load growing: running sessions rise all day, finished ones stay bounded",
               [(livy_sessions("running"), "0+1x720"), (livy_sessions("success"), values(saw(0, 60, 10, 720)))],
               quiet=["6h", "12h"]),
    ],
)

LIVY_FINISHED_SESSIONS_NOT_COLLECTED = Alert(
    name="LivyFinishedSessionsNotCollected", signature="S1", severity="warning", problem="livy-sessions",
    component="livy",
    summary="Livy keeps finished sessions for longer than its retention should allow.",
    description="The oldest finished {{ $labels.kind }} session of Livy {{ $labels.target }} on "
                "{{ $labels.instance }} has been finished for more than $max_age: Livy does not "
                "garbage-collect finished sessions and no client deletes them.",
    expr="max by (job, instance, target, kind) (livy_finished_session_oldest_age_seconds) > $max_age_s",
    for_="15m",
    params={"max_age": Param("1h", DURATION, "how long a finished session may stay (Livy's retention plus margin)")},
    meaning="Livy reports no timestamps; the exporter measures how long it has seen each session in a "
            "terminal state. With a working retention (`livy.server.session.state-retain.sec`, 600 s by "
            "default) the oldest finished session never gets older than the retention plus a minute. "
            "An age that keeps growing is the 24-day timeout of the war story: every finished session "
            "stays, and they accumulate (S1) and get recovered at every restart (S2). After an exporter "
            "restart the age starts from zero again, so the alert can only be late, never early.",
    confirm=[
        "On the Livy dashboard, `livy_finished_session_oldest_age_seconds` rises linearly.",
        "`livy_finished_sessions_older_than_retention` is above zero.",
        "`grep -E 'state-retain|session.timeout' livy.conf`.",
    ],
    action="Lower the retention to minutes (`livy.server.session.state-retain.sec`, or "
           "`livy.server.session.timeout` on 0.3) and restart Livy once the recovery backlog is safe (S2).",
    story=Replay(
        "the 24-day timeout: the first finished session is never removed",
        [(oldest_finished_age(), "0+60x300")],
        quiet=["1h"], fires="1h20m", labels=[at(target="livy", kind="batch")],
    ),
    healthy=[
        Replay("busy Livy with the default 10-minute retention: ages cycle below 11 minutes",
               [(oldest_finished_age(), values(saw(0, 660, 12, 300))), (oldest_finished_age("interactive"), values(saw(0, 600, 11, 300)))],
               quiet=["2h", "5h"]),
    ],
)

ALERTS: List[Alert] = [LIVY_FINISHED_SESSIONS_PILING_UP, LIVY_FINISHED_SESSIONS_NOT_COLLECTED]
