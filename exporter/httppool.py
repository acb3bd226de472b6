"""Requests made ahead of time: the threads that make a target's requests
(:class:`RequestPool`, kept between scrapes), and the one view a scrape has of
its HTTP side (:class:`Prefetch`): every request of the scrape goes through it,
those submitted ahead are answered from the pool, the others are made in the
calling thread. Every request is an :class:`~sparkwatch.httpclient.HttpClient`
request (bounded by the deadline, the target's ``max_concurrency``, its memory
budget and its origin rules); nothing here adds a way around them.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import CancelledError, Future, wait
from typing import Dict, Optional

from .collector import Deadline, TargetError
from .httpbody import detached


class RequestPool:
    """Threads that make a target's requests ahead of time, kept between scrapes
    (starting a thread costs more than a request to a driver on the same host;
    threads per scrape made a scrape 1.2x the raw fetches instead of 1.1x).
    ``workers`` threads named ``thread_name_<i>``, all started at the first
    request (so that their number is flat from the first scrape on, not creeping
    up to its bound as concurrency peaks come), idle between scrapes, ended by
    :meth:`close`. A request submitted after ``close`` is made in the calling
    thread instead (``submit`` returns None)."""

    def __init__(self, workers: int, thread_name: str):
        self.workers = max(1, workers)
        self.thread_name = thread_name
        self._lock = threading.Lock()
        self._queue: Optional[queue.SimpleQueue] = None
        self._closed = False

    def submit(self, fn, *args) -> Optional[Future]:
        """``fn(*args)`` in a thread of the pool; None once the pool is closed."""
        with self._lock:
            if self._closed:
                return None
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                for i in range(self.workers):
                    threading.Thread(target=self._work, args=(self._queue,), name=f"{self.thread_name}_{i}",
                                     daemon=True).start()
            f: Future = Future()
            self._queue.put((f, fn, args))
            return f

    @staticmethod
    def _work(q: "queue.SimpleQueue") -> None:
        while True:
            item = q.get()
            if item is None:
                return
            f, fn, args = item
            item = None
            if f.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - the caller gets it from the future
                    f.set_exception(e)
                else:
                    f.set_result(result)
                result = None
            # nothing of a request stays referenced by an idle thread
            f = fn = args = None

    def close(self) -> None:
        """Cancel what has not started; the threads end once what has started ends."""
        with self._lock:
            self._closed = True
            q, self._queue = self._queue, None
        if q is None:
            return
        while True:  # what has not started is cancelled
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(self.workers):
            q.put(None)


def _params_key(params) -> tuple:
    if not params:
        return ()
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))


class Prefetch:
    """The requests of one scrape through ``client`` (an
    :class:`~sparkwatch.httpclient.HttpClient`, or anything with its ``get`` and
    ``get_json``, safe to call from several threads): :meth:`get` and
    :meth:`get_json` return the answer of the same request submitted ahead
    with :meth:`submit_get` or :meth:`submit_json` (or raise its
    :class:`~sparkwatch.collector.TargetError`) once it is there; any other
    request is made now, in the calling thread. ``pool``: the
    :class:`RequestPool` whose threads make the requests submitted ahead; None:
    nothing is submitted, every request is made when it is asked for.
    ``headers`` go with every request (e.g. the YARN proxy's cookie for one
    application; never with a redirect to another origin). A ``then`` given to
    :meth:`get` (and the same one to :meth:`submit_get`) is applied to the answer
    in the thread that made the request (decoding and reading it while other
    requests are in flight), and its result is what :meth:`get` returns.

    :meth:`close` cancels what has not started and waits for what has (every
    request is bounded by its deadline), so that no request of a scrape
    outlives it."""

    def __init__(self, client, pool: Optional[RequestPool] = None, headers: Optional[Dict[str, str]] = None):
        self.client = client
        self.pool = pool
        self.headers = headers or None
        self._futures: Dict[tuple, Future] = {}
        #: what was submitted and not yet answered (an answer read is not kept here: the
        #: decoded answers of a whole scrape would otherwise live until it ends)
        self._submitted: set = set()

    @property
    def ahead(self) -> bool:
        """Whether requests can be submitted ahead (a pool that is not closed)."""
        return self.pool is not None

    def _get(self, url, deadline, params, ok_statuses, then=None):
        if self.headers:
            resp = self.client.get(url, deadline, params, ok_statuses, headers=self.headers)
        else:
            resp = self.client.get(url, deadline, params, ok_statuses)
        if then is None:
            return resp
        try:
            return then(resp)
        except TargetError as e:
            err = detached(e)
        del resp  # the body is not kept alive by the error
        raise err

    def _get_json(self, url, deadline, params, expect):
        if self.headers:
            return self.client.get_json(url, deadline, params, expect, headers=self.headers)
        return self.client.get_json(url, deadline, params, expect)

    def _submit(self, key: tuple, fn, *args) -> None:
        if self.pool is not None and key not in self._futures:
            f = self.pool.submit(fn, *args)
            if f is not None:
                self._futures[key] = f
                self._submitted.add(f)

    def _answer(self, key: tuple, fn, *args):
        f = self._futures.pop(key, None)
        if f is not None:
            self._submitted.discard(f)
            try:
                return f.result()  # each request ends by the deadline
            except CancelledError:  # the pool was closed (an evicted probe target) before it started
                pass
        return fn(*args)

    def submit_get(self, url: str, deadline: Deadline, params=None, ok_statuses=(200,), then=None) -> None:
        """Start ``get(url, deadline, params, ok_statuses, then)`` in the pool."""
        self._submit(("get", url, _params_key(params), tuple(ok_statuses), then), self._get, url, deadline, params,
                     ok_statuses, then)

    def submit_json(self, url: str, deadline: Deadline, params=None, expect: type = object) -> None:
        """Start ``get_json(url, deadline, params, expect)`` in the pool."""
        self._submit(("json", url, _params_key(params), expect), self._get_json, url, deadline, params, expect)

    def get(self, url: str, deadline: Deadline, params=None, ok_statuses=(200,), then=None):
        """The client's ``get`` (``then(answer)`` with a ``then``): the answer submitted
        ahead, or made now."""
        return self._answer(("get", url, _params_key(params), tuple(ok_statuses), then), self._get, url, deadline,
                            params, ok_statuses, then)

    def get_json(self, url: str, deadline: Deadline, params=None, expect: type = object):
        """The client's ``get_json``: the answer submitted ahead, or made now."""
        return self._answer(("json", url, _params_key(params), expect), self._get_json, url, deadline, params,
                            expect)

    def close(self) -> None:
        """Cancel what has not started and wait for what has."""
        for f in self._futures.values():
            f.cancel()
        self._futures.clear()
        # what had started ends by its deadline: wait for it, so that no request of this
        # scrape is still in flight when the scrape returns
        wait([f for f in self._submitted if not f.cancelled()])
        self._submitted.clear()
