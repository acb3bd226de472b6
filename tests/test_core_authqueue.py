"""The credential-check queue of the exporter's HTTP server counts an IPv6 client by its
/64: one host or subscriber holds a whole /64, and eight of its addresses would
otherwise fill the queue a client whose credentials are not remembered yet needs.

The tests may use loopback addresses only, so the connections from IPv6 networks are
socket pairs handed to the server's accept path with the address a client would have."""

from __future__ import annotations

import socket
import threading
import time

from sparkwatch import authqueue, httpserver
from tests.test_core_server import _answer, _Gate, _SlowGate


def test_client_networks():
    net = authqueue.client_network
    assert net(("192.0.2.7", 40000)) == "192.0.2.7"
    assert net(("192.0.2.8", 40000)) == "192.0.2.8"  # IPv4: each address is one client
    assert net(("2001:db8:1:2::1", 40000, 0, 0)) == net(("2001:db8:1:2:ffff:ffff:ffff:ffff", 1, 0, 0)) \
        == "2001:db8:1:2::/64"
    assert net(("2001:db8:1:3::1", 40000, 0, 0)) == "2001:db8:1:3::/64"
    assert net(("::ffff:192.0.2.7", 40000, 0, 0)) == "192.0.2.7"  # a dual-stack listener's IPv4 client
    assert net(("fe80::1%lo", 40000, 0, 1)) == "fe80::/64"
    assert net("not an address") == "not an address"


def _request(httpd: httpserver.Server, addr, header: str) -> socket.socket:
    """A request with ``header`` from ``addr``, as the accept loop hands it on once its head
    is read; the client's end of the connection."""
    ours, theirs = socket.socketpair()
    c = httpserver._Pending(theirs, addr, time.monotonic() + 10, False)
    c.buf = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\n\r\n".encode()
    httpd._dispatch(c)
    ours.settimeout(10)
    return ours


def _status(s: socket.socket) -> bytes:
    return _answer(s).split(b"\r\n", 1)[0]


def test_one_ipv6_64_counts_as_one_client():
    gate = _SlowGate()
    httpd = httpserver.Server(("127.0.0.1", 0), max_connections=8, gate=gate)  # the 3 passed at once
    httpd.set_app(_Gate())
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    per = httpserver.AUTH_WAITING_PER_CLIENT
    try:
        flood = [_request(httpd, (f"2001:db8:1:2::{i + 1:x}", 40000, 0, 0), "Basic bad") for i in range(per)]
        assert gate.started.wait(10)
        one_more = _request(httpd, (f"2001:db8:1:2::{per + 1:x}", 40000, 0, 0), "Basic bad")
        assert _status(one_more) == b"HTTP/1.0 429 Too Many Requests"  # the same /64: the same client
        other = _request(httpd, ("2001:db8:1:3::1", 40000, 0, 0), "Basic good")  # the next /64: room for it
        v4 = [_request(httpd, (f"192.0.2.{i}", 40000), "Basic good") for i in (1, 2)]  # /32 each
        assert httpd.credential_checks_waiting() == per + 3
        gate.release.set()
        assert [_status(s) for s in flood] == [b"HTTP/1.0 401 Unauthorized"] * per
        assert [_status(s) for s in [other, *v4]] == [b"HTTP/1.0 200 OK"] * 3
    finally:
        gate.release.set()
        httpd.shutdown()
        httpd.server_close()
        t.join(10)
