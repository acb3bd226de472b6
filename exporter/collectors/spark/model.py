"""What sparkwatch reads of a Spark UI's answers, read type-checked.

Every field is read with :func:`field` (or :func:`number`, :func:`string`,
:func:`timestamp`): a field of the wrong JSON type in one application's
answers makes that application an ``invalid_response`` (skipped,
``partial``), never an exception of another kind; numbers that are not finite
(``1e400``, ``NaN``, a 400-digit integer) are absent. Spark's REST API
(Jackson, NON_ABSENT) omits fields it has no value for; null is read the same
way. What real servers were seen to send, and how each odd shape is read, is
in ``docs/spark-correctness.md``.

The shapes: :class:`AppAttempt` (an entry of ``/applications``),
:class:`Environment` (``/environment``), :class:`DriverMetrics` (the metrics
servlet ``/metrics/json/``); and Spark's own ways of writing times, booleans
and JVM pool names.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from ...collector import TargetError

# --------------------------------------------------------------------------
# Spark's notations

_TIME_SUFFIXES = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_TIME_RE = re.compile(r"(-?[0-9]+)([a-z]+)?")


def time_string_as_seconds(s: str) -> int:
    """Spark's ``JavaUtils.timeStringAsSeconds``: an integer with an optional unit
    suffix (us, ms, s, m, min, h, d), no unit meaning seconds; converted to whole
    seconds the way ``TimeUnit.convert`` does (truncated). ValueError if Spark would
    reject it too."""
    lower = str(s).lower().strip()
    m = _TIME_RE.fullmatch(lower)
    if not m:
        raise ValueError(f"failed to parse time string: {s!r}")
    val = int(m.group(1))
    suffix = m.group(2)
    if suffix is None:
        return val
    if suffix not in _TIME_SUFFIXES:
        raise ValueError(f"invalid suffix {suffix!r} in time string {s!r}")
    f = _TIME_SUFFIXES[suffix]
    if f >= 1:
        return val * int(f)
    per_second = int(round(1 / f))
    q = abs(val) // per_second  # TimeUnit.convert truncates toward zero
    return q if val >= 0 else -q


def spark_bool(s: str) -> bool:
    """Spark's boolean configuration values (Scala ``toBoolean``: true/false, any case)."""
    v = str(s).strip().lower()
    if v == "true":
        return True
    if v == "false":
        return False
    raise ValueError(f"not a boolean: {s!r}")


def normalise_name(name: str) -> str:
    """A JVM memory pool or collector name as a stable label value:
    ``CodeHeap-'non-nmethods'`` -> ``codeheap_non_nmethods``, ``G1-Old-Gen`` ->
    ``g1_old_gen``, ``Code-Cache`` (Java 8) and ``CodeCache`` (Java 9+ with
    ``-XX:-SegmentedCodeCache``) -> ``code_cache``, ``Metaspace`` -> ``metaspace``."""
    n = re.sub(r"[^a-z0-9]+", "_", name.lower().replace("'", "")).strip("_")
    return _NAME_ALIASES.get(n, n)


_NAME_ALIASES = {"codecache": "code_cache"}


def parse_spark_time(s) -> Optional[float]:
    """``2026-11-23T04:58:05.204GMT`` -> Unix seconds; None for anything else
    (not a string, empty, another format)."""
    if not isinstance(s, str) or not s:
        return None
    try:
        t = s[:-3] if s.endswith("GMT") else s
        dt = datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f")
        return dt.replace(tzinfo=timezone.utc).timestamp()
    except (ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------
# Type-checked field access

_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
NUMBER = (int, float)


def finite(v) -> Optional[float]:
    """A JSON number as a finite float; None for anything else: other types,
    booleans, ``NaN``/``Infinity`` (which Python's json accepts), and integers
    too large for a float (``10**400``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def json_type(v) -> str:
    """The JSON type of a decoded value, as its answer's error names it."""
    return "null" if v is None else _JSON_TYPE.get(type(v), type(v).__name__)


def invalid(where: str, what: str) -> TargetError:
    """The error of an answer that is not what Spark sends (``invalid_response``)."""
    return TargetError("invalid_response", f"{where}: {what}")


def field(obj: Dict[str, Any], key: str, types, where: str):
    """``obj[key]`` if it has one of ``types`` (a tuple of Python types; bool is
    never a number), None when absent or null; TargetError(invalid_response)
    for any other type. Numbers come back as finite floats or None."""
    v = obj.get(key)
    if v is None:
        return None
    is_number = isinstance(v, NUMBER) and not isinstance(v, bool)
    if isinstance(v, bool):
        ok = bool in types
    elif is_number:
        ok = int in types or float in types
    else:
        ok = isinstance(v, tuple(t for t in types if t not in (bool, int, float)))
    if not ok:
        names = sorted({_JSON_TYPE.get(t, t.__name__) for t in types})
        raise invalid(where, f"{key} is a JSON {json_type(v)}, expected {' or '.join(names)}")
    return finite(v) if is_number else v


def number(obj: Dict[str, Any], key: str, where: str) -> Optional[float]:
    """A number field (:func:`field`)."""
    return field(obj, key, NUMBER, where)


def string(obj: Dict[str, Any], key: str, where: str) -> Optional[str]:
    """A string field (:func:`field`)."""
    return field(obj, key, (str,), where)


def timestamp(obj: Dict[str, Any], epoch_key: str, text_key: str, where: str) -> Optional[float]:
    """A point in time in Unix seconds, from ``<x>Epoch`` (ms) or else from
    ``<x>`` (a ``...GMT`` string, or epoch ms in the pre-1.4 answers); None
    when unknown (absent, 0, -1, ``""``, unparsable)."""
    ms = number(obj, epoch_key, where) if epoch_key else None
    if ms is not None and ms > 0:
        return ms / 1000.0
    v = field(obj, text_key, (str, int, float), where)
    t = v / 1000.0 if isinstance(v, float) else parse_spark_time(v)
    return t if t is not None and t > 0 else None


def objects(items: list, where: str):
    """``(i, item)`` of a JSON array whose every item must be an object."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"{where}[{i}]", f"a JSON {json_type(item)}, expected object")
        yield i, item


# --------------------------------------------------------------------------
# The answers


class AppAttempt:
    """What sparkwatch reads of one attempt of an entry of ``/applications``:
    attempt ``index`` (Spark lists the latest first; 0 by default), or, in the
    pre-1.4 answer without ``attempts``, the entry itself. Times are Unix
    seconds, None when unknown. TargetError(invalid_response) on a field of the
    wrong type."""

    def __init__(self, app: Dict[str, Any], index: int = 0):
        self.app_id: str = app["id"]
        w = f"application {self.app_id}"
        self.name = string(app, "name", w) or ""
        attempts = field(app, "attempts", (list,), w)
        if attempts is None:  # before Spark 1.4: the fields are on the application
            att = app
        elif not attempts:
            att = {}
        else:
            att = attempts[index]
            if not isinstance(att, dict):
                raise invalid(w, f"attempts[{index}] is a JSON {json_type(att)}, expected object")
            w += f" attempts[{index}]"
        self.attempt_id = string(att, "attemptId", w)
        self.completed = bool(field(att, "completed", (bool,), w))
        self.spark_version = string(att, "appSparkVersion", w) or ""
        self.spark_user = string(att, "sparkUser", w) or ""
        self.start = timestamp(att, "startTimeEpoch", "startTime", w)
        self.end = timestamp(att, "endTimeEpoch", "endTime", w)
        self.last_updated = timestamp(att, "lastUpdatedEpoch", "lastUpdated", w)
        duration = number(att, "duration", w)
        if duration is None and self.start is not None and self.end is not None and self.end >= self.start:
            duration = (self.end - self.start) * 1000.0
        self.duration = duration / 1000.0 if duration is not None else None

    @property
    def attempt_label(self) -> str:
        """The ``attempt_id`` label: Spark's attempt id (YARN: ``1``, ``2``, ...), empty when
        the application has none (a driver outside YARN, a log before Spark 1.4). Whoever
        submits an application may write anything there: an id that is not 1 to 32 letters,
        digits, ``.``, ``_`` or ``-`` is ``invalid``."""
        a = self.attempt_id
        if not a:
            return ""
        return a if _ATTEMPT_ID_RE.fullmatch(a) else "invalid"

    @classmethod
    def all_of(cls, app, i: int, max_attempts: int) -> List["AppAttempt"]:
        """The newest ``max_attempts`` attempts of entry ``i`` (at least the latest); see :meth:`of`."""
        first = cls.of(app, i)
        attempts = app.get("attempts")
        n = min(max_attempts, len(attempts)) if isinstance(attempts, list) else 1
        return [first] + [cls(app, k) for k in range(1, n)]

    @classmethod
    def of(cls, app, i: int) -> "AppAttempt":
        """The latest attempt of entry ``i`` of the list; TargetError(invalid_response)
        when it is not an object with an id."""
        if not isinstance(app, dict):
            raise invalid(f"applications[{i}]", f"a JSON {json_type(app)}, expected object")
        if not string(app, "id", f"applications[{i}]"):
            raise invalid(f"applications[{i}]", "no id")
        return cls(app)

    def stale(self, now: float, stale_after: float, driver_answers: bool) -> bool:
        """Not completed, yet its event log was last written more than
        ``stale_after`` seconds ago. Only a history server's lastUpdated says
        that (the modification time of the event log): a driver's own UI sets
        lastUpdated to the start time and leaves it there while it runs, so an
        attempt whose lastUpdated is its start time, or unknown, or whose
        driver answers the metrics servlet, is never stale."""
        if self.completed or stale_after <= 0 or driver_answers:
            return False
        if self.last_updated is None or self.start is None or abs(self.last_updated - self.start) < 1e-3:
            return False
        return now - self.last_updated > stale_after

    def needs_signs_of_life(self, now: float, stale_after: float, driver_answers: bool) -> bool:
        """Not completed and not :meth:`stale` by its ``lastUpdated``, on a history server
        (``lastUpdated`` is not its start), and started more than ``stale_after`` seconds
        ago: ``lastUpdated`` is the event log file's modification time, which a copy or a
        touch of the file moves too (a log never closed by a driver that died years ago
        looks "running" and recent). Whether anything happened in the application since
        is then judged from its own answers (:func:`.scrape._scrape_app`)."""
        if self.completed or stale_after <= 0 or driver_answers or self.start is None:
            return False
        if self.last_updated is None or abs(self.last_updated - self.start) < 1e-3:
            return False
        return now - self.start > stale_after and not self.stale(now, stale_after, driver_answers)

    def path(self, api: str) -> str:
        """The REST API path of this attempt under ``api`` (``<ui>/api/v1``)."""
        prefix = f"{api}/applications/{_path_segment(self.app_id, 'application id')}"
        if self.attempt_id:
            prefix += "/" + _path_segment(self.attempt_id, f"application {self.app_id} attempt id")
        return prefix


_ATTEMPT_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")


def _path_segment(value: str, what: str) -> str:
    """``value`` quoted for a URL path; an id that is not valid Unicode (a lone
    surrogate from a JSON escape) cannot name anything: that application's answer is invalid."""
    try:
        return quote(value, safe="")
    except UnicodeEncodeError:
        raise invalid(what, "not valid Unicode") from None


_LOCAL_MASTER_RE = re.compile(r"local(\[[^\]]*\])?")
DEFAULT_PERIODIC_GC = "30min"
DEFAULT_BLOCKING = "true"
DEFAULT_TRACKING = "true"
DEFAULT_QUEUE_CAPACITY = 10000
JVM_SOURCE_CLASS = "org.apache.spark.metrics.source.JvmSource"


class Environment:
    """What sparkwatch uses of ``/environment``: the Spark properties and the
    metrics configuration, read with Spark's defaults where a property is unset."""

    def __init__(self, props: Dict[str, str], metrics_props: Dict[str, str]):
        self.props = props
        self.metrics_props = metrics_props

    @classmethod
    def from_json(cls, data: Dict[str, Any], where: str = "environment") -> "Environment":
        """From the ``/environment`` answer; TargetError(invalid_response) when
        it is not an object or a property list is not ``[[key, value], ...]``
        of strings."""
        if not isinstance(data, dict):
            raise invalid(where, f"a JSON {json_type(data)}, expected object")

        def pairs(key):
            out = {}
            for i, kv in enumerate(field(data, key, (list,), where) or []):
                if not (isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)):
                    raise invalid(where, f"{key}[{i}] is not a [key, value] pair of strings")
                out[kv[0]] = kv[1]
            return out

        return cls(pairs("sparkProperties"), pairs("metricsProperties"))

    def periodic_gc_seconds(self) -> Optional[int]:
        """spark.cleaner.periodicGC.interval in seconds; None when Spark would refuse it."""
        try:
            return time_string_as_seconds(self.props.get("spark.cleaner.periodicGC.interval", DEFAULT_PERIODIC_GC))
        except ValueError:
            return None

    def _bool(self, key: str, default: str) -> Optional[bool]:
        try:
            return spark_bool(self.props.get(key, default))
        except ValueError:
            return None

    def blocking(self) -> Optional[bool]:
        """spark.cleaner.referenceTracking.blocking."""
        return self._bool("spark.cleaner.referenceTracking.blocking", DEFAULT_BLOCKING)

    def reference_tracking(self) -> Optional[bool]:
        """spark.cleaner.referenceTracking."""
        return self._bool("spark.cleaner.referenceTracking", DEFAULT_TRACKING)

    def local_mode(self) -> bool:
        """spark.master is ``local``, ``local[4]``, ``local[*, 3]``: the driver runs the tasks
        (``local-cluster[...]`` has executors of its own)."""
        return _LOCAL_MASTER_RE.fullmatch(self.props.get("spark.master", "").strip()) is not None

    def streaming_metrics(self) -> bool:
        """spark.sql.streaming.metricsEnabled."""
        return bool(self._bool("spark.sql.streaming.metricsEnabled", "false"))

    def jvm_source(self) -> bool:
        """The JvmSource configured for the driver (or all instances), by a
        spark.metrics.conf.* property or in the metrics configuration Spark loaded."""
        candidates = [(k[len("spark.metrics.conf."):], v) for k, v in self.props.items()
                      if k.startswith("spark.metrics.conf.")]
        candidates += list(self.metrics_props.items())
        for k, v in candidates:
            parts = k.split(".")
            if (len(parts) == 4 and parts[0] in ("*", "driver") and parts[1] == "source"
                    and parts[3] == "class" and v.strip() == JVM_SOURCE_CLASS):
                return True
        return False

    def queue_capacity(self, queue: str) -> Optional[int]:
        """The capacity of a listener bus queue (its own setting, else the common one)."""
        v = self.props.get(f"spark.scheduler.listenerbus.eventqueue.{queue}.capacity",
                           self.props.get("spark.scheduler.listenerbus.eventqueue.capacity", str(DEFAULT_QUEUE_CAPACITY)))
        try:
            return int(v.strip())
        except ValueError:  # also an integer of more than 4300 digits
            return None


class DriverMetrics:
    """The metrics servlet's answer, split by driver (key prefix before ``.driver.``)."""

    def __init__(self, data: Dict[str, Any]):
        """TargetError(invalid_response) when ``gauges`` or ``counters`` is not
        an object; single entries of another shape, or whose value is not a
        finite number (Dropwizard gauges may hold anything, ``"NaN"`` included),
        are left out."""
        self.by_prefix: Dict[str, Dict[str, float]] = {}
        #: what a reader made of each prefix's keys (the scrape: its samples)
        self.plans: Dict[str, Any] = {}
        for section, key_field in (("gauges", "value"), ("counters", "count")):
            for key, v in (field(data, section, (dict,), "/metrics/json/") or {}).items():
                if not isinstance(v, dict):
                    continue
                i = key.find(".driver.")
                if i <= 0:
                    continue
                val = finite(v.get(key_field))
                if val is None:
                    continue
                self.by_prefix.setdefault(key[:i], {})[key[i + len(".driver."):]] = val

    def prefix_for(self, app_id: str, n_apps: int) -> Optional[str]:
        """The key prefix of application ``app_id`` of ``n_apps`` listed; None when
        the servlet has no keys that are certainly its."""
        if app_id in self.by_prefix:
            return app_id
        # spark.metrics.namespace replaces the app id: only unambiguous on a driver UI
        if n_apps == 1 and len(self.by_prefix) == 1:
            return next(iter(self.by_prefix))
        return None

    def for_app(self, app_id: str, n_apps: int) -> Optional[Dict[str, float]]:
        """The driver keys of application ``app_id`` (see :meth:`prefix_for`)."""
        prefix = self.prefix_for(app_id, n_apps)
        return None if prefix is None else self.by_prefix[prefix]
