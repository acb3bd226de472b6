"""PromQL templates that several alerts share: the labels that identify a JVM or
a Spark application, the rising floor, the predicted exhaustion of a limit, and
the driver's JvmSource pools relabelled like the jvm collector's series.

The templates return plain PromQL with ``$param`` placeholders, like the alert
expressions they are part of (see ``promql.py``).
"""

from __future__ import annotations

from typing import Dict

from .model import Evidence

#: the labels that identify one local JVM (jvm collector series), for by (...) and on (...)
JVM_SERIES_LABELS = "job, instance, target, process, app_id, executor_id, pid"
#: the labels that identify one Spark application (spark collector series; ``attempt_id`` is empty,
#: so absent, outside YARN and history servers, and one attempt per application is read by default)
APP_SERIES_LABELS = "job, instance, target, app_id, app_name, attempt_id"
#: the labels that join one Spark application's series (on (...)): its name may differ between them
APP_JOIN_LABELS = "job, instance, target, app_id, attempt_id"


def floor(metric: str, offset: str = "") -> str:
    """The floor of ``metric``: its minimum over ``$floor_window`` (``offset`` ago, e.g.
    ``$trend_window``)."""
    return f"min_over_time({metric}[$floor_window]{' offset ' + offset if offset else ''})"


def floor_evidence(metric: str, on: str) -> Dict[str, Evidence]:
    """The numbers behind :func:`rising_floor`: the floor now and ``$trend_window`` ago."""
    return {"floor": Evidence(floor(metric), on), "floor_before": Evidence(floor(metric, "$trend_window"), on)}


def rising_floor(metric: str, threshold: str, relative: bool = False) -> str:
    """The floor of ``metric`` (its minimum over ``$floor_window``) rose by more than
    ``threshold`` over ``$trend_window``, steadily: by more than half of it in each
    half of the window (a warm-up that rises once and stays does not count).

    ``relative``: the rises are shares of the floor at the start of the window
    (``threshold`` 0.25 is 25%) instead of absolute amounts.
    """

    now, middle, start = floor(metric), floor(metric, "$trend_window_half"), floor(metric, "$trend_window")

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


def state_change(on: str) -> str:
    """The largest relative change, over ``$trend_window``, of the streaming state rows of
    the queries of an application (identified by the labels ``on``)."""
    return f"""max by ({on}) (
  abs(spark_streaming_state_rows - spark_streaming_state_rows offset $trend_window)
  / clamp_min(spark_streaming_state_rows offset $trend_window, 1)
)"""


def flat_state(on: str) -> str:
    """``and`` the streaming state rows of the same application (joined ``on`` these
    labels) changed by less than ``$max_state_change`` (relative) over ``$trend_window``:
    the condition that rules the state out of a rising heap floor."""
    return f"""
and on ({on})
{state_change(on)}
< $max_state_change
"""


def state_evidence(on: str) -> Dict[str, Evidence]:
    """The numbers behind :func:`flat_state`: the application's state rows now and their change."""
    return {"state_rows": Evidence(f"sum by ({on}) (spark_streaming_state_rows)", on),
            "state_rows_change": Evidence(state_change(on), on)}


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
