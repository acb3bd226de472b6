"""What an answer may hold: every answer's bytes (its body while it is read
and kept, the JSON being decoded, the decoded answer while it is used) are
taken from its target's :class:`MemoryBudget` and the process', or the request
is a ``limit`` error; they are given back when the answer is dropped. A body is
read in chunks against the deadline and capped in size (:func:`read_body`);
JSON is checked for its cost before it is decoded (:func:`json_cost`,
:func:`decode_json`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import weakref
from typing import Any, Optional

import requests

from .collector import Deadline, TargetError

MiB = 1024 * 1024
#: a response body larger than this (decompressed) is refused (``limit``)
MAX_BODY_BYTES = 16 * MiB
#: what the answers of one target (bodies being read or held, JSON being decoded, decoded
#: answers in use) may hold at once: a response that does not fit is that request's ``limit``
MAX_TARGET_BYTES = 48 * MiB
#: ... and of every target of the process together, beyond each target's floor
MAX_HELD_BYTES = 96 * MiB
#: what each target may hold whatever the others hold: a healthy target's small answers
#: never fail because hostile neighbours spent the process' budget
TARGET_FLOOR_BYTES = 1 * MiB
#: resident memory the interpreter needs besides the answers budgeted above, at most, for a
#: scrape of a few dozen targets: request threads' stacks, connections and their buffers,
#: response heads being read (httpwatch.MAX_HEAD_BYTES each), metrics
RSS_OVERHEAD_BYTES = 32 * MiB
#: what decoding JSON costs per value, at most, besides the text of strings and numbers
#: (a float: 24 bytes and its slot; a small dict: ~200 bytes; a key: its str and entries in
#: the object and in the decoder's memo); measured with tracemalloc for every shape in
#: tests/test_core_memory.py
JSON_VALUE_COST = 96
#: a body is read in chunks of this size (each taken from the budget before it is read)
CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# Memory: every answer's bytes are taken from its target's budget and the
# process', and given back when the answer is dropped. Decoding JSON costs far
# more than the body (16 MiB of floats is ~130 MiB of Python objects), so its
# cost is estimated from the body before it is decoded (json_cost).


class MemoryBudget:
    """Bytes that may be held at once: ``limit`` in all; with a ``parent`` (the
    process' budget), what is held beyond ``floor`` is taken from the parent too."""

    _lock = threading.Lock()  # one for every budget: a take is checked against both levels at once

    def __init__(self, limit: int, floor: int = 0, parent: Optional["MemoryBudget"] = None):
        self.limit, self.floor, self.parent = limit, floor, parent
        self.used = 0

    def _beyond_floor(self, used: int) -> int:
        return max(0, used - self.floor)

    def take(self, n: int) -> Optional[str]:
        """Take ``n`` bytes; None when granted, else what refused: "target" or "exporter"."""
        with self._lock:
            used = self.used + n
            if used > self.limit:
                return "target"
            if self.parent is not None:
                more = self._beyond_floor(used) - self._beyond_floor(self.used)
                if self.parent.used + more > self.parent.limit:
                    return "exporter"
                self.parent.used += more
            self.used = used
            return None

    def give(self, n: int) -> None:
        with self._lock:
            used = max(0, self.used - n)
            if self.parent is not None:
                self.parent.used -= self._beyond_floor(self.used) - self._beyond_floor(used)
            self.used = used


#: every target's answers together
PROCESS_BUDGET = MemoryBudget(MAX_HELD_BYTES)


class Hold:
    """Bytes taken from a budget for one answer; given back by :meth:`release` (or when
    the object it is tied to with :meth:`tie` is dropped)."""

    __slots__ = ("budget", "n", "__weakref__")

    def __init__(self, budget: MemoryBudget):
        self.budget, self.n = budget, 0

    def resize(self, n: int, where: str) -> None:
        if n > self.n:
            refused = self.budget.take(n - self.n)
            if refused is not None:
                raise _does_not_fit(where, self.budget, refused)
        elif n < self.n:
            self.budget.give(self.n - n)
        self.n = n

    def release(self) -> None:
        n, self.n = self.n, 0
        if n:
            self.budget.give(n)

    def tie(self, obj) -> None:
        """Release when ``obj`` is garbage (now, if it cannot be watched)."""
        try:
            weakref.finalize(obj, self.release)
        except TypeError:
            self.release()


def _does_not_fit(where: str, budget: MemoryBudget, refused: str) -> TargetError:
    """The ``limit`` error of an answer ``budget`` refused (``refused``: "target" or "exporter")."""
    b = budget if refused == "target" or budget.parent is None else budget.parent
    return TargetError("limit", f"{where}: the answer does not fit in the {refused}'s memory budget "
                                f"({b.limit // MiB} MiB)")


class _JsonList(list):
    __slots__ = ("__weakref__",)


class _JsonDict(dict):
    __slots__ = ("__weakref__",)


def json_cost(body: bytes) -> int:
    """At most what decoding ``body`` takes at its peak, in bytes (besides the body): the
    text it is decoded from (4 bytes per character when it is not ASCII), the text of its
    strings and numbers again (twice, 4 bytes per character, when escapes may make them
    wide: a string with escapes is built, not sliced) and
    :data:`JSON_VALUE_COST` per value (keys, values, objects and arrays, counted from the
    commas, colons and brackets: those inside strings only make it larger)."""
    n = len(body)
    text = n + 64 if body.isascii() else 4 * n + 80
    strings = text
    if b"\\" in body:  # strings with escapes are built, not sliced: twice their size at a moment
        strings = 2 * (4 * n if b"\\u" in body else text)
    values = 1 + n - len(body.translate(None, b",:[{"))  # one pass (four counts take twice as long)
    return 4096 + text + strings + values * JSON_VALUE_COST


#: glibc's M_MMAP_THRESHOLD (malloc.h)
_M_MMAP_THRESHOLD = -3
#: allocations from this size up get mappings of their own, returned to the system when freed
MMAP_THRESHOLD = 1 * MiB
_malloc_tuned = False


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep large allocations (bodies, the arrays and tables of decoded JSON) out of
    glibc's heap. glibc raises its threshold to the largest block freed (up to 32 MiB):
    after one 16 MiB body, bodies come from the heap, whose freed memory stays resident
    and fragmented (two scrapes of a hostile target left the exporter 75 MiB larger, its
    peak 130 MiB above idle against a budget of 48 MiB). A fixed threshold ends that.
    ``MALLOC_MMAP_THRESHOLD_`` in the environment wins; on another C library this does
    nothing. Returns whether it applied. Called once, by the first :class:`~sparkwatch.httpclient.HttpClient`."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    _malloc_tuned = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):  # not glibc
        return False


def decode_json(body: bytes, path: str, content_type: str = "", expect: type = object,
                budget: Optional[MemoryBudget] = None) -> Any:
    """Decode a JSON body: its cost (:func:`json_cost`) is taken from ``budget`` (the
    process' when none is given) before anything is decoded, and the decoded answer
    holds what it holds of it until it is dropped. TargetError: ``limit`` when it does
    not fit, ``invalid_response`` when it is not JSON (of type ``expect``)."""
    where = f"GET {path.split('?', 1)[0]}"
    hold = Hold(budget if budget is not None else PROCESS_BUDGET)
    try:
        hold.resize(len(body), where)  # what json_cost itself takes a moment (and the least it says)
        cost = json_cost(body)
        hold.resize(cost, where)
        try:
            # as json.loads decodes bytes, with the text's lifetime in hand
            text = body.decode(json.detect_encoding(body), "surrogatepass")
            data = json.loads(text)
        except RecursionError:
            raise TargetError("invalid_response", f"{where}: JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            snippet = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
            kind = "HTML" if snippet.lower().startswith(("<!doctype", "<html")) or "html" in content_type else "not JSON"
            raise TargetError("invalid_response", f"{where}: expected JSON, got {kind}: {snippet!r}") from None
        hold.resize(cost - sys.getsizeof(text), where)  # the text is gone
        del text
        if expect is not object and not isinstance(data, expect):
            raise TargetError("invalid_response", f"{where}: expected a JSON {expect.__name__}, got {type(data).__name__}")
        # the answer holds its share until the caller drops it
        if isinstance(data, list):
            data = _JsonList(data)
        elif isinstance(data, dict):
            data = _JsonDict(data)
        hold.tie(data)
        return data
    except BaseException:
        hold.release()
        raise


def read_body(resp: requests.Response, where: str, deadline: Deadline, budget: MemoryBudget, max_body_bytes: int,
              timeout: float) -> None:
    """Read the body into ``resp.content`` (a bytearray: no copy of it is made), its
    memory taken from ``budget`` as it arrives, a chunk ahead (a body that does not
    fit, or is larger than ``max_body_bytes``, is a ``limit``), and given back when
    ``resp`` is dropped; each read waits at most ``timeout`` seconds and what is left
    of the deadline. ``where``: the request, as errors name it.

    A declared ``Content-Length`` holds nothing: a request whose answer declares
    16 MiB and sends a byte a second holds ~136 KiB of the budget (:func:`_held_for`),
    not 16 MiB, so a target cannot spend the process' budget without sending the
    bytes. A declared length that could never fit (larger than ``max_body_bytes`` or
    the target's whole budget) is refused before anything is read."""
    hold = Hold(budget)
    body = bytearray()
    what = f"GET {where}"
    try:
        # the headers are in memory already: what they hold counts while the response is kept
        head = sum(len(k) + len(v) for k, v in resp.headers.items())
        declared = resp.headers.get("Content-Length", "")
        declared = int(declared) if declared.isdigit() and not resp.headers.get("Content-Encoding") else 0
        if declared > max_body_bytes:
            raise TargetError("limit", f"{what}: response larger than {max_body_bytes} bytes")
        if _held_for(head, declared) > budget.limit:  # could never fit, whatever the others hold
            raise _does_not_fit(what, budget, "target")
        while True:
            # taken before the next chunk is read
            hold.resize(_held_for(head, len(body)), what)
            # each read may block at most for what is left of the deadline
            _set_read_timeout(resp, deadline.timeout(timeout))
            try:
                chunk = resp.raw.read1(CHUNK, decode_content=True)
            except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, ...
                if "timed out" in str(e).lower():
                    raise TargetError("timeout", f"{what}: response not complete within the deadline") from None
                raise TargetError("invalid_response", f"{what}: response cut off: {short_error(e)}") from None
            if not chunk:
                break
            if len(body) + len(chunk) > max_body_bytes:
                raise TargetError("limit", f"{what}: response larger than {max_body_bytes} bytes")
            body += chunk
        resp._content = body
        resp._content_consumed = True
        hold.resize(head + len(body) * 9 // 8, what)  # what the response keeps
        hold.tie(resp)
    except BaseException:
        body.clear()  # not kept alive by a traceback
        hold.release()
        raise
    finally:
        resp.close()


def _held_for(head: int, read: int) -> int:
    """What a body of which ``read`` bytes are in may hold while its next chunk is read:
    the head, the chunk, and the bytearray grown by it (with its spare capacity, an eighth)."""
    return head + CHUNK + (read + CHUNK) * 9 // 8


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def short_error(e: Exception) -> str:
    """An exception's text, at most 200 characters of its informative end."""
    s = str(e)
    # requests wraps urllib3 errors in long reprs; keep the informative tail
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in s:
            s = s.split(marker, 1)[1]
    return s.rstrip("'\")").strip()[:200]


def detached(e: TargetError) -> TargetError:
    """``e`` without its traceback and context: an error kept (by a future, until the
    scrape ends) must not keep the frames of its request alive, nor the body they read."""
    e.__context__ = e.__cause__ = None
    return e.with_traceback(None)
