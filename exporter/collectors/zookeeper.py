"""ZooKeeper collector (kazoo): znode counts, Livy's recovery backlog, mntr.

- ``paths``: for each configured znode, whether it exists and how many
  children it has, from the node's Stat (``exists()``): O(1) on the server and a
  few bytes on the wire. The children are never listed: with 40,000 children
  the list exceeds the client's 1 MB packet limit and fails.
- Livy's ZooKeeper state store (on by default, key prefix ``livy``): Livy's
  SessionStore keeps ``/<prefix>/v1/<kind>/<id>`` per session and one child
  ``state`` (``{"nextSessionId": N}``) for ``kind`` in ``batch`` and
  ``interactive``. The sessions a Livy restart would recover (one thread
  each) = numChildren minus the ``state`` node. The ``state`` node is read too
  (it is tiny): its nextSessionId, and a read that needs the node's READ
  permission, so that a refused digest login shows up as an ``auth`` error.
- ``mntr``: the server's own figures (znode count, data size, outstanding
  requests, ...), read over a separate short TCP connection to the server the
  client is connected to, when the server allows the four-letter word
  (``4lw.commands.whitelist``).

One KazooClient per target is kept across scrapes; it reconnects in the
background with capped exponential backoff (at most one attempt every few
seconds) and keeps its session across short outages. Every call is
asynchronous and waited for at most until the scrape deadline, so a down,
slow, auth-refusing or session-expired ZooKeeper marks the target down within
the deadline. Closing the client (shutdown, the end of ``sparkwatch doctor``, an
evicted probe target) takes at most a second, whatever the server does: see
:func:`_stop_client`.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from typing import Dict, List, Optional, Tuple, Union

from pydantic import Field, field_validator

from ..collector import Collector, Deadline, MetricSet, ScrapeContext, TargetError, gauge, info
from ..httpclient import decode_json
from ..livystore import RECOVERY_SESSIONS, SESSION_KINDS, kind_path
from ..targetconfig import BasicAuth, Seconds, Strict, TargetBase

log = logging.getLogger("sparkwatch.zookeeper")


def _kazoo_logger() -> logging.Logger:
    """The logger handed to kazoo: errors only (kazoo logs every failed reconnect
    attempt; the engine already reports the target down). A logger of our own,
    outside the logging registry, so that no process-wide setting changes."""
    lg = logging.Logger("sparkwatch.zookeeper.kazoo", logging.ERROR)
    lg.parent = log
    return lg


_kazoo_log = _kazoo_logger()

ZNODE_EXISTS = gauge("zookeeper_znode_exists", "1 if the configured znode exists, else 0.", ["path"])
ZNODE_CHILDREN = gauge(
    "zookeeper_znode_children",
    "Children of the configured znode, from its Stat (numChildren; the children are never listed). "
    "Absent when the znode does not exist.",
    ["path"],
)
NEXT_SESSION_ID = gauge(
    "livy_recovery_next_session_id",
    "The id Livy gives its next session of this kind (the 'state' node of its ZooKeeper state store): "
    "sessions created since the store was created. Its rate is the session creation rate.",
    ["kind", "process"],
)
MNTR_AVAILABLE = gauge(
    "zookeeper_mntr_available",
    "1 if the server answered the mntr four-letter word, 0 if it refuses it (not in 4lw.commands.whitelist).",
)
SERVER_INFO = info("zookeeper_server", "The ZooKeeper server answering mntr: its version and role.",
                   ["server", "version", "server_state"])

#: mntr key -> (metric, scale)
MNTR_GAUGES: Dict[str, Tuple[object, float]] = {
    "zk_znode_count": (gauge("zookeeper_znodes", "Znodes in the server's data tree (mntr zk_znode_count)."), 1.0),
    "zk_approximate_data_size": (gauge("zookeeper_approximate_data_size_bytes",
                                       "Approximate size of the data tree (mntr zk_approximate_data_size)."), 1.0),
    "zk_outstanding_requests": (gauge("zookeeper_outstanding_requests",
                                      "Requests queued on the server (mntr zk_outstanding_requests)."), 1.0),
    "zk_num_alive_connections": (gauge("zookeeper_alive_connections",
                                       "Client connections to the server (mntr zk_num_alive_connections)."), 1.0),
    "zk_watch_count": (gauge("zookeeper_watches", "Watches set on the server (mntr zk_watch_count)."), 1.0),
    "zk_ephemerals_count": (gauge("zookeeper_ephemerals", "Ephemeral znodes (mntr zk_ephemerals_count)."), 1.0),
    "zk_avg_latency": (gauge("zookeeper_latency_avg_seconds",
                             "Average request latency on the server (mntr zk_avg_latency)."), 0.001),
    "zk_max_latency": (gauge("zookeeper_latency_max_seconds",
                             "Maximum request latency on the server since its counters were reset "
                             "(mntr zk_max_latency)."), 0.001),
    "zk_open_file_descriptor_count": (gauge("zookeeper_open_file_descriptors",
                                            "File descriptors the server has open "
                                            "(mntr zk_open_file_descriptor_count)."), 1.0),
    "zk_max_file_descriptor_count": (gauge("zookeeper_max_file_descriptors",
                                           "The server's file descriptor limit (mntr zk_max_file_descriptor_count)."),
                                     1.0),
}

MNTR_MAX_BYTES = 1 << 20
#: reconnect backoff cap (seconds)
RECONNECT_MAX_DELAY = 5.0
#: the longest closing a client waits for it to end (seconds)
CLOSE_WAIT = 1.0
#: how long the server gets to answer the close of the session before the connection is dropped (seconds)
CLOSE_GRACE = 0.2


# --------------------------------------------------------------------------
# Configuration


class LivyStateStore(Strict):
    """``zookeeper[].livy_state_store``: Livy's recovery state in this ensemble (on by
    default, key prefix ``livy``), counted as the sessions a Livy restart would
    recover (S2). ``process`` puts the Livy JVM's name on those series so that
    the alerts can set them against that JVM's thread headroom."""

    #: count Livy's recovery state store in this ZooKeeper
    enabled: bool = True
    #: livy.server.recovery.zk-state-store.key-prefix
    key_prefix: str = Field(default="livy", min_length=1)
    #: name of the Livy JVM, as the jvm target names it (label 'process')
    process: Optional[str] = Field(default=None, min_length=1)

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip("/")
        if not v or "//" in v:
            raise ValueError("must be a znode name such as 'livy'")
        return v


_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?$")


class ZooKeeperTarget(TargetBase):
    """One entry of the ``zookeeper:`` list: an ensemble (``hosts``, optional
    ``chroot``, ``digest_auth``), the znodes to count, Livy's state store, mntr.
    Its name defaults to the connect string; /probe fills in ``hosts``."""

    #: the ensemble: a list of host:port, or one comma-separated string
    hosts: List[str]
    #: a chroot path all other paths are relative to (like the '/path' suffix of a connect string)
    chroot: Optional[str] = None
    digest_auth: Optional[BasicAuth] = None
    #: session timeout and the longest a scrape waits for a connection, in seconds
    timeout: Seconds = 10.0
    #: znodes to watch (zookeeper_znode_exists, zookeeper_znode_children)
    paths: List[str] = []
    livy_state_store: LivyStateStore = LivyStateStore()
    #: read the server's mntr figures (needs mntr in 4lw.commands.whitelist)
    mntr: bool = True

    @field_validator("hosts", mode="before")
    @classmethod
    def _split(cls, v: Union[str, List[str]]):
        if isinstance(v, str):
            v = [h.strip() for h in v.split(",")]
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: List[str]) -> List[str]:
        v = [h.strip() for h in v if h.strip()]
        if not v:
            raise ValueError("give at least one host:port")
        for h in v:
            if "/" in h:
                raise ValueError(f"{h!r}: give the chroot with the 'chroot' key, not in hosts")
            if not _HOST.match(h):
                raise ValueError(f"{h!r} is not a host:port")
        return v

    @field_validator("chroot")
    @classmethod
    def _chroot(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if not v.startswith("/"):
            raise ValueError("must start with /")
        v = v.rstrip("/")
        return v or None

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: List[str]) -> List[str]:
        out = []
        for p in v:
            if not p.startswith("/"):
                raise ValueError(f"{p!r}: znode paths start with /")
            p = p.rstrip("/") or "/"
            if p not in out:
                out.append(p)
        return out

    def connect_string(self) -> str:
        return ",".join(self.hosts) + (self.chroot or "")

    def display_name(self) -> str:
        return self.name or self.connect_string()


# --------------------------------------------------------------------------
# The collector


def _kazoo():
    import kazoo.exceptions as ke
    from kazoo.client import KazooClient, KazooState
    from kazoo.protocol.states import KeeperState
    from kazoo.retry import KazooRetry

    return KazooClient, KazooState, KeeperState, KazooRetry, ke


def _to_target_error(e: BaseException, what: str) -> TargetError:
    _, _, _, _, ke = _kazoo()
    if isinstance(e, TargetError):
        return e
    if isinstance(e, (ke.NoAuthError, ke.AuthFailedError, ke.InvalidACLError)):
        return TargetError("auth", f"{what}: ZooKeeper refused access ({type(e).__name__}); check digest_auth")
    if isinstance(e, (ke.ConnectionLoss, ke.SessionExpiredError, ke.ConnectionClosedError,
                      ke.OperationTimeoutError, ke.SessionMovedError)):
        return TargetError("connection", f"{what}: {type(e).__name__}")
    if type(e).__name__.endswith("TimeoutError") or isinstance(e, socket.timeout):
        return TargetError("timeout", f"{what}: no answer within the scrape deadline")
    if isinstance(e, (ke.KazooException, ke.ZookeeperError)):
        return TargetError("invalid_response", f"{what}: {type(e).__name__}")
    if isinstance(e, OSError):
        return TargetError("connection", f"{what}: {e}")
    return TargetError("internal", f"{what}: {type(e).__name__}: {e}")


class ZooKeeperCollector(Collector):
    """One ensemble, through one KazooClient kept across scrapes (see the module's
    docstring). ``collect`` and ``close`` hold ``_lock``, so a shutdown never
    closes the client under a scrape; every ZooKeeper call is waited for at most
    until the scrape deadline, and reconnecting happens in the background, never
    on a scrape's time."""

    kind = "zookeeper"
    config_model = ZooKeeperTarget
    metrics = (RECOVERY_SESSIONS, ZNODE_EXISTS, ZNODE_CHILDREN, NEXT_SESSION_ID, MNTR_AVAILABLE, SERVER_INFO,
               *(metric for metric, _ in MNTR_GAUGES.values()))
    probe_field = "hosts"

    def __init__(self, config: ZooKeeperTarget):
        super().__init__(config)
        self._client = None
        self._live = None
        self._lock = threading.Lock()  # collect() vs close()
        self._closed = False

    # ----------------------------------------------------------- connection

    def _new_client(self):
        KazooClient, _, _, KazooRetry, _ = _kazoo()
        cfg = self.config
        auth = None
        if cfg.digest_auth is not None:
            auth = [("digest", f"{cfg.digest_auth.username}:{cfg.digest_auth.resolve_password()}")]
        retry = KazooRetry(max_tries=-1, delay=0.2, backoff=2, max_jitter=0.2,
                           max_delay=min(RECONNECT_MAX_DELAY, cfg.timeout))
        client = KazooClient(hosts=cfg.connect_string(), timeout=cfg.timeout, auth_data=auth,
                             connection_retry=retry, command_retry=None, logger=_kazoo_log)
        self._client = client
        self._live = client.start_async()
        return client

    def _discard(self) -> None:
        old, self._client, self._live = self._client, None, None
        if old is not None:  # not on the scrape's time
            threading.Thread(target=_stop_client, args=(old,), name="zk-client-discard", daemon=True).start()

    def _connected_client(self, deadline: Deadline):
        _, _, KeeperState, _, _ = _kazoo()
        client = self._client
        if client is not None and client.client_state in (KeeperState.AUTH_FAILED, KeeperState.CLOSED):
            # a client that gave up (auth failed, closed) is replaced, at most once per scrape
            self._discard()
            client = None
        if client is None:
            client = self._new_client()
        if not client.connected:
            # keep a little of the deadline so that the error, not the engine's timeout, is reported
            wait = min(self.config.timeout, max(0.0, deadline.remaining() * 0.9 - 0.05))
            self._live.wait(wait)
        if not client.connected:
            state = client.client_state
            if state == KeeperState.AUTH_FAILED:
                raise TargetError("auth", "ZooKeeper refused the authentication (AUTH_FAILED); check digest_auth")
            raise TargetError("connection", f"no ZooKeeper connection to {','.join(self.config.hosts)} "
                                            f"(state {state}); reconnecting in the background")
        return client

    # ---------------------------------------------------------------- collect

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        deadline = scrape.deadline
        with self._lock:
            if self._closed:
                raise TargetError("connection", "collector closed")
            client = self._connected_client(deadline)
            self._collect(client, out, deadline)

    def _wait(self, async_result, deadline: Deadline, what: str):
        try:
            return async_result.get(timeout=deadline.timeout())
        except TargetError:
            raise
        except Exception as e:
            raise _to_target_error(e, what) from None

    def _collect(self, client, out: MetricSet, deadline: Deadline) -> None:
        _, _, _, _, ke = _kazoo()
        cfg = self.config
        store = cfg.livy_state_store
        paths = list(cfg.paths)
        livy_bases = {}
        if store.enabled:
            for kind in SESSION_KINDS:
                livy_bases[kind] = kind_path("/" + store.key_prefix, kind)
        # issue every request at once (pipelined on the one connection), then wait
        try:
            stats = {p: client.exists_async(p) for p in dict.fromkeys(paths + list(livy_bases.values()))}
            state_reads = {k: client.get_async(b + "/state") for k, b in livy_bases.items()}
        except Exception as e:
            raise _to_target_error(e, "ZooKeeper request") from None

        results = {p: self._wait(a, deadline, f"exists {p}") for p, a in stats.items()}
        for p in paths:
            st = results[p]
            out.add(ZNODE_EXISTS, st is not None, path=p)
            if st is not None:
                out.add(ZNODE_CHILDREN, st.numChildren, path=p)

        process = store.process or ""
        for kind, base in livy_bases.items():
            state_node = None
            try:
                state_node = state_reads[kind].get(timeout=deadline.timeout())
            except ke.NoNodeError:
                state_node = None
            except TargetError:
                raise
            except Exception as e:
                raise _to_target_error(e, f"get {base}/state") from None
            st = results[base]
            n = 0
            if st is not None:
                n = max(0, st.numChildren - (1 if state_node is not None else 0))
            out.add(RECOVERY_SESSIONS, n, kind=kind, process=process)
            if state_node is not None:
                out.add(NEXT_SESSION_ID, _next_session_id(state_node[0]), kind=kind, process=process)

        if cfg.mntr:
            self._mntr(out, deadline)

    def _mntr(self, out: MetricSet, deadline: Deadline) -> None:
        """mntr from the first configured server that answers (each gets a fair
        share of what is left of the deadline)."""
        hosts = self.config.hosts
        text, server, failure = None, None, None
        for i, hostport in enumerate(hosts):
            server = split_host_port(hostport)
            try:
                text = four_letter_word(server, b"mntr", deadline,
                                        cap=min(5.0, max(0.05, deadline.remaining() / (len(hosts) - i))))
                break
            except TargetError as e:
                failure = e
                if e.reason == "timeout" and deadline.expired():
                    break
        if text is None:
            out.error("timeout" if failure is not None and failure.reason == "timeout" else "partial")
            return
        values = parse_mntr(text)
        if not values:
            out.add(MNTR_AVAILABLE, 0)  # "mntr is not executed because it is not in the whitelist."
            return
        out.add(MNTR_AVAILABLE, 1)
        for key, (metric, scale) in MNTR_GAUGES.items():
            v = values.get(key)
            if v is None:
                continue
            try:
                out.add(metric, float(v) * scale)
            except ValueError:
                pass
        version = values.get("zk_version", "").split(",")[0].split("-")[0].strip() or "unknown"
        host = server[0] if ":" not in server[0] else f"[{server[0]}]"
        out.add(SERVER_INFO, 1, server=f"{host}:{server[1]}", version=version,
                server_state=values.get("zk_server_state", "unknown"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None and not _stop_client(client):
            log.debug("zookeeper target %s: the client did not end within %gs of its close", self.name, CLOSE_WAIT)


def split_host_port(hostport: str, default_port: int = 2181) -> Tuple[str, int]:
    """``host:port``, ``host`` or ``[v6]:port`` -> (host, port)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = hostport.rpartition(":")
    if not sep:
        return hostport, default_port
    return host, int(port)


def _stop_client(client, wait: float = CLOSE_WAIT) -> bool:
    """Stop and close a KazooClient, waiting at most ``wait`` seconds; whether it ended.

    kazoo's ``stop()`` queues the close of the session and then waits for the
    client's connection thread, which waits for the server: for the answer to
    its handshake (up to the session timeout), or to the close and a heartbeat
    (two-thirds of it). A silent server (hung, SIGSTOPped, a port that accepts
    and never answers) would hold the exporter's shutdown, or the doctor, that
    long. So ``stop()`` runs in a thread of its own; if the server has not
    answered within ``CLOSE_GRACE``, the connection's socket is shut down: the
    connection thread wakes at once, finds the connection dropped and the client
    stopped, and ends (with the client's other threads), instead of lingering
    after the wait."""
    t = threading.Thread(target=_stop_and_close, args=(client,), name="zk-client-stop", daemon=True)
    t.start()
    t.join(min(CLOSE_GRACE, wait))
    if t.is_alive():
        _drop_connection(client)
        t.join(max(0.0, wait - CLOSE_GRACE))
    return not t.is_alive()


def _stop_and_close(client) -> None:
    try:
        client.stop()
        client.close()
    except Exception:
        log.debug("stopping the ZooKeeper client failed", exc_info=True)


def _drop_connection(client) -> None:
    """Shut down the socket of a stopping client's connection (kazoo has no public call
    for it; its connection keeps the socket in ``_socket``). A client still opening its
    TCP connection has no socket yet: it ends when the connect does (the session timeout
    at most; never for loopback, which connects or refuses at once)."""
    sock = getattr(getattr(client, "_connection", None), "_socket", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the connection thread
        pass


def _next_session_id(data: bytes) -> Optional[float]:
    """``nextSessionId`` of a store's ``state`` znode: Livy writes it, but whoever can
    write the znode chooses its bytes, so they go through the bounded JSON decoder
    (cost counted before decoding, no RecursionError) like a target's HTTP answers."""
    try:
        v = decode_json(bytes(data), "znode state", expect=dict).get("nextSessionId")
    except TargetError:
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def four_letter_word(server: Tuple[str, int], cmd: bytes, deadline: Deadline, cap: float = 5.0) -> str:
    """Send a four-letter word and read the whole answer, within the deadline."""
    try:
        with socket.create_connection(server, timeout=deadline.timeout(cap)) as s:
            s.sendall(cmd)
            chunks = []
            size = 0
            while True:
                s.settimeout(deadline.timeout(cap))
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
                size += len(b)
                if size > MNTR_MAX_BYTES:
                    raise TargetError("invalid_response", f"{cmd.decode()}: answer too large")
    except TargetError:
        raise
    except socket.timeout:
        raise TargetError("timeout", f"{cmd.decode()}: no answer within the deadline") from None
    except OSError as e:
        raise TargetError("connection", f"{cmd.decode()}: {e}") from None
    return b"".join(chunks).decode("utf-8", "replace")


def parse_mntr(text: str) -> Dict[str, str]:
    values = {}
    for line in text.splitlines():
        k, sep, v = line.partition("\t")
        if sep and k.startswith("zk_"):
            values[k] = v.strip()
    return values
