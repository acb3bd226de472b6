"""What is remembered of Spark UIs between scrapes (:class:`EnvironmentCache`):
each application's ``/environment`` answer (Spark properties do not change while
an application runs, and the answer is ~100 KB of class path), and each UI's
last application list, whose applications' requests the next scrape sends
together with the list.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Dict, Optional, Tuple

from .model import AppAttempt, Environment


class EnvironmentCache:
    """What is remembered of Spark UIs between scrapes: ``/environment`` answers by
    (base URL, app id, attempt), reused for ``ttl`` seconds, and each UI's last
    application list (whose applications' requests the next scrape starts
    together with the list). Bounded: expired answers are dropped, and only the
    lists of the :data:`MAX_LISTINGS` most recently scraped UIs are kept."""

    #: UIs whose last application list is remembered
    MAX_LISTINGS = 256

    def __init__(self, ttl: float = 300.0, clock=time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._items: Dict[Tuple[str, str, str], Tuple[float, Environment]] = {}
        self._listings: "OrderedDict[str, list]" = OrderedDict()
        self._lock = threading.Lock()  # the UIs of a cluster target are scraped concurrently

    def get(self, key) -> Optional[Environment]:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or self.ttl <= 0 or self.clock() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def put(self, key, env: Environment) -> None:
        now = self.clock()
        with self._lock:
            self._items[key] = (now, env)
            if len(self._items) > 64:  # UIs that were never retained (Livy sessions that ended)
                for k in [k for k, (t, _) in self._items.items() if self.ttl <= 0 or now - t >= self.ttl]:
                    del self._items[k]

    def listing(self, base: str) -> list:
        """The applications ``base`` listed last time (empty when unknown)."""
        with self._lock:
            return list(self._listings.get(base, ()))

    def remember_listing(self, base: str, apps: list) -> None:
        with self._lock:
            self._listings[base] = list(apps)
            self._listings.move_to_end(base)
            while len(self._listings) > self.MAX_LISTINGS:
                self._listings.popitem(last=False)

    def retain(self, base: str, keys) -> None:
        """Forget the applications of ``base`` that are no longer listed."""
        keep = set(keys)
        with self._lock:
            for k in [k for k in self._items if k[0] == base and k not in keep]:
                del self._items[k]

    def retain_bases(self, bases) -> None:
        """Forget every UI not in ``bases`` (applications a cluster no longer runs)."""
        keep = set(bases)
        with self._lock:
            for k in [k for k in self._items if k[0] not in keep]:
                del self._items[k]
            for b in [b for b in self._listings if b not in keep]:
                del self._listings[b]


def env_key(base: str, att: AppAttempt) -> tuple:
    """An application's key in the :class:`EnvironmentCache`."""
    return (base, att.app_id, att.attempt_id or "")
