"""The ZooKeeper collector against a real ZooKeeper server."""

from __future__ import annotations

import signal
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

import pytest
from kazoo.client import KazooClient, KazooState

from sparkwatch.collector import TargetError
from sparkwatch.collectors.zookeeper import ZooKeeperCollector, parse_mntr
from sparkwatch.cli import main
from sparkwatch.config import ConfigError, parse_config
from testbed.exporter import (collect_once, collected_value, exporter_process, find, running_exporter, samples, scrape,
                              value)
from testbed.procs import free_port
from testbed.zookeeper import available, write_livy_store, zookeeper_server

pytestmark = [pytest.mark.zookeeper, pytest.mark.skipif(not available(), reason="Debian zookeeper not installed")]


# zk: the read-only server of conftest.py (Livy's stores: livy, small, tenant-a/livy2, secure)


def _collector(**kw) -> ZooKeeperCollector:
    cfg = parse_config({"zookeeper": [kw]})
    return ZooKeeperCollector(cfg.zookeeper[0])




def test_40000_recovery_records_through_the_exporter(zk):
    cfg = {"zookeeper": [{"hosts": zk.hosts, "name": "zk", "paths": ["/livy/v1/batch", "/missing/node"],
                          "livy_state_store": {"process": "livy-server"}}]}
    with running_exporter(cfg) as (base, _):
        ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 1
    assert value(ss, "livy_recovery_sessions", kind="batch", process="livy-server") == 40000
    assert value(ss, "livy_recovery_sessions", kind="interactive", process="livy-server") == 0  # no such store
    assert value(ss, "livy_recovery_next_session_id", kind="batch", process="livy-server") == 40000
    assert value(ss, "zookeeper_znode_children", path="/livy/v1/batch") == 40001  # 40,000 + 'state'
    assert value(ss, "zookeeper_znode_exists", path="/livy/v1/batch") == 1
    # a missing path: exists 0, no children series, target up
    assert value(ss, "zookeeper_znode_exists", path="/missing/node") == 0
    assert not find(ss, "zookeeper_znode_children", path="/missing/node")
    # mntr, allowed by this server
    assert value(ss, "zookeeper_mntr_available") == 1
    assert value(ss, "zookeeper_znodes") > 40000
    assert value(ss, "zookeeper_approximate_data_size_bytes") > 40000 * 100
    (info,) = find(ss, "zookeeper_server_info")
    assert info[1]["version"].startswith("3.8") and info[1]["server_state"] == "standalone"
    assert info[1]["server"] == zk.hosts


def test_store_missing_or_disabled(zk):
    c = _collector(hosts=zk.hosts, livy_state_store={"key_prefix": "nolivy"}, mntr=False)
    out = collect_once(c, 10.0)
    assert collected_value(out, "livy_recovery_sessions", kind="batch", process="") == 0
    assert collected_value(out, "livy_recovery_next_session_id", kind="batch", process="") is None
    c.close()
    c = _collector(hosts=[zk.hosts], livy_state_store={"enabled": False}, mntr=False)
    out = collect_once(c, 10.0)
    assert len(out) == 0
    c.close()


def test_chroot(zk):
    c = _collector(hosts=zk.hosts, chroot="/tenant-a", livy_state_store={"key_prefix": "livy2"},
                   paths=["/livy2/v1/batch"], mntr=False)
    out = collect_once(c, 10.0)
    assert collected_value(out, "livy_recovery_sessions", kind="batch", process="") == 5
    assert collected_value(out, "livy_recovery_sessions", kind="interactive", process="") == 3
    assert collected_value(out, "zookeeper_znode_children", path="/livy2/v1/batch") == 6
    c.close()


def test_digest_auth(zk, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("right\n")
    good = _collector(hosts=zk.hosts, livy_state_store={"key_prefix": "secure"},
                      digest_auth={"username": "livy", "password_file": str(pw)}, mntr=False)
    out = collect_once(good, 10.0)
    assert collected_value(out, "livy_recovery_sessions", kind="batch", process="") == 7
    good.close()

    for auth in ({"username": "livy", "password": "wrong"}, None):
        kw = {"digest_auth": auth} if auth else {}
        bad = _collector(hosts=zk.hosts, livy_state_store={"key_prefix": "secure"}, mntr=False, **kw)
        with pytest.raises(TargetError) as ei:
            collect_once(bad, 10.0)
        assert ei.value.reason == "auth"
        assert "wrong" not in ei.value.message
        bad.close()


def test_auth_failure_through_the_exporter_leaves_other_targets_alone(zk):
    cfg = {"zookeeper": [
        {"hosts": zk.hosts, "name": "bad", "livy_state_store": {"key_prefix": "secure"},
         "digest_auth": {"username": "livy", "password": "wrong"}},
        {"hosts": zk.hosts, "name": "good"},
    ]}
    with running_exporter(cfg) as (base, _):
        text = scrape(base)
    assert "wrong" not in text
    ss = samples(text)
    assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="bad") == 0
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="zookeeper", target="bad", reason="auth") == 1
    assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="good") == 1
    assert value(ss, "livy_recovery_sessions", target="good", kind="batch") == 40000


def test_mntr_refused_is_not_an_error(tmp_path):
    with zookeeper_server(tmp_path, whitelist="ruok,srvr") as srv:
        c = _collector(hosts=srv.hosts)
        out = collect_once(c, 10.0)
        c.close()
    assert collected_value(out, "zookeeper_mntr_available") == 0
    assert collected_value(out, "zookeeper_znodes") is None
    assert out.errors == []


def test_server_down_from_the_start_costs_at_most_the_deadline():
    port = free_port()
    cfg = {"exporter": {"scrape_timeout": 3}, "zookeeper": [{"hosts": f"127.0.0.1:{port}", "name": "down"}]}
    with running_exporter(cfg) as (base, _):
        ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="down") == 0
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="zookeeper", target="down",
                 reason="connection") == 1
    assert value(ss, "sparkwatch_target_scrape_duration_seconds", kind="zookeeper", target="down") <= 3.5


@pytest.mark.slow
def test_server_stopped_mid_run_and_restarted(tmp_path):
    with zookeeper_server(tmp_path) as srv:
        c = KazooClient(hosts=srv.hosts)
        c.start(30)
        write_livy_store(c, "livy", "batch", 250)
        c.stop()
        c.close()
        cfg = {"exporter": {"scrape_timeout": 4}, "zookeeper": [{"hosts": srv.hosts, "name": "zk"}]}
        with running_exporter(cfg) as (base, app):
            ss = samples(scrape(base))
            assert value(ss, "livy_recovery_sessions", kind="batch") == 250
            collector = app.targets[0].collector
            client = collector._client

            srv.stop()
            ss = samples(scrape(base))
            assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 0
            assert value(ss, "sparkwatch_target_scrape_errors_total", kind="zookeeper", target="zk",
                         reason="connection") >= 1
            assert value(ss, "sparkwatch_target_scrape_duration_seconds", target="zk") <= 4.5
            assert not find(ss, "livy_recovery_sessions")

            srv.start()
            for _ in range(5):  # the client reconnects in the background (backoff <= 5 s)
                ss = samples(scrape(base))
                if value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 1:
                    break
            assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 1
            assert value(ss, "livy_recovery_sessions", kind="batch") == 250
            assert collector._client is client  # the same client, reconnected


@pytest.mark.slow
def test_hung_server_is_a_timeout_within_the_deadline(tmp_path):
    with zookeeper_server(tmp_path) as srv:
        cfg = {"exporter": {"scrape_timeout": 3}, "zookeeper": [{"hosts": srv.hosts, "name": "zk"}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
            assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 1
            srv.pause()
            try:
                ss = samples(scrape(base))
            finally:
                srv.resume()
            assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 0
            errs = find(ss, "sparkwatch_target_scrape_errors_total", target="zk")
            assert {e[1]["reason"] for e in errs} <= {"timeout", "connection"} and errs
            assert value(ss, "sparkwatch_target_scrape_duration_seconds", target="zk") <= 3.5


def test_probe_with_comma_separated_hosts(zk):
    target = f"{zk.hosts},127.0.0.1:{free_port()}"
    with running_exporter({"exporter": {"probe": {"allowed_targets": ["127.0.0.1:*"],
                                                  "modules": {"zookeeper": {"mntr": False}}}}}) as (base, _):
        ss = samples(scrape(base, f"/probe?module=zookeeper&target={target}"))
    assert value(ss, "livy_recovery_sessions", kind="batch") == 40000


def test_config():
    c = parse_config({"zookeeper": [{"hosts": "a:2181, b:2181", "chroot": "/x/"}]}).zookeeper[0]
    assert c.hosts == ["a:2181", "b:2181"] and c.connect_string() == "a:2181,b:2181/x"
    assert c.display_name() == "a:2181,b:2181/x"
    with pytest.raises(ConfigError, match=r"zookeeper\[0\]\.hosts"):
        parse_config({"zookeeper": [{"hosts": "a:2181/chroot"}]})
    with pytest.raises(ConfigError, match=r"zookeeper\[0\]\.paths"):
        parse_config({"zookeeper": [{"hosts": "a:2181", "paths": ["relative"]}]})
    with pytest.raises(ConfigError, match=r"zookeeper\[0\]\.digest_auth"):
        parse_config({"zookeeper": [{"hosts": "a:2181", "digest_auth": {"username": "u", "password": "p",
                                                                        "password_file": "/etc/hostname"}}]})


def test_parse_mntr():
    v = parse_mntr("zk_version\t3.8.0-abc, built on x\nzk_znode_count\t5\nnot a line\n")
    assert v == {"zk_version": "3.8.0-abc, built on x", "zk_znode_count": "5"}
    assert parse_mntr("mntr is not executed because it is not in the whitelist.\n") == {}


def test_expired_session_is_replaced_and_the_target_comes_back(tmp_path):
    with zookeeper_server(tmp_path) as srv:
        cfg = {"exporter": {"scrape_timeout": 3},
               "zookeeper": [{"hosts": srv.hosts, "name": "zk", "timeout": 2, "mntr": False}]}
        with running_exporter(cfg) as (base, app):
            ss = samples(scrape(base))
            assert value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk") == 1
            collector = app.targets[0].collector
            sid, pw = collector._client.client_id
            lost = threading.Event()
            collector._client.add_listener(lambda state: lost.set() if state == KazooState.LOST else None)
            # ZooKeeper's own way to expire a session: another client attaches to it and closes it.
            # The collector's client may win the session back before the close is sent: then again.
            for _ in range(5):
                other = KazooClient(hosts=srv.hosts, client_id=(sid, pw))
                other.start(10)
                other.stop()
                other.close()
                if lost.wait(5):
                    break
            assert lost.is_set(), "the session was never expired"
            ups = []
            for _ in range(6):
                ss = samples(scrape(base))
                ups.append(value(ss, "sparkwatch_target_up", kind="zookeeper", target="zk"))
                if ups[-1] == 1 and collector._client.client_id[0] != sid:
                    break
            assert ups[-1] == 1, ups
            assert value(ss, "livy_recovery_sessions", kind="batch") == 0
            assert collector._client.client_id[0] != sid  # a new ZooKeeper session


# --------------------------------------------------------------------------
# A silent server: the doctor and the exporter's shutdown end within the deadline

SILENT_SCRAPE_TIMEOUT = 3
#: what a run may take beyond the deadline plus a second: a machine's slowness, never a wait on the server
#: (the waits being guarded against are the session timeout, 10 s, or two-thirds of it)
SLACK = 2


@contextmanager
def silent_listener() -> Iterator[str]:
    """A loopback TCP listener that accepts every connection and never answers a byte: yields its host:port."""
    ls = socket.create_server(("127.0.0.1", 0))
    ls.settimeout(0.1)
    conns, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conns.append(ls.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, name="silent-listener", daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{ls.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        ls.close()
        for c in conns:
            c.close()


@contextmanager
def silent_server(kind: str, tmp_path) -> Iterator[Tuple[str, Optional[Callable[[], None]]]]:
    """(hosts, pause): a listener that never answers (pause is None), or a real ZooKeeper server
    that answers until pause() SIGSTOPs it (every JVM thread stopped: it answers nothing)."""
    if kind == "listener":
        with silent_listener() as hosts:
            yield hosts, None
    else:
        with zookeeper_server(tmp_path) as srv:
            yield srv.hosts, srv.pause


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["listener", "paused"])
def test_doctor_with_a_silent_server_ends_within_the_deadline(kind, tmp_path, monkeypatch, capsys):
    """kazoo's stop() waits for its connection thread, which waits on the silent server: the
    handshake's answer (the session timeout) or a heartbeat (two-thirds of it). The doctor must not."""
    from sparkwatch.doctor.reading import Reader

    real_read, starts = Reader.read, []
    with silent_server(kind, tmp_path) as (hosts, pause):
        def read(self):
            if pause is not None and starts:  # the second reading: the server, connected, now silent
                pause()
            starts.append(time.monotonic())
            return real_read(self)

        monkeypatch.setattr(Reader, "read", read)
        cfg = tmp_path / "sparkwatch.yml"
        cfg.write_text(f"exporter: {{scrape_timeout: {SILENT_SCRAPE_TIMEOUT}}}\n"
                       f"zookeeper: [{{hosts: '{hosts}', name: zk}}]\n")
        rc = main(["doctor", "--config.file", str(cfg), "--json"] + (["--watch", "1"] if pause else []))
        took = time.monotonic() - starts[-1]  # from the reading that met the silent server to the end
    out = capsys.readouterr().out
    assert rc == 1 and '"up": false' in out
    assert took < SILENT_SCRAPE_TIMEOUT + 1 + SLACK, took


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["listener", "paused"])
def test_shutdown_with_a_silent_server_ends_within_the_deadline(kind, tmp_path):
    """SIGTERM to a running sparkwatch while it scrapes a silent ZooKeeper: it exits within the
    scrape deadline plus a second (plus slack), not when kazoo gives up on the server."""
    with silent_server(kind, tmp_path) as (hosts, pause):
        cfg = {"exporter": {"scrape_timeout": SILENT_SCRAPE_TIMEOUT}, "zookeeper": [{"hosts": hosts, "name": "zk"}]}
        with exporter_process(cfg) as (base, proc):
            if pause is not None:
                assert value(scrape(base), "sparkwatch_target_up", target="zk") == 1
                pause()
            in_flight = threading.Thread(target=lambda: _scrape_quietly(base), daemon=True)
            in_flight.start()
            time.sleep(1)  # a scrape waits on the server
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # a raw SIGTERM: how the exporter ends is the point
            rc = proc.wait(60)
            took = time.monotonic() - start
    assert rc == 0
    assert took < SILENT_SCRAPE_TIMEOUT + 1 + SLACK, took


def _scrape_quietly(base: str) -> None:
    try:
        scrape(base)
    except Exception:  # the exporter may stop before it answers
        pass


def test_threads_flat_across_scrapes_of_a_silent_server_and_gone_at_close():
    """Scrapes of a silent server reuse the one client (no thread per scrape); close() returns at
    once and the client's threads end with it, not when the server would have timed out (20 s)."""
    with silent_listener() as hosts:
        before = set(threading.enumerate())
        c = _collector(hosts=hosts, timeout=20, mntr=False)
        counts = []
        for _ in range(4):
            with pytest.raises(TargetError) as ei:
                collect_once(c, 1.0)
            assert ei.value.reason == "connection"
            counts.append(len([t for t in threading.enumerate() if t not in before]))
        assert counts[0] > 0 and len(set(counts)) == 1, counts
        start = time.monotonic()
        c.close()
        took = time.monotonic() - start
        end = time.monotonic() + SLACK
        while [t for t in threading.enumerate() if t not in before] and time.monotonic() < end:
            time.sleep(0.05)
        left = [t.name for t in threading.enumerate() if t not in before]
    assert took < 1 + SLACK, took
    assert left == []


@pytest.mark.parametrize("data", [b"[" * 200_000, b'{"nextSessionId": ' + b"9" * 5000 + b"}", b"\xff\xfe",
                                  b'{"nextSessionId": true}', b"[1]", b'{"a": ' * 100_000])
def test_a_hostile_state_znode_costs_its_value_not_the_scrape(data):
    """Whoever can write the store's znodes chooses the bytes of ``state``: a nesting
    that overflowed the decoder's recursion (RecursionError, an internal error) or any
    other shape gives no value, never an exception."""
    from sparkwatch.collectors.zookeeper import _next_session_id

    assert _next_session_id(data) is None


def test_the_state_znode_of_livy_gives_its_next_session_id():
    from sparkwatch.collectors.zookeeper import _next_session_id

    assert _next_session_id(b'{"nextSessionId": 40001}') == 40001
