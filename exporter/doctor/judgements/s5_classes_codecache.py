"""S5, classes and the code cache fill up in a long-running driver: classes,
the code cache and the JIT, the cleaner settings, the listener bus and jobs,
judged with the thresholds of ``exporter/pack/alerts/s5_classes_codecache.py``."""

from __future__ import annotations

from ...pack.alerts.s5_classes_codecache import (
    JVM_CODE_CACHE_NEARLY_FULL,
    JVM_CODE_CACHE_PREDICTED_FULL,
    JVM_JIT_COMPILATION_DISABLED,
    JVM_LOADED_CLASSES_RISING,
    SPARK_CLEANER_SETTINGS_RISKY,
    SPARK_JOB_RUNNING_TOO_LONG,
    SPARK_JOBS_PILING_UP,
    SPARK_LISTENER_EVENTS_DROPPED,
    SPARK_LISTENER_QUEUE_FILLING,
)
from ...pack.signatures import SIGNATURES
from ..findings import APP_KEY, JVM_KEY, Judge, count, duration, judges, pct, size


@judges(JVM_CODE_CACHE_NEARLY_FULL, JVM_CODE_CACHE_PREDICTED_FULL)
def s5_codecache(j: Judge) -> None:
    """The code cache per heap (jvm collector with attach, or the driver's JvmSource pools): full,
    above the prediction's minimum share, and (two readings) its pace."""
    full, pred = JVM_CODE_CACHE_NEARLY_FULL, JVM_CODE_CACHE_PREDICTED_FULL
    ratio = j.t.number(full, "ratio")
    page_ratio, page_horizon = j.t.number(full, "min_ratio"), j.t.seconds(full, "horizon")
    min_ratio = j.t.number(pred, "min_ratio")
    horizon = j.t.seconds(pred, "horizon")
    maxes = j.series(j.last, "jvm_codecache_max_bytes", JVM_KEY + ("heap",))
    heaps = []
    for k, (lbl, u0, u1) in j.trend("jvm_codecache_used_bytes", JVM_KEY + ("heap",)).items():
        heaps.append((lbl, u0, u1, maxes.get(k, (None, None))[1], j.jvm_subject(lbl), lbl["heap"]))
    pools = j.t.regex(full, "code_pools")
    keys = APP_KEY + ("pool",)
    pmax = j.series(j.last, "spark_driver_jvm_memory_pool_max_bytes", keys)
    for k, (lbl, u0, u1) in j.trend("spark_driver_jvm_memory_pool_used_bytes", keys,
                                    where=lambda lbl: bool(pools.match(lbl.get("pool", "")))).items():
        heaps.append((lbl, u0, u1, pmax.get(k, (None, None))[1], f"driver of {j.app_subject(lbl)}",
                      lbl["pool"]))
    for lbl, u0, u1, mx, subject, heap in heaps:
        if not mx:
            continue
        ev = {"code_cache_used_bytes": u1, "code_cache_max_bytes": mx, "ratio": ratio}
        if u1 / mx > ratio:
            j.add(full, target=lbl["target"], labels=lbl, subject=subject,
                  summary=f"Its JIT code cache heap '{heap}' is {pct(u1 / mx)} full ({size(u1)} of "
                          f"{size(mx)}, more than {pct(ratio)}): compilation is about to be disabled "
                          "(or already is).", evidence=ev)
        elif u1 / mx > min_ratio:
            ev["min_ratio"] = min_ratio
            if u0 is not None and j.dt > 0 and u1 > u0:
                rate = (u1 - u0) / j.dt
                ev["bytes_per_hour"] = rate * 3600
                if u1 / mx > page_ratio and u1 + rate * page_horizon >= mx:
                    ev.update(min_ratio=page_ratio, horizon_seconds=page_horizon)
                    j.add(full, target=lbl["target"], labels=lbl, subject=subject,
                          summary=f"Its code cache heap '{heap}' is {pct(u1 / mx)} full and grew "
                                  f"{size(u1 - u0)} in {duration(j.dt)}: full in about "
                                  f"{duration((mx - u1) / rate)}, within {duration(page_horizon)}; the JIT "
                                  "is switched off then.", evidence=ev)
                    continue
                if u1 + rate * horizon >= mx:
                    j.add(pred, target=lbl["target"], labels=lbl, subject=subject,
                          summary=f"Its code cache heap '{heap}' is {pct(u1 / mx)} full and grew "
                                  f"{size(u1 - u0)} in {duration(j.dt)}: full in about "
                                  f"{duration((mx - u1) / rate)}, then the JIT is switched off.", evidence=ev)
                    continue
            j.add(pred, severity="info", target=lbl["target"], labels=lbl, subject=subject,
                  summary=f"Its code cache heap '{heap}' is {pct(u1 / mx)} full ({size(u1)} of {size(mx)}).",
                  evidence=ev)


@judges(JVM_JIT_COMPILATION_DISABLED)
def s5_jit(j: Judge) -> None:
    """A JVM whose JIT compiler switched itself off (the code cache filled up)."""
    a = JVM_JIT_COMPILATION_DISABLED
    full_events = j.series(j.last, "jvm_codecache_full_events_total")
    for k, (lbl, v) in j.series(j.last, "jvm_jit_compilation_enabled").items():
        if v == 0:
            n = full_events.get(k, (None, None))[1]
            j.add(a, target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
                  summary="Its JIT compiler is disabled (\"compilation: disabled\"): the code cache filled "
                          f"up{f' ({count(n)} times)' if n else ''}, it now runs interpreted and stays slow "
                          "until restarted.",
                  fix=a.action + " " + SIGNATURES[a.signature].fix,
                  evidence={"jit_compilation_enabled": 0, "code_cache_full_events": n})


@judges(JVM_LOADED_CLASSES_RISING)
def s5_classes(j: Judge) -> None:
    """(Two readings.) Loaded classes rising faster than the alert's increase per trend window."""
    a = JVM_LOADED_CLASSES_RISING
    if not j.watching or j.dt <= 0:
        return
    min_increase = j.t.number(a, "min_increase")
    trend_window = j.t.seconds(a, "trend_window")
    floor_window = j.t.seconds(a, "floor_window")
    for k, (lbl, c0, c1) in j.trend("jvm_classes_currently_loaded").items():
        if c0 is None or c1 <= c0:
            continue
        pace = (c1 - c0) / j.dt * trend_window
        if pace <= min_increase:
            continue
        up = j.uptime(lbl)
        warm = up is not None and up < floor_window
        serious = not warm
        j.add(a, severity=None if serious else "info", target=lbl["target"], labels=lbl, subject=j.jvm_subject(lbl),
              summary=f"Loaded classes rose from {count(c0)} to {count(c1)} in {duration(j.dt)}: "
                      f"{count(pace)} per {duration(trend_window)} at that pace (the pack warns above "
                      f"{count(min_increase)})" + ("; it started less than "
                                                   f"{duration(floor_window)} ago (warm-up?)." if warm else "."),
              evidence={"classes_before": c0, "classes": c1, "per_trend_window": pace,
                        "min_increase": min_increase, "uptime_seconds": up})


@judges(SPARK_CLEANER_SETTINGS_RISKY)
def s5_cleaner(j: Judge) -> None:
    """An application with the cleaner settings of S5's war story: said (info); with its driver's
    non-heap memory rising between two readings (extrapolated over the alert's trend window, above
    its min_growth), the alert's warning."""
    a = SPARK_CLEANER_SETTINGS_RISKY
    max_interval = j.t.seconds(a, "max_periodic_gc_interval")
    min_growth = j.t.number(a, "min_growth")
    trend_window = j.t.seconds(a, "trend_window")
    floor_window = j.t.seconds(a, "floor_window")
    blocking = j.series(j.last, "spark_cleaner_reference_tracking_blocking", APP_KEY)
    uptime = j.series(j.last, "spark_app_uptime_seconds", APP_KEY)
    nonheap = j.trend("spark_driver_jvm_nonheap_used_bytes", APP_KEY)
    for k, (lbl, interval) in j.series(j.last, "spark_cleaner_periodic_gc_interval_seconds", APP_KEY).items():
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
        ev = {"periodic_gc_interval_seconds": interval, "reference_tracking_blocking": b,
              "uptime_seconds": up, "max_periodic_gc_interval_seconds": max_interval}
        ended = j.app_ended(lbl)
        if ended:
            # an application that has ended (a history server's): what it ran with, nothing to change now
            j.add(a, severity="info", target=lbl["target"], labels=lbl, subject=j.app_subject(lbl),
                  summary="Its cleaner settings were those that let S5's war story's cleaner fall behind, Spark's "
                          f"defaults ({' and '.join(r.replace(' is ', ' was ') for r in risky)}); it has "
                          f"{'completed' if ended == 'completed' else 'stopped'}.",
                  fix="Nothing for this application.", evidence=ev)
            continue
        settings = " and ".join(risky)
        settings = settings[0].upper() + settings[1:]
        _, n0, n1 = nonheap.get(k, (None, None, None))
        growth = None
        if n0 and n1 is not None and j.dt > 0:
            growth = (n1 - n0) / j.dt * trend_window / n0
            ev.update(nonheap_bytes_before=n0, nonheap_bytes=n1, nonheap_growth_per_trend_window=growth,
                      min_growth=min_growth)
        if growth is not None and growth > min_growth:
            warm = up is not None and up < floor_window
            j.add(a, severity="info" if warm else None, target=lbl["target"], labels=lbl, subject=j.app_subject(lbl),
                  summary=f"{settings}, and its driver's non-heap memory (classes, compiled code) rose from "
                          f"{size(n0)} to {size(n1)} in {duration(j.dt)}: {pct(growth)} per "
                          f"{duration(trend_window)} at that pace (the pack warns above {pct(min_growth)}). "
                          "The cleaner may be falling behind as in S5's war story"
                          + (f"; it started less than {duration(floor_window)} ago (warm-up?)." if warm else
                             "; the alert needs the rise to last hours (sparkwatch doctor --prometheus)."),
                  fix=SIGNATURES[a.signature].fix, evidence=ev)
            continue
        seen = (f" Its driver's non-heap memory did not rise that fast in the {duration(j.dt)} between "
                "the readings." if growth is not None else
                " Whether its driver's non-heap memory rises needs a second reading (--watch) or "
                "Prometheus (--prometheus).")
        j.add(a, severity="info", target=lbl["target"], labels=lbl, subject=j.app_subject(lbl),
              summary=f"{settings}: the settings that let S5's war story's cleaner fall behind, Spark's "
                      f"defaults; a problem only when the driver keeps classes and compiled code it should "
                      f"free (its non-heap floor rising for hours).{seen}",
              fix=SIGNATURES[a.signature].fix, evidence=ev)


@judges(SPARK_LISTENER_EVENTS_DROPPED, SPARK_LISTENER_QUEUE_FILLING)
def s5_listener(j: Judge) -> None:
    """Listener queues that dropped events (new ones need two readings) or are nearly full."""
    dropped, filling = SPARK_LISTENER_EVENTS_DROPPED, SPARK_LISTENER_QUEUE_FILLING
    keys = APP_KEY + ("queue",)
    for k, (lbl, d0, d1) in j.trend("spark_listener_dropped_events_total", keys).items():
        if d0 is not None and d1 > d0:
            j.add(dropped, target=lbl["target"], labels=lbl, subject=f"{j.app_subject(lbl)}, queue {lbl['queue']}",
                  summary=f"Its listener queue {lbl['queue']} dropped {count(d1 - d0)} events in the last "
                          f"{duration(j.dt)}: the UI, the cleaner and these figures fall behind.",
                  evidence={"dropped_events": d1 - d0, "dropped_events_total": d1})
        elif d1 > 0:
            j.add(dropped, severity="info", target=lbl["target"], labels=lbl,
                  subject=f"{j.app_subject(lbl)}, queue {lbl['queue']}",
                  summary=f"Its listener queue {lbl['queue']} has dropped {count(d1)} events since the "
                          "application started" + (", none in the last " + duration(j.dt) + "."
                                                   if j.watching else "."),
                  evidence={"dropped_events_total": d1})
    ratio = j.t.number(filling, "ratio")
    caps = j.series(j.last, "spark_listener_queue_capacity", keys)
    for k, (lbl, e0, e1) in j.trend("spark_listener_queue_events", keys).items():
        cap = caps.get(k, (None, None))[1]
        vals = [v for v in (e0, e1) if v is not None]
        if cap and min(vals) / cap > ratio:
            j.add(filling, severity=None if j.watching else "info", target=lbl["target"], labels=lbl,
                  subject=f"{j.app_subject(lbl)}, queue {lbl['queue']}",
                  summary=f"Its listener queue {lbl['queue']} holds {count(min(vals))} of {count(cap)} events "
                          f"({pct(min(vals) / cap)}): events will be dropped.",
                  evidence={"queue_events": min(vals), "queue_capacity": cap, "ratio": ratio})


@judges(SPARK_JOB_RUNNING_TOO_LONG, SPARK_JOBS_PILING_UP)
def s5_jobs(j: Judge) -> None:
    """A job running for longer than the alert's max age; more active jobs than its maximum."""
    too_long, piling = SPARK_JOB_RUNNING_TOO_LONG, SPARK_JOBS_PILING_UP
    max_age = j.t.seconds(too_long, "max_age")
    max_jobs = j.t.number(piling, "max_jobs")
    for lbl, age in j.series(j.last, "spark_job_oldest_active_age_seconds", APP_KEY).values():
        if age > max_age:
            j.add(too_long, target=lbl["target"], labels=lbl, subject=j.app_subject(lbl),
                  summary=f"Its oldest active job has been running for {duration(age)} (more than "
                          f"{duration(max_age)}): stuck or starved.",
                  evidence={"oldest_job_age_seconds": age, "max_age_seconds": max_age})
    for k, (lbl, j0, j1) in j.trend("spark_jobs_active", APP_KEY).items():
        vals = [v for v in (j0, j1) if v is not None]
        if min(vals) > max_jobs:
            rising = j0 is not None and j1 > j0
            j.add(piling, severity=None if rising else "info", target=lbl["target"], labels=lbl,
                  subject=j.app_subject(lbl),
                  summary=f"It has {count(j1)} active jobs (more than {count(max_jobs)})"
                          + (f", {count(j1 - j0)} more than {duration(j.dt)} ago: jobs pile up."
                             if rising else "."),
                  evidence={"active_jobs": j1, "max_jobs": max_jobs})


# ------------------------------------------------------------------ from Prometheus (--prometheus)


@judges(JVM_LOADED_CLASSES_RISING, prometheus=True)
def s5_classes_history(j: Judge) -> None:
    """The floor of a JVM's loaded classes, now and a trend window ago, from Prometheus."""
    for a in j.active(JVM_LOADED_CLASSES_RISING):
        j.add_rising_count(a, "its loaded classes", "classes",
                           "classes are loaded and never unloaded; the code cache fills next.")


@judges(JVM_CODE_CACHE_PREDICTED_FULL, prometheus=True)
def s5_codecache_history(j: Judge) -> None:
    """A code cache heap's use against its size, and where its trend leads, from Prometheus."""
    for a in j.active(JVM_CODE_CACHE_PREDICTED_FULL):
        window, horizon = j.t.seconds(a.alert, "window"), j.t.seconds(a.alert, "horizon")
        used, mx = a.evidence.get("used"), a.evidence.get("max")
        heap = a.labels.get("heap") or "?"
        now = (f"Its code cache heap '{heap}' is {pct(used / mx)} full ({size(used)} of {size(mx)})"
               if used is not None and mx else f"Its code cache heap '{heap}' fills up")
        then = (f"; at the trend of the last {duration(window)} it holds {size(a.value)} in {duration(horizon)}"
                if a.value is not None else f"; at the trend of the last {duration(window)} it is full within "
                                            f"{duration(horizon)}")
        j.add_active(a, summary=now + then + ": once full, the JIT is switched off.",
                     evidence={"code_cache_used_bytes": used, "code_cache_max_bytes": mx,
                               "predicted_code_cache_used_bytes": a.value, "horizon_seconds": horizon})


@judges(SPARK_CLEANER_SETTINGS_RISKY, prometheus=True)
def s5_cleaner_history(j: Judge) -> None:
    """The cleaner settings of S5's war story with the driver's non-heap floor rising, from Prometheus."""
    for a in j.active(SPARK_CLEANER_SETTINGS_RISKY):
        trend, floor_window = j.t.seconds(a.alert, "trend_window"), j.t.seconds(a.alert, "floor_window")
        interval = a.evidence.get("periodic_gc_interval_seconds")
        blocking = a.evidence.get("reference_tracking_blocking")
        floor, before = a.evidence.get("floor"), a.evidence.get("floor_before")
        settings = [f"spark.cleaner.periodicGC.interval={duration(interval)}" if interval is not None else "",
                    "spark.cleaner.referenceTracking.blocking=true" if blocking == 1 else ""]
        settings_text = " and ".join(x for x in settings if x) or "S5's war story's cleaner settings"
        rise = (floor - before) / before if floor is not None and before else None
        grew = (f"rose {pct(rise)} in {duration(trend)}, from {size(before)} to {size(floor)}" if rise is not None
                else f"rose for {duration(trend)}")
        j.add_active(a, summary=f"It runs with {settings_text}, and the floor of its driver's non-heap memory "
                                f"(classes, compiled code; the lowest over {duration(floor_window)}) {grew}: its "
                                "cleaner is falling behind as in S5's war story.",
                     fix=SIGNATURES[a.alert.signature].fix,
                     evidence={"periodic_gc_interval_seconds": interval, "reference_tracking_blocking": blocking,
                               "nonheap_floor_bytes": floor, "nonheap_floor_before_bytes": before,
                               "nonheap_floor_rise": rise, "trend_window_seconds": trend})
