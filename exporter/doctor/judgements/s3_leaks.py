"""S3, a slow leak in a streaming job: heap, GC, threads and file descriptors,
judged with the thresholds of ``exporter/pack/alerts/s3_leaks.py``. The floors
compared hours apart (the leak itself) are Prometheus' to see (``NOT_JUDGED``)."""

from __future__ import annotations

from typing import Dict, List

from ...pack.alerts.s3_leaks import (
    JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED,
    JVM_GC_TIME_HIGH,
    JVM_HEAP_FLOOR_NEARLY_FULL,
    JVM_HEAP_FLOOR_PREDICTED_FULL,
    JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE,
    JVM_THREADS_LEAKING,
    JVM_THREADS_PREDICTED_TO_HIT_LIMIT,
    SPARK_EXECUTOR_GC_TIME_HIGH,
    SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE,
)
from ..findings import APP_KEY, JVM_KEY, Judge, count, duration, judges, key_of, pct, size

#: a share of time (GC) is measured between two readings only over at least this many seconds
#: (of wall clock, or of task time); below, one collection would dominate it: the share since start is used
MIN_RATE_SECONDS = 60.0

_FLOOR = ("compares the floor of the heap (its lowest use over the floor window) hours apart with the streaming "
          "state rows; readings minutes apart see collections come and go, not the floor rise")
NOT_JUDGED = {
    SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE: _FLOOR,
    JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE: _FLOOR,
    JVM_HEAP_FLOOR_PREDICTED_FULL: _FLOOR,
    JVM_THREADS_LEAKING: "compares the floor of the live threads hours apart; readings minutes apart see pools "
                         "grow and shrink with load, not a leak (the trend towards the limit is judged)",
}


@judges(JVM_HEAP_FLOOR_NEARLY_FULL)
def s3_heap_floor(j: Judge) -> None:
    """An old generation that stays near its maximum: the lower of the readings, or the driver's pool after GC."""
    a = JVM_HEAP_FLOOR_NEARLY_FULL
    ratio = j.t.number(a, "ratio")
    old = j.t.regex(a, "old_space")
    maxes = j.series(j.last, "jvm_memory_space_max_bytes", JVM_KEY + ("space",))
    for k, (lbl, _, _) in j.trend("jvm_memory_space_used_bytes", JVM_KEY + ("space",),
                                  where=lambda lbl: bool(old.match(lbl.get("space", "")))).items():
        used = [v for v in j.values_of("jvm_memory_space_used_bytes", JVM_KEY + ("space",), k)]
        mx = maxes.get(k, (None, None))[1]
        if mx and used and min(used) / mx > ratio:
            floor = min(used)
            j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                  summary=f"Its old generation ({lbl['space']}) stays at {pct(floor / mx)} of its maximum "
                          f"({size(floor)} of {size(mx)}): collections free almost nothing; expect \"GC "
                          "overhead limit exceeded\" or \"Java heap space\".",
                  evidence={"old_used_bytes": floor, "old_max_bytes": mx, "ratio": ratio})
    pool = j.t.regex(a, "old_pool")
    keys = APP_KEY + ("pool",)
    pmax = j.series(j.last, "spark_driver_jvm_memory_pool_max_bytes", keys)
    after = j.series(j.last, "spark_driver_jvm_memory_pool_used_after_gc_bytes", keys)
    for k, (lbl, used) in j.series(j.last, "spark_driver_jvm_memory_pool_used_bytes", keys,
                                   where=lambda lbl: bool(pool.match(lbl.get("pool", "")))).items():
        mx = pmax.get(k, (None, None))[1]
        floor = after[k][1] if k in after else min(j.values_of("spark_driver_jvm_memory_pool_used_bytes",
                                                               keys, k) or [used])
        if mx and floor / mx > ratio:
            j.add(a, target=lbl["target"], labels=lbl, subject=f"driver of {j.app_subject(lbl)}",
                  summary=f"The driver's old generation ({lbl['pool']}) stays at {pct(floor / mx)} of its "
                          f"maximum after GC ({size(floor)} of {size(mx)}): out of memory soon.",
                  evidence={"old_used_bytes": floor, "old_max_bytes": mx, "ratio": ratio})


@judges(JVM_GC_TIME_HIGH)
def s3_gc(j: Judge) -> None:
    """A JVM's share of time in GC: between the readings, or since it started."""
    a = JVM_GC_TIME_HIGH
    ratio = j.t.number(a, "ratio")
    sums: Dict[tuple, List[float]] = {}
    labels = {}
    for i, r in enumerate(j.readings):
        for _, lbl, v in r.find("jvm_gc_seconds_total"):
            k = key_of(lbl, JVM_KEY)
            labels[k] = lbl
            sums.setdefault(k, [0.0] * len(j.readings))[i] += v
    for k, vals in sums.items():
        lbl = labels[k]
        if j.dt >= MIN_RATE_SECONDS:
            share, over = (vals[-1] - vals[0]) / j.dt, f"the last {duration(j.dt)}"
        else:
            up = j.uptime(lbl)
            if not up or up <= 0:
                continue
            share, over = vals[-1] / up, f"its {duration(up)} of uptime"
        if share > ratio:
            j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                  summary=f"It spent {pct(share)} of {over} collecting garbage (more than {pct(ratio)}).",
                  evidence={"gc_share": share, "ratio": ratio, "gc_seconds_total": vals[-1]})


@judges(SPARK_EXECUTOR_GC_TIME_HIGH)
def s3_executor_gc(j: Judge) -> None:
    """An executor's share of its task time in GC: between the readings, or since it started."""
    a = SPARK_EXECUTOR_GC_TIME_HIGH
    ratio = j.t.number(a, "ratio")
    keys = APP_KEY + ("executor_id",)
    gc = j.trend("spark_executor_gc_seconds_total", keys)
    run = j.trend("spark_executor_run_seconds_total", keys)
    for k, (lbl, g0, g1) in gc.items():
        if k not in run:
            continue
        _, r0, r1 = run[k]
        if g0 is not None and r0 is not None and r1 - r0 >= MIN_RATE_SECONDS:
            share, over = (g1 - g0) / (r1 - r0), f"its task time in the last {duration(j.dt)}"
        elif r1 > 0:
            share, over = g1 / r1, "its task time since it started"
        else:
            continue
        if share > ratio:
            j.add(a, target=lbl["target"], labels=lbl, subject=f"executor {lbl['executor_id']} of {j.app_subject(lbl)}",
                  summary=f"It spent {pct(share)} of {over} in garbage collection (more than {pct(ratio)}).",
                  evidence={"gc_share": share, "ratio": ratio, "gc_seconds": g1, "run_seconds": r1})


@judges(JVM_THREADS_PREDICTED_TO_HIT_LIMIT)
def s3_threads_trend(j: Judge) -> None:
    """(Two readings.) A thread headroom falling fast enough to reach 0 within the alert's horizon."""
    a = JVM_THREADS_PREDICTED_TO_HIT_LIMIT
    if not j.watching or j.dt <= 0:
        return
    horizon = j.t.seconds(a, "horizon")
    for k, (lbl, h0, h1) in j.trend("jvm_process_thread_headroom").items():
        if h0 is None or h1 >= h0:
            continue
        rate = (h0 - h1) / j.dt
        if h1 - rate * horizon < 0:
            j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                  summary=f"Its thread headroom fell from {count(h0)} to {count(h1)} in {duration(j.dt)}: "
                          f"at that pace no thread can start in about {duration(h1 / rate)} (the pack warns "
                          f"within {duration(horizon)}).",
                  evidence={"thread_headroom_before": h0, "thread_headroom": h1,
                            "threads_per_hour": rate * 3600, "horizon_seconds": horizon})


@judges(JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED)
def s3_fds(j: Judge) -> None:
    """Open file descriptors above the alert's share of the limit, and (two readings) their pace."""
    a = JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED
    min_ratio = j.t.number(a, "min_ratio")
    horizon = j.t.seconds(a, "horizon")
    maxes = j.series(j.last, "jvm_process_max_fds")
    for k, (lbl, f0, f1) in j.trend("jvm_process_open_fds").items():
        mx = maxes.get(k, (None, None))[1]
        if not mx or f1 / mx <= min_ratio:
            continue
        ev = {"open_fds": f1, "max_fds": mx, "min_ratio": min_ratio}
        if f0 is not None and j.dt > 0 and f1 > f0:
            rate = (f1 - f0) / j.dt
            ev["fds_per_hour"] = rate * 3600
            if f1 + rate * horizon >= mx:
                j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                      summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)}) and "
                              f"opened {count(f1 - f0)} more in {duration(j.dt)}: at that pace it runs out "
                              f"in about {duration((mx - f1) / rate)}.", evidence=ev)
                continue
        j.add(a, severity="info", target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
              summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)})"
                      + ("; not growing." if j.watching else "; --watch shows whether they grow."),
              evidence=ev)


# ------------------------------------------------------------------ from Prometheus (--prometheus)


@judges(SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE, JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE, prometheus=True)
def s3_heap_floor_history(j: Judge) -> None:
    """A heap floor that rose for hours while the streaming state rows stayed flat: the floor now
    and a trend window ago, the state rows' change, from Prometheus."""
    for a in j.active(SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE, JVM_HEAP_FLOOR_RISING_WITH_FLAT_STATE):
        t = j.t
        trend, floor_window = t.seconds(a.alert, "trend_window"), t.seconds(a.alert, "floor_window")
        min_growth = t.number(a.alert, "min_growth")
        floor, before = a.evidence.get("floor"), a.evidence.get("floor_before")
        rows, change = a.evidence.get("state_rows"), a.evidence.get("state_rows_change")
        what = "the driver's heap" if a.alert is SPARK_HEAP_FLOOR_RISING_WITH_FLAT_STATE else "its old generation"
        rise = (floor - before) / before if floor is not None and before else None
        if rise is not None:
            text = (f"The floor of {what} (its lowest use over {duration(floor_window)}) rose {pct(rise)} in "
                    f"{duration(trend)}, from {size(before)} to {size(floor)}")
        else:
            text = f"The floor of {what} rose by more than {pct(min_growth)} in {duration(trend)}"
        state = f"changed by {pct(change)}" if change is not None else "stayed flat"
        text += (f", while the streaming state rows of {a.labels.get('app_id') or 'its application'} {state}"
                 + (f" ({count(rows)} rows)" if rows is not None else "")
                 + ": memory that no collection frees and the state does not explain, a leak.")
        j.add_active(a, summary=text, evidence={
            "heap_floor_bytes": floor, "heap_floor_before_bytes": before, "heap_floor_rise": rise,
            "state_rows": rows, "state_rows_change": change, "min_growth": min_growth,
            "trend_window_seconds": trend})


@judges(JVM_HEAP_FLOOR_PREDICTED_FULL, prometheus=True)
def s3_heap_floor_predicted_history(j: Judge) -> None:
    """A heap floor that rises fast enough to reach the maximum within the horizon: the floor now and a
    trend window ago, the maximum and the extrapolation, from Prometheus."""
    for a in j.active(JVM_HEAP_FLOOR_PREDICTED_FULL):
        t = j.t
        trend, horizon = t.seconds(a.alert, "trend_window"), t.seconds(a.alert, "horizon")
        floor_window = t.seconds(a.alert, "floor_window")
        floor, before, mx = a.evidence.get("floor"), a.evidence.get("floor_before"), a.evidence.get("max")
        left = None
        if floor is not None and before is not None and mx and floor > before:
            left = (mx - floor) / ((floor - before) / trend)
            text = (f"The floor of its old generation (its lowest use over {duration(floor_window)}) rose from "
                    f"{size(before)} to {size(floor)} in {duration(trend)}; at that pace it reaches the "
                    f"maximum of {size(mx)} in {duration(max(left, 0))}")
        else:
            text = (f"The floor of its old generation rises fast enough to reach its maximum within "
                    f"{duration(horizon)}")
        j.add_active(a, summary=text + ": the JVM will spend its time collecting, then fail with "
                     "\"Java heap space\".", evidence={
                         "heap_floor_bytes": floor, "heap_floor_before_bytes": before, "heap_max_bytes": mx,
                         "seconds_to_max": left, "trend_window_seconds": trend, "horizon_seconds": horizon})


@judges(JVM_THREADS_LEAKING, prometheus=True)
def s3_threads_leaking_history(j: Judge) -> None:
    """The floor of a JVM's live threads, now and a trend window ago, from Prometheus."""
    for a in j.active(JVM_THREADS_LEAKING):
        j.add_rising_count(a, "its live threads", "threads", "threads are started and never stopped.")


@judges(JVM_THREADS_PREDICTED_TO_HIT_LIMIT, JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED, prometheus=True)
def s3_predicted_history(j: Judge) -> None:
    """Threads and file descriptors: the use against the limit now and the prediction, from Prometheus."""
    for a in j.active(JVM_THREADS_PREDICTED_TO_HIT_LIMIT, JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED):
        window, horizon = j.t.seconds(a.alert, "window"), j.t.seconds(a.alert, "horizon")
        pace = f"at the trend of the last {duration(window)}"
        if a.alert is JVM_THREADS_PREDICTED_TO_HIT_LIMIT:
            room, limit = a.evidence.get("thread_headroom"), a.evidence.get("thread_limit")
            now = (f"{count(room)} more threads can start before its limit"
                   + (f" of {count(limit)}" if limit is not None else "") if room is not None else
                   "Its thread headroom shrinks")
            then = (f"; {pace} the headroom is {count(a.value)} in {duration(horizon)}" if a.value is not None
                    else f"; {pace} it is gone within {duration(horizon)}")
            j.add_active(a, summary=now + then + ": \"unable to create new native thread\" follows.",
                         evidence={"thread_headroom": room, "thread_limit": limit,
                                   "predicted_thread_headroom": a.value, "horizon_seconds": horizon})
        else:
            used, limit = a.evidence.get("open_fds"), a.evidence.get("max_fds")
            now = (f"It uses {count(used)} of {count(limit)} file descriptors" if used is not None and limit
                   else "Its file descriptors grow")
            then = (f"; {pace} it would use {count(a.value)} in {duration(horizon)}" if a.value is not None
                    else f"; {pace} they run out within {duration(horizon)}")
            j.add_active(a, summary=now + then + ": \"Too many open files\" follows.",
                         evidence={"open_fds": used, "max_fds": limit, "predicted_open_fds": a.value,
                                   "horizon_seconds": horizon})
