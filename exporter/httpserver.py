"""The exporter's own HTTP server: it stays answerable when clients misbehave.

A connection never gets a thread of its own just by being open:

* One thread (the one running :meth:`Server.serve_forever`) accepts connections
  and, with non-blocking sockets and a selector, does their TLS handshake and
  reads the request head. A connection that has not sent a complete head within
  ``header_timeout`` seconds is closed; so is the oldest such connection when
  ``max_pending`` of them are open (or when the process runs out of file
  descriptors). Idle and half-sent connections cost a file descriptor, not a
  thread, and cannot hold what ``/metrics`` needs. A head larger than
  ``MAX_HEAD_BYTES`` is answered ``431``; the kernel queues up to
  ``LISTEN_BACKLOG`` connections not accepted yet.
* With basic authentication (``--web.config.file``), the accept loop looks at
  a complete request before it takes a slot: a request for an unprotected path,
  or whose ``Authorization`` header passed a check before (the cache of
  :class:`sparkwatch.webconfig.BasicAuth`), goes on; one without credentials is
  answered ``401`` at once; any other waits, without a thread, for its bcrypt
  check on the one verifier thread (:mod:`sparkwatch.authqueue`). At most
  ``AUTH_WAITING`` requests wait, ``AUTH_WAITING_PER_CLIENT`` of them from one
  client network (an IPv4 address, an IPv6 /64); beyond, the request is
  answered ``429`` at once. A failed check is answered ``401`` by the verifier;
  a passed one goes on to a slot. So failed logins, however many, never hold
  the slots valid requests need, and a flood from one network leaves room in
  the queue for the first login of another.
* A complete request goes to a worker thread; at most ``max_connections``
  (``--web.max-connections``, :class:`Slots`) run at once. When all are busy the
  request is answered ``503`` at once, never queued, and a rate-limited warning
  says so.
* Workers read and write with a timeout (``io_timeout``). Each connection
  carries one request (HTTP/1.0 semantics, as before), so nothing keeps a
  worker after its answer is written.

The application is any WSGI app (:class:`sparkwatch.web.App`, wrapped by
:class:`sparkwatch.webconfig.Protected` with a web configuration);
:func:`sparkwatch.web.serve` builds the server for it.
"""

from __future__ import annotations

import errno
import http.client
import io
import logging
import selectors
import socket
import ssl
import threading
import time
from typing import Optional, Tuple
from urllib.parse import unquote
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from . import __version__
from .authqueue import CredentialChecks
from .logsafe import RateLimitedLog
from .webconfig import UNAUTHORIZED_BODY

log = logging.getLogger("sparkwatch")

DEFAULT_MAX_CONNECTIONS = 128
#: seconds from accept until TLS handshake and request head must be complete
DEFAULT_HEADER_TIMEOUT = 5.0
#: seconds a worker waits on a socket read or write (a client that does not read its answer)
DEFAULT_IO_TIMEOUT = 30.0
#: listen backlog (the kernel caps it at net.core.somaxconn)
LISTEN_BACKLOG = 1024
#: request line and headers larger than this are answered 431
MAX_HEAD_BYTES = 16 * 1024
#: requests waiting for a bcrypt check at most; beyond, 429
AUTH_WAITING = 32
#: of them from one client network (an IPv4 address, an IPv6 /64) at most
AUTH_WAITING_PER_CLIENT = 4
#: seconds between two warnings of the same kind (the next one says how many were held back)
WARNING_INTERVAL = 10.0


def default_max_pending() -> int:
    """Connections waiting for their request head at most: 1024, or a quarter of
    the file-descriptor limit when that is lower, so that idle clients cannot
    take the descriptors a scrape needs for its own connections."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 4))


#: the Server header of every answer (not the Python version wsgiref would name)
SERVER_SOFTWARE = f"sparkwatch/{__version__}"
_PLAIN_HEADERS = f"Server: {SERVER_SOFTWARE}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"


def _canned(status: str, text: str, extra: str = "") -> bytes:
    body = text.encode()
    return (f"HTTP/1.0 {status}\r\n{_PLAIN_HEADERS}{extra}Content-Length: {len(body)}\r\n\r\n").encode() + body


_RESPONSE_BUSY = _canned("503 Service Unavailable", "all connection slots are busy, try again\n", "Retry-After: 1\r\n")
_RESPONSE_BAD_REQUEST = _canned("400 Bad Request", "bad request\n")
_RESPONSE_TOO_LARGE = _canned("431 Request Header Fields Too Large", "request head too large\n")


def _peer(addr) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


def _path_and_authorization(head: bytes) -> Optional[Tuple[str, Optional[str]]]:
    """``PATH_INFO`` and ``HTTP_AUTHORIZATION`` as the WSGI handler will see them
    (``BaseHTTPRequestHandler`` and ``wsgiref`` parse the same head the same way),
    or None when the head does not parse."""
    line, _, rest = head.partition(b"\n")
    words = line.decode("iso-8859-1").split()
    if len(words) != 3:
        return None
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except (http.client.HTTPException, ValueError):
        return None
    values = headers.get_all("Authorization")
    return unquote(words[1].split("?", 1)[0], "iso-8859-1"), ",".join(v.strip() for v in values) if values else None


def _head_length(buf: bytes) -> int:
    """Bytes up to the end of the request head, or -1 while it is incomplete."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") for i in (buf.find(sep),) if i >= 0]
    return min(ends) if ends else -1


class Slots:
    """The connection slots: at most ``size`` taken at once, and how many are taken
    now (which :class:`threading.BoundedSemaphore` keeps to itself)."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("the number of slots must be at least 1")
        self.size = size
        self._taken = 0
        self._lock = threading.Lock()

    @property
    def taken(self) -> int:
        """Slots taken now."""
        return self._taken

    def take(self) -> bool:
        """Take a slot if one is free (never waits); whether one was taken."""
        with self._lock:
            if self._taken >= self.size:
                return False
            self._taken += 1
            return True

    def release(self) -> None:
        """Give back a slot taken before; ValueError when none is taken."""
        with self._lock:
            if self._taken <= 0:
                raise ValueError("released a slot that was not taken")
            self._taken -= 1


class _Pending:
    """A connection whose request head is still being read."""

    __slots__ = ("sock", "addr", "deadline", "buf", "handshaking")

    def __init__(self, sock, addr, deadline: float, handshaking: bool):
        self.sock, self.addr, self.deadline, self.handshaking = sock, addr, deadline, handshaking
        self.buf = b""


class _PrefixedReader(io.RawIOBase):
    """The request head already read by the accept loop, then the socket."""

    def __init__(self, prefix: bytes, sock):
        self._prefix = memoryview(prefix)
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._prefix.nbytes:
            n = min(len(b), self._prefix.nbytes)
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._sock.recv_into(b)


class _SocketWriter(io.BufferedIOBase):
    def __init__(self, sock):
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes


class _ServerHandler(ServerHandler):
    server_software = SERVER_SOFTWARE


class _Handler(WSGIRequestHandler):
    """One request on a connection whose head the accept loop has read."""

    server_version = SERVER_SOFTWARE

    def __init__(self, request, client_address, server, head: bytes = b""):
        self._head = head
        super().__init__(request, client_address, server)

    def setup(self):
        self.connection = self.request
        self.rfile = io.BufferedReader(_PrefixedReader(self._head, self.request))
        self.wfile = _SocketWriter(self.request)

    def get_environ(self):
        env = super().get_environ()
        if self.server.ssl_context is not None:
            env["HTTPS"] = "on"
        return env

    def version_string(self) -> str:  # the Server header of the HTTP layer's own errors
        return SERVER_SOFTWARE

    def handle(self):
        """WSGIRequestHandler.handle, with a ServerHandler that names sparkwatch in the Server header."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error was answered
            return
        handler = _ServerHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self
        handler.run(self.server.get_app())

    def log_message(self, format, *args):  # noqa: A002 - signature from BaseHTTPRequestHandler
        log.debug("%s %s", self.address_string(), format % args)


class Server(WSGIServer):
    """A WSGI server with a bounded number of worker threads (the module's
    docstring says how). It listens on IPv6 when the host has a colon.

    Call :meth:`set_app`, then :meth:`serve_forever` on one thread; from another,
    :meth:`shutdown` stops it and :meth:`server_close` releases the sockets."""

    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, server_address, handler_class=_Handler, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 header_timeout: float = DEFAULT_HEADER_TIMEOUT, io_timeout: float = DEFAULT_IO_TIMEOUT,
                 max_pending: Optional[int] = None, ssl_context=None, peer_check=None, gate=None):
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        # everything server_close() needs exists before binding: socketserver calls it when the bind fails
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.io_timeout = io_timeout
        self.max_pending = max_pending or default_max_pending()
        self.ssl_context = ssl_context
        self.peer_check = peer_check  # the verified client certificate (a dict) -> allowed?
        #: basic authentication before a slot (sparkwatch.webconfig.Protected: admit, verify, headers), or None
        self.gate = gate
        self._sel: Optional[selectors.BaseSelector] = None
        self._slots = Slots(max_connections)
        self._pending: "dict[int, _Pending]" = {}  # fd -> connection, oldest first
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = False
        self._idle = threading.Event()
        self._idle.set()
        self._accept_paused_until = 0.0
        self._log = RateLimitedLog(log, WARNING_INTERVAL)
        # requests waiting for their bcrypt check (with the gate)
        self._checks = CredentialChecks(gate.verify, self._checked, AUTH_WAITING,
                                        AUTH_WAITING_PER_CLIENT) if gate is not None else None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (gate.headers if gate is not None else ()))
        self._response_unauthorized = _canned("401 Unauthorized", UNAUTHORIZED_BODY,
                                              "WWW-Authenticate: Basic\r\n" + extra)
        self._response_auth_busy = _canned(
            "429 Too Many Requests", "too many credential checks waiting, try again\n", "Retry-After: 1\r\n" + extra)
        self.address_family = socket.AF_INET6 if ":" in server_address[0] else socket.AF_INET
        super().__init__(server_address, handler_class)
        self.socket.setblocking(False)

    # -------------------------------------------------- the socketserver interface

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """The accept loop, until :meth:`shutdown`."""
        self._idle.clear()
        sel = selectors.DefaultSelector()
        self._sel = sel
        listening = True
        sel.register(self.socket, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stop:
                now = time.monotonic()
                if not listening and now >= self._accept_paused_until:
                    sel.register(self.socket, selectors.EVENT_READ, "accept")
                    listening = True
                timeout = poll_interval
                if self._pending:
                    timeout = min(timeout, max(0.0, next(iter(self._pending.values())).deadline - now))
                for key, _ in sel.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        try:
                            self._wake_r.recv(512)
                        except OSError:
                            pass
                    elif key.fd in self._pending:
                        self._advance(key.data)
                if listening and self._accept_paused_until > time.monotonic():
                    sel.unregister(self.socket)
                    listening = False
                self._expire(time.monotonic())
                self._log.flush()
        finally:
            for c in list(self._pending.values()):
                self._drop(c)
            if self._checks is not None:
                self._checks.stop()
            sel.close()
            self._sel = None
            self._stop = False
            self._idle.set()

    def shutdown(self) -> None:
        """Stop the accept loop and wait until it has closed what was pending (workers finish on their own)."""
        self._stop = True
        self._wake()
        self._idle.wait()

    def server_close(self) -> None:
        """Close the listening socket and the loop's own sockets."""
        super().server_close()
        if self._idle.is_set():
            for c in list(self._pending.values()):
                self._drop(c)
        for s in (self._wake_r, self._wake_w):
            s.close()

    def busy_connections(self) -> int:
        """Worker threads running now (for tests and debugging)."""
        return self._slots.taken

    def credential_checks_waiting(self) -> int:
        """Requests waiting for their bcrypt check, queued or in it (for tests and debugging)."""
        return self._checks.waiting() if self._checks is not None else 0

    # -------------------------------------------------- the accept loop

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(256):  # then let the other sockets have their turn
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if self._pending:
                        self._drop(next(iter(self._pending.values())))
                        self._note_evicted()
                        continue
                    self._accept_paused_until = time.monotonic() + 0.1
                    log.warning("cannot accept connections: %s", e.strerror)
                return
            if len(self._pending) >= self.max_pending:
                self._drop(next(iter(self._pending.values())))
                self._note_evicted()
            sock.setblocking(False)
            handshaking = False
            if self.ssl_context is not None:
                try:
                    sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
                handshaking = True
            c = _Pending(sock, addr, time.monotonic() + self.header_timeout, handshaking)
            self._pending[sock.fileno()] = c
            self._sel.register(sock, selectors.EVENT_READ, c)
            self._advance(c)  # a request often arrives with the connection

    def _advance(self, c: _Pending) -> None:
        try:
            if c.handshaking:
                c.sock.do_handshake()
                c.handshaking = False
                self._sel.modify(c.sock, selectors.EVENT_READ, c)
                if not self._peer_allowed(c.sock):
                    self._note_tls_failed(c, "client certificate has none of client_allowed_sans")
                    self._drop(c)
                    return
            while True:
                data = c.sock.recv(8192)
                if not data:
                    self._drop(c)
                    return
                c.buf += data
                n = _head_length(c.buf)
                if 0 <= n <= MAX_HEAD_BYTES:
                    self._forget(c)
                    self._dispatch(c)
                    return
                if n > MAX_HEAD_BYTES or len(c.buf) > MAX_HEAD_BYTES:
                    self._forget(c)
                    self._answer_and_close(c.sock, _RESPONSE_TOO_LARGE)
                    return
        except ssl.SSLWantReadError:
            self._sel.modify(c.sock, selectors.EVENT_READ, c)
        except ssl.SSLWantWriteError:
            self._sel.modify(c.sock, selectors.EVENT_WRITE, c)
        except (BlockingIOError, InterruptedError):
            pass
        except ssl.SSLError as e:
            if c.handshaking:
                self._note_tls_failed(c, e.reason or str(e))
            self._drop(c)
        except OSError:
            self._drop(c)

    def _peer_allowed(self, sock) -> bool:
        return self.peer_check is None or self.peer_check(sock.getpeercert())

    def _expire(self, now: float) -> None:
        while self._pending:
            c = next(iter(self._pending.values()))
            if c.deadline > now:
                return
            self._drop(c)
            self._log.debug("closed a connection that sent no complete request within %gs: client %s",
                            self.header_timeout, _peer(c.addr))

    def _forget(self, c: _Pending) -> None:
        self._pending.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass

    def _drop(self, c: _Pending) -> None:
        if self._sel is not None:
            self._forget(c)
        else:
            self._pending.pop(c.sock.fileno(), None)
        c.sock.close()

    @staticmethod
    def _answer_and_close(sock, response: bytes) -> None:
        try:
            sock.send(response)  # best effort: the socket is non-blocking and the answer small
        except (OSError, ValueError):
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _note_evicted(self) -> None:
        self._log.warning("closed the oldest connection still sending its request: too many open (at most %d, "
                          "or out of file descriptors)", self.max_pending)

    def _note_tls_failed(self, c: _Pending, why: str) -> None:
        self._log.info("a TLS connection failed or was refused: client %s: %s", _peer(c.addr), why)

    def _note_busy(self, c: _Pending) -> None:
        self._log.warning("refused a request with 503: all %d connection slots are busy (--web.max-connections); "
                          "client %s", self.max_connections, _peer(c.addr))

    def _dispatch(self, c: _Pending) -> None:
        if self.gate is not None:
            request = _path_and_authorization(c.buf)
            if request is None:
                self._answer_and_close(c.sock, _RESPONSE_BAD_REQUEST)
                return
            admitted = self.gate.admit(*request)
            if admitted is False:
                self._answer_and_close(c.sock, self._response_unauthorized)
                return
            if admitted is None:
                self._verify_later(c, request[1])
                return
        self._start(c)

    # -------------------------------------------------- bcrypt checks, one at a time, on a thread of their own

    def _verify_later(self, c: _Pending, header: str) -> None:
        refused = self._checks.offer(c, header, c.addr)
        if refused is not None:
            self._log.warning("refused a request with 429: %d requests wait for their credential check (bcrypt), "
                              "%d of them from client %s (at most %d, %d from one client)", *refused,
                              AUTH_WAITING, AUTH_WAITING_PER_CLIENT)
            self._answer_and_close(c.sock, self._response_auth_busy)

    def _checked(self, c: _Pending, ok: Optional[bool]) -> None:
        """The verdict of ``c``'s credential check (None: not checked, the server stops)."""
        if ok is None:
            c.sock.close()
        elif ok:
            self._start(c)
        else:
            self._answer_and_close(c.sock, self._response_unauthorized)

    # -------------------------------------------------- the workers

    def _start(self, c: _Pending) -> None:
        if not self._slots.take():
            self._note_busy(c)
            self._answer_and_close(c.sock, _RESPONSE_BUSY)
            return
        try:
            c.sock.setblocking(True)
            c.sock.settimeout(self.io_timeout)
            threading.Thread(target=self._work, args=(c.sock, c.addr, c.buf), daemon=True,
                             name="sparkwatch-http").start()
        except Exception:  # RuntimeError: can't start new thread; OSError: socket gone
            self._slots.release()
            self._note_busy(c)
            self._answer_and_close(c.sock, _RESPONSE_BUSY)

    def _work(self, sock, addr, head: bytes) -> None:
        try:
            self.RequestHandlerClass(sock, addr, self, head)
        except Exception:
            log.debug("request from %s failed", addr, exc_info=True)
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except (OSError, ValueError):
                pass
            sock.close()
            self._slots.release()

