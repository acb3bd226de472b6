"""The requests of :class:`sparkwatch.httpserver.Server` that wait for their credential
check (bcrypt, some 0.25 s each), checked one at a time on a thread of their own.

At most ``size`` wait (queued or in the check), ``per_client`` of them from one client
network: an IPv4 address (/32), an IPv6 /64 (what one host or one subscriber gets:
a flood from the many addresses of one /64 counts as one client). Beyond, a request
is refused at once (the server answers ``429``), so a flood from one network leaves
room for the first login of another. A flood from many networks can still fill the
queue (docs/security.md, "TLS and basic authentication").
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import deque
from typing import Any, Callable, Dict, Optional, Tuple

log = logging.getLogger("sparkwatch")

#: prefix length of the IPv6 networks counted as one client
IPV6_CLIENT_PREFIX = 64


def client_network(addr) -> str:
    """What a client address counts against: an IPv4 address itself, the /64 of an
    IPv6 address, the IPv4 address of an IPv4-mapped IPv6 one (a dual-stack listener's
    IPv4 client); anything else as it is."""
    host = addr[0] if isinstance(addr, tuple) else str(addr)
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class CredentialChecks:
    """Credential checks, one at a time on a thread started at the first :meth:`offer`.

    ``verify(header)`` checks one; ``done(item, ok)`` is called on that thread with its
    verdict, or with None for the requests still waiting when :meth:`stop` is called."""

    def __init__(self, verify: Callable[[str], bool], done: Callable[[Any, Optional[bool]], None], size: int,
                 per_client: int, name: str = "sparkwatch-http-auth"):
        self._verify, self._done = verify, done
        self.size, self.per_client, self._name = size, per_client, name
        self._queue: "deque[Tuple[Any, str, str]]" = deque()  # (item, header, client network)
        self._from: Dict[str, int] = {}  # client network -> requests waiting, queued or in the check
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    def waiting(self) -> int:
        """Requests waiting for their check, queued or in it."""
        with self._cond:
            return sum(self._from.values())

    def offer(self, item: Any, header: str, addr) -> Optional[Tuple[int, int, str]]:
        """Queue ``item`` for the check of ``header``; None when queued, else (requests
        waiting, of them from its client's network, that network): refuse it."""
        network = client_network(addr)
        with self._cond:
            waiting, mine = sum(self._from.values()), self._from.get(network, 0)
            if waiting >= self.size or mine >= self.per_client:
                return waiting, mine, network
            self._queue.append((item, header, network))
            self._from[network] = mine + 1
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name=self._name)
                self._thread.start()
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item, header, network = self._queue.popleft()
            try:
                ok = self._verify(header)
            except Exception:
                log.debug("credential check failed", exc_info=True)
                ok = False
            with self._cond:
                n = self._from.pop(network, 1) - 1  # (cleared when stopped)
                if n:
                    self._from[network] = n
                stopped = self._stopping
            self._done(item, None if stopped else ok)

    def stop(self) -> None:
        """Stop the thread; the requests still queued get ``done(item, None)``. It may be
        offered requests again afterwards (a new thread)."""
        with self._cond:
            self._stopping = True
            left = [item for item, _, _ in self._queue]
            self._queue.clear()
            self._from.clear()
            self._cond.notify_all()
            thread = self._thread
        for item in left:
            self._done(item, None)
        if thread is not None:
            thread.join(30)
        with self._cond:
            self._thread, self._stopping = None, False
