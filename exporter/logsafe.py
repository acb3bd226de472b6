"""Logging that nothing a target sends can abuse.

Every record the exporter writes is one line::

    ts=... level=WARNING caller=connectionpool msg='Failed to parse headers ...' suppressed=41 exc='...'

* ``msg`` is the message cut at :data:`MAX_MESSAGE` characters and escaped as a
  Python string literal (line breaks, control characters, escape sequences and
  invisible characters become ``\\n``, ``\\x1b``, ``\\u202e``): a target's bytes
  quoted in a message cannot start a line of their own or drive a terminal.
* An exception is one escaped ``exc=`` field: the traceback (its last
  :data:`MAX_TRACEBACK` characters) for sparkwatch's own records, only the
  exception's type and message (cut and escaped) for other libraries'.
* Records of other libraries (urllib3, requests, kazoo: any code outside this
  package) are rate-limited: the same message (logger, level, format string) at
  most once per :data:`DEFAULT_INTERVAL` seconds; the next one that is logged
  says how many were held back in between (``suppressed=N``). urllib3 logs a
  warning with a target's bytes at every request to a server whose headers do
  not parse.

For a message of sparkwatch's own that may repeat at every scrape (a garbage
file, a bad answer), use :class:`RateLimitedLog`::

    _warn = RateLimitedLog(log, interval=60)
    _warn.warning("perf-data file %s: %s", path, reason)   # once a minute per format string
    _warn.warning("... %s", x, key=("perfdata", kind))     # or per key of your choosing

:class:`RateLimit` is the bookkeeping underneath (per key: admit or hold back,
count what was held back), for code that logs in its own way.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable, List, Optional, Tuple

#: characters of a message written at most (before escaping)
MAX_MESSAGE = 1000
#: characters of a traceback of sparkwatch's own written at most (its end: where it failed)
MAX_TRACEBACK = 4000
#: seconds between two records of the same message of another library
DEFAULT_INTERVAL = 60.0
#: keys remembered at most; beyond, the least recently logged is forgotten
MAX_KEYS = 1024

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def clip(text: str, limit: int = MAX_MESSAGE, keep: str = "head") -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out
    (``keep="tail"`` keeps the end instead of the start)."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep == "tail":
        return f"[{cut} characters left out] ..." + text[-limit:]
    return text[:limit] + f"... [{cut} more characters]"


def escaped(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` as one line of printable characters: cut at ``limit`` characters
    and written as a Python string literal (quotes included)."""
    return repr(clip(str(text), limit))


class RateLimit:
    """Per key: the first event is admitted, then at most one per ``interval``
    seconds; the others are held back and counted. Thread-safe; remembers at
    most ``max_keys`` keys."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        self.interval, self.max_keys, self.clock = interval, max_keys, clock
        self._keys: "OrderedDict[Hashable, List]" = OrderedDict()  # key -> [last admitted at, held back, last held]
        self._lock = threading.Lock()

    def admit(self, key: Hashable, item=None) -> Optional[int]:
        """None when this event is held back (``item`` is kept as the last one held
        back); otherwise the number held back since the last admitted one."""
        now = self.clock()
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self.max_keys:
                    self._keys.popitem(last=False)
                self._keys[key] = [now, 0, None]
                return 0
            if now - state[0] < self.interval:
                state[1] += 1
                state[2] = item
                return None
            held, state[:] = state[1], [now, 0, None]
            self._keys.move_to_end(key)
            return held

    def due(self) -> List[Tuple[Hashable, int, object]]:
        """(key, held back, the last item held back) for every key with events
        held back whose interval has passed; those count as admitted now."""
        now = self.clock()
        out = []
        with self._lock:
            for key, state in self._keys.items():
                if state[1] and now - state[0] >= self.interval:
                    out.append((key, state[1], state[2]))
                    state[:] = [now, 0, None]
        return out


class RateLimitedLog:
    """A logger's messages, each key (by default: level and format string) at most
    once per ``interval`` seconds; a logged record carries how many of its key were
    held back before it (``suppressed=N`` on the line). :meth:`flush`, called now
    and then, logs the last record held back of each key whose interval has passed,
    so that a burst that stops is still counted."""

    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.limit = RateLimit(interval, max_keys, clock)

    def log(self, level: int, msg: str, *args, key: Hashable = None) -> bool:
        """Log unless held back; returns whether it was logged."""
        if not self.logger.isEnabledFor(level):
            return False
        held = self.limit.admit((level, msg) if key is None else key, (level, msg, args))
        if held is None:
            return False
        self._emit(level, msg, args, held)
        return True

    def debug(self, msg: str, *args, key: Hashable = None) -> bool:
        return self.log(logging.DEBUG, msg, *args, key=key)

    def info(self, msg: str, *args, key: Hashable = None) -> bool:
        return self.log(logging.INFO, msg, *args, key=key)

    def warning(self, msg: str, *args, key: Hashable = None) -> bool:
        return self.log(logging.WARNING, msg, *args, key=key)

    def error(self, msg: str, *args, key: Hashable = None) -> bool:
        return self.log(logging.ERROR, msg, *args, key=key)

    def flush(self) -> None:
        for _, held, (level, msg, args) in self.limit.due():
            self._emit(level, msg, args, held - 1)

    def _emit(self, level: int, msg: str, args: tuple, held: int) -> None:
        depth, f = 1, sys._getframe(0)  # the record names the caller outside this module
        while f is not None and f.f_code.co_filename == __file__:
            depth, f = depth + 1, f.f_back
        self.logger.log(level, msg, *args, extra={"suppressed": held} if held else None, stacklevel=depth)


def is_own(record: logging.LogRecord) -> bool:
    """Whether sparkwatch's own code made the record (not urllib3, requests, kazoo, ...)."""
    return os.path.abspath(record.pathname or "").startswith(_PACKAGE_DIR)


class ForeignRateLimit(logging.Filter):
    """Holds back repeats of other libraries' records: per logger, level and format
    string (and exception type), one per ``interval`` seconds."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.limit = RateLimit(interval, MAX_KEYS, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if is_own(record):
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        msg = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if msg == "%s":  # a message passed through (Python's warnings): the message is the key
            msg = clip(record.getMessage(), 200)
        held = self.limit.admit((record.name, record.levelno, msg, exc))
        if held is None:
            return False
        if held:
            record.suppressed = held
        return True


class SafeFormatter(logging.Formatter):
    """One line per record, as described in the module's docstring."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string or argument in someone's call
            message = f"{record.msg!r} % {record.args!r}"
        line = (f"ts={self.formatTime(record)} level={record.levelname} caller={record.module} "
                f"msg={escaped(message)}")
        suppressed = getattr(record, "suppressed", 0)
        if suppressed:
            line += f" suppressed={int(suppressed)}"
        if record.exc_info and record.exc_info[0] is not None:
            if is_own(record):
                text = clip(self.formatException(record.exc_info), MAX_TRACEBACK, keep="tail")
                line += f" exc={repr(text)}"
            else:
                etype, value = record.exc_info[0], record.exc_info[1]
                line += f" exc={escaped(f'{etype.__name__}: {value}')}"
        return line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (as logging's last resort does)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def configure(level: int, stream=None, interval: float = DEFAULT_INTERVAL,
              clock: Callable[[], float] = time.monotonic) -> logging.Handler:
    """The exporter's logging: one handler on the root logger (replacing the one a
    previous call installed), writing :class:`SafeFormatter` lines to ``stream``
    (default: standard error), other libraries' records rate-limited; Python's
    warnings are logged too. Returns the handler."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "sparkwatch", False):
            root.removeHandler(h)
            h.close()
    handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.sparkwatch = True
    handler.setFormatter(SafeFormatter())
    handler.addFilter(ForeignRateLimit(interval, clock))
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler

