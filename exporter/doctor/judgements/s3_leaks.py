"""S3, a slow leak in a streaming job: heap, GC, threads and file descriptors,
judged with the thresholds of ``exporter/pack/alerts/s3_leaks.py``. The floors
compared hours apart (the leak itself) are Prometheus' to see (``NOT_JUDGED``)."""

from __future__ import annotations

from typing import Dict, List

from ...pack.alerts.s3_leaks import (
    JVM_FILE_DESCRIPTORS_PREDICTED_EXHAUSTED,
    JVM_GC_TIME_HIGH,
    JVM_HEAP_FLOOR_NEARLY_FULL,
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
            j.add(a, target=lbl["target"], subject=j.jvm_subject(lbl),
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
            j.add(a, target=lbl["target"], subject=f"driver of {j.app_subject(lbl)}",
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
            j.add(a, target=lbl["target"], subject=j.jvm_subject(lbl),
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
            j.add(a, target=lbl["target"], subject=f"executor {lbl['executor_id']} of {j.app_subject(lbl)}",
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
            j.add(a, target=lbl["target"], subject=j.jvm_subject(lbl),
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
                j.add(a, target=lbl["target"], subject=j.jvm_subject(lbl),
                      summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)}) and "
                              f"opened {count(f1 - f0)} more in {duration(j.dt)}: at that pace it runs out "
                              f"in about {duration((mx - f1) / rate)}.", evidence=ev)
                continue
        j.add(a, severity="info", target=lbl["target"], subject=j.jvm_subject(lbl),
              summary=f"It uses {count(f1)} of {count(mx)} file descriptors ({pct(f1 / mx)})"
                      + ("; not growing." if j.watching else "; --watch shows whether they grow."),
              evidence=ev)
