"""PromQL templates that several alerts share: the labels that identify a JVM or
a Spark application, the rising floor, the predicted exhaustion of a limit, and
the driver's JvmSource pools relabelled like the jvm collector's series.

The templates return plain PromQL with ``$param`` placeholders, like the alert
expressions they are part of (see ``promql.py``).
"""

from __future__ import annotations

#: the labels that identify one local JVM (jvm collector series), for by (...) and on (...)
JVM_SERIES_LABELS = "job, instance, target, process, app_id, executor_id, pid"
#: the labels that identify one Spark application (spark collector series)
APP_SERIES_LABELS = "job, instance, target, app_id, app_name"


def rising_floor(metric: str, threshold: str, relative: bool = False) -> str:
    """The floor of ``metric`` (its minimum over ``$floor_window``) rose by more than
    ``threshold`` over ``$trend_window``, steadily: by more than half of it in each
    half of the window (a warm-up that rises once and stays does not count).

    ``relative``: the rises are shares of the floor at the start of the window
    (``threshold`` 0.25 is 25%) instead of absolute amounts.
    """

    def floor(offset: str = "") -> str:
        return f"min_over_time({metric}[$floor_window]{offset})"

    now, middle, start = floor(), floor(" offset $trend_window_half"), floor(" offset $trend_window")

    def rise(later: str, earlier: str) -> str:
        if relative:
            return f"(\n  {later}\n  - {earlier}\n)\n/ {start}"
        return f"{later}\n- {earlier}"

    return f"{rise(now, middle)}\n> {threshold} / 2\nand\n{rise(middle, start)}\n> {threshold} / 2"


def collected_in_every_floor_window(counter: str, on: str) -> str:
    """``and on (on)`` the collections counted by ``counter`` happened in each of the
    three floor windows :func:`rising_floor` compares (now, ``$trend_window_half`` and
    ``$trend_window`` ago): only then is the minimum of a window what survived a
    collection. An old generation that no collection has reclaimed yet (G1 below its
    initiating occupancy, for hours on an executor that promotes slowly) only fills
    with garbage, and its minimum rises without a leak."""
    clauses = []
    for offset in ("", " offset $trend_window_half", " offset $trend_window"):
        clauses.append(f"and on ({on})\nincrease({counter}[$floor_window]{offset}) > 0")
    return "\n" + "\n".join(clauses)


def flat_state(on: str) -> str:
    """``and`` the streaming state rows of the same application (joined ``on`` these
    labels) changed by less than ``$max_state_change`` (relative) over ``$trend_window``:
    the condition that rules the state out of a rising heap floor."""
    return f"""
and on ({on})
max by ({on}) (
  abs(spark_streaming_state_rows - spark_streaming_state_rows offset $trend_window)
  / clamp_min(spark_streaming_state_rows offset $trend_window, 1)
)
< $max_state_change
"""


def predicted(series: str) -> str:
    """``series`` extrapolated ``$horizon`` ahead from its linear trend over ``$window``
    (the alert's ``window`` and ``horizon`` duration parameters)."""
    return f"predict_linear({series}[$window], $horizon_s)"


def predicted_exhaustion(used: str, limit: str, reaches: str = ">", line_break: bool = False) -> str:
    """``used``, extrapolated (``predicted``), reaches ``limit`` within ``$horizon``.

    ``reaches`` is the comparison (``>`` or ``>=``); ``line_break`` puts it on a
    line of its own (layout only)."""
    sep = "\n" if line_break else " "
    return f"{predicted(used)}{sep}{reaches} {limit}"


def driver_pools_as_jvm_series(expr: str, pool_label: str) -> str:
    """``expr`` over the driver's JvmSource pool series (label ``pool``), relabelled
    like the jvm collector's series: the pool name also as ``pool_label`` (``space``,
    ``heap``) and ``process="driver"``, so one alert covers both."""
    inner = "\n".join(f"  {line}" for line in expr.strip().splitlines())
    return f'label_replace(label_replace(\n{inner},\n"{pool_label}", "$1", "pool", "(.*)"), "process", "driver", "", "")'
