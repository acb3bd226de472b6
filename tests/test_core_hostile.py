"""Hostile targets: whatever a target sends (any string, any size, any speed), the
scrape ends within its deadline, that target alone is down with the right reason,
the other targets' values are unchanged, no collector thread outlives the
deadline by more than a second, and memory stays bounded.

The fault matrix runs every kind of target that is reached over the network:
spark and livy against testbed.faulty_http, zookeeper against a TCP server that
refuses, hangs or talks nonsense. (The jvm kind reads local files and /proc,
not a network peer; its hostile inputs are fuzzed in tests/test_perfdata.py.)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager

import psutil
import pytest

from testbed.exporter import no_scrape_threads_within, running_exporter, samples, scrape, scrape_threads, value
from testbed.faulty_http import faulty_server
from testbed.procs import free_port

DEADLINE = 3.0

#: mode of testbed.faulty_http -> reason the target is down with
HTTP_FAULTS = {
    "http500": "http_status",
    "html": "invalid_response",
    "text": "invalid_response",
    "truncated": "invalid_response",
    "hang": "timeout",
    "trickle": "timeout",
    "trickle_headers": "timeout",
    "slow_redirects": "timeout",
    "reset": "connection",
    "unauthorized": "auth",
    "containers": "limit",  # 12 MiB of [{},{},...]: its decoding does not fit the memory budget
    "deep": "invalid_response",
}


def _good_values(ss):
    """What the healthy reference target exports (must not change whatever the others do)."""
    return sorted((n, tuple(sorted(lab.items())), v) for n, lab, v in ss
                  if lab.get("target") == "good" and not n.startswith("sparkwatch_target_scrape_duration"))


@contextmanager
def _zookeeper_like(mode: str):
    """A TCP server on loopback: 'hang' accepts and never answers, 'garbage' answers nonsense."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()
    conns = []

    def loop():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            conns.append(c)
            if mode == "garbage":
                try:
                    c.sendall(b"\xff" * 64 + b"\xed\xa0\x80 not zookeeper\n" * 4)
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def _run_matrix_case(kind: str, target_entry: dict, expected_reason: str):
    with faulty_server("ok") as good:
        config = {
            "exporter": {"scrape_timeout": DEADLINE, "timeout_offset": 0},
            "spark": [{"name": "good", "url": good.url}],
        }
        config.setdefault(kind, []).append(target_entry)
        with running_exporter(config) as (base, _):
            reference = _good_values(samples(scrape(base)))
            rss_before = psutil.Process().memory_info().rss
            t0 = time.monotonic()
            text = scrape(base)
            took = time.monotonic() - t0
            rss_after = psutil.Process().memory_info().rss
            ss = samples(text)
            assert took < DEADLINE + 1.0, f"the scrape took {took:.1f}s against a {DEADLINE}s deadline"
            assert value(ss, "sparkwatch_target_up", kind=kind, target="bad") == 0
            assert value(ss, "sparkwatch_target_scrape_errors_total", kind=kind, target="bad",
                         reason=expected_reason) >= 1
            assert value(ss, "sparkwatch_target_up", kind="spark", target="good") == 1
            assert _good_values(ss) == reference
            assert rss_after - rss_before < 300 * 1024 * 1024
            # no collector thread outlives the deadline by more than a second
            end = t0 + DEADLINE + 1.0
            while scrape_threads() and time.monotonic() < end:
                time.sleep(0.05)
            assert not scrape_threads(), scrape_threads()


@pytest.mark.parametrize("mode", sorted(HTTP_FAULTS))
@pytest.mark.parametrize("kind", ["spark", "livy"])
def test_fault_matrix_http(kind, mode):
    with faulty_server(mode) as bad:
        _run_matrix_case(kind, {"name": "bad", "url": bad.url, "timeout": 30}, HTTP_FAULTS[mode])


@pytest.mark.parametrize("kind", ["spark", "livy"])
def test_fault_matrix_refused_and_tls_mismatch(kind):
    _run_matrix_case(kind, {"name": "bad", "url": f"http://127.0.0.1:{free_port()}"}, "connection")
    with faulty_server("ok") as plain:  # https:// to a plain-HTTP server
        _run_matrix_case(kind, {"name": "bad", "url": plain.url.replace("http://", "https://")}, "tls")


@pytest.mark.parametrize("mode", ["hang", "garbage"])
def test_fault_matrix_zookeeper(mode):
    with _zookeeper_like(mode) as hostport:
        _run_matrix_case("zookeeper", {"name": "bad", "hosts": [hostport], "timeout": 30},
                         "connection")


def test_fault_matrix_zookeeper_refused():
    _run_matrix_case("zookeeper", {"name": "bad", "hosts": [f"127.0.0.1:{free_port()}"]}, "connection")


# ---------------------------------------------------------------- one string, one value


def _app(name, **attempt):
    att = {"startTime": "2026-11-23T04:53:40.232GMT", "completed": False, "sparkUser": "u"}
    att.update(attempt)
    return {"id": "app-1", "name": name, "attempts": [att]}


@pytest.mark.parametrize("body", [
    b'[{"id": "app-1", "name": "stream \\ud800", "attempts": [{"completed": false}]}]',  # a lone surrogate
    b'[{"id": "app-\\udc80\\ud800", "name": "x", "attempts": [{"completed": false}]}]',
    b'[{"id": "app-1", "name": "' + b"n" * 100000 + b'", "attempts": [{"completed": false}]}]',
    b'[{"id": "app-1", "name": "a\\nb\\u0000c", "attempts": [{"completed": false}]}]',
])
def test_one_string_from_a_target_cannot_break_the_scrape(body):
    with faulty_server("body") as bad, faulty_server("ok") as good:
        bad.body = body
        config = {"spark": [{"name": "good", "url": good.url}, {"name": "bad", "url": bad.url}]}
        with running_exporter(config) as (base, _):
            for path in ("/metrics", "/"):
                r = __import__("requests").get(base + path, timeout=30)
                assert r.status_code == 200, r.text[:300]
            for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
                r = __import__("requests").get(base + "/metrics", headers={"Accept": accept}, timeout=30)
                assert r.status_code == 200
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="good") == 1
    assert value(ss, "sparkwatch_target_up", kind="spark", target="bad") == 1
    assert not [s for s in ss if s[0] == "sparkwatch_target_scrape_errors_total" and s[1]["reason"] == "internal"]
    infos = [lab for n, lab, _ in ss if n == "spark_app_info" and lab["target"] == "bad"]
    if b"app-\\udc80" in body:  # an id that cannot be put in a URL: that application is skipped
        assert infos == []
        assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="bad", reason="partial") >= 1
        return
    assert len(infos) == 1
    assert len(infos[0]["app_name"]) <= 512
    (infos[0]["app_id"] + infos[0]["app_name"]).encode("utf-8")  # valid UTF-8


@pytest.mark.parametrize("start", ["1e400", "-1e400", "1" + "0" * 400, "NaN"])
def test_numbers_out_of_range_are_absent_not_an_internal_error(start):
    body = ('[{"id": "app-1", "name": "x", "attempts": [{"completed": false, "startTimeEpoch": %s}]}]'
            % start).encode()
    with faulty_server("body") as bad:
        bad.body = body
        with running_exporter({"spark": [{"name": "bad", "url": bad.url}]}) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="bad") == 1
    assert not [s for s in ss if s[0] == "sparkwatch_target_scrape_errors_total" and s[1]["reason"] == "internal"]
    assert all(abs(v) != float("inf") and v == v for n, _, v in ss if n == "spark_app_uptime_seconds")


# ---------------------------------------------------------------- redirects


def test_a_probe_redirect_outside_the_allow_list_is_not_followed_and_no_credentials_follow():
    with faulty_server("ok") as elsewhere, faulty_server("redirect") as probed:
        probed.redirect_to = elsewhere.url + "/api/v1/applications"
        config = {"exporter": {"probe": {
            "allowed_targets": [probed.url],
            "modules": {"spark": {"basic_auth": {"username": "u", "password": "p"}}}}}}
        with running_exporter(config) as (base, _):
            text = scrape(base, f"/probe?module=spark&target={probed.url}")
    assert value(text, "sparkwatch_target_up", kind="spark") == 0
    assert value(text, "sparkwatch_target_scrape_errors_total", kind="spark", reason="invalid_response") == 1
    assert elsewhere.requests == []


def test_a_redirect_to_another_origin_gets_no_credentials():
    with faulty_server("ok") as driver, faulty_server("redirect") as proxy:
        proxy.redirect_to = driver.url.replace("127.0.0.1", "localhost") + "/api/v1/applications"
        config = {"spark": [{"name": "p", "url": proxy.url, "basic_auth": {"username": "u", "password": "pw"}}]}
        with running_exporter(config) as (base, _):
            text = scrape(base)
    assert value(text, "sparkwatch_target_up", kind="spark", target="p") == 1
    assert driver.requests, "the redirect was not followed"
    assert all("Authorization" not in h for _, h in driver.requests)
    assert all("Authorization" in h for _, h in proxy.requests)


def test_probe_allow_list_matches_the_parsed_url():
    with faulty_server("ok") as srv:
        port = srv.server_address[1]
        prefix = str(port)[:-1]
        config = {"exporter": {"probe": {"allowed_targets": [f"http://127.0.0.1:{port}", "http://spark-*.internal:4040"]}}}
        with running_exporter(config) as (base, _):
            import requests

            def status(target):
                return requests.get(f"{base}/probe", params={"module": "spark", "target": target}, timeout=30).status_code

            assert status(srv.url) == 200
            assert status(f"http://127.0.0.1:{prefix}") == 403  # a prefix of the allowed port
            assert status(f"http://127.0.0.1:{port}0") == 403
            assert status("http://spark-x.attacker.example/?.internal:4040") == 403
            assert status("http://spark-x.attacker.example#.internal:4040") == 403
            assert status("http://user@spark-1.internal:4040") == 403
            assert status(f"http://127.0.0.1:{port}@evil.example") == 403


def test_an_evicted_probe_target_leaves_no_thread_behind():
    with faulty_server("trickle_headers") as hang:
        config = {"exporter": {"scrape_timeout": 1, "timeout_offset": 0,
                               "probe": {"allowed_targets": [hang.url],
                                         "max_cached_targets": 4}}}
        with running_exporter(config) as (base, _):
            import requests

            for i in range(8):
                r = requests.get(f"{base}/probe", params={"module": "spark", "target": f"{hang.url}/p{i}"}, timeout=30)
                assert r.status_code == 200
            assert no_scrape_threads_within(), scrape_threads()


def test_json_bodies_are_bounded_in_cost_not_only_in_bytes():
    from sparkwatch.collector import TargetError
    from sparkwatch.httpclient import decode_json

    with pytest.raises(TargetError) as e:  # 1.8 MB of JSON, ~130 MiB of Python objects estimated
        decode_json(b"[" + b"{}," * 600_000 + b"{}]", "/x")
    assert e.value.reason == "limit"
    with pytest.raises(TargetError) as e:
        decode_json(b"[" * 100000 + b"]" * 100000, "/x")
    assert e.value.reason == "invalid_response"
    assert decode_json(json.dumps([{"a": 1}] * 1000).encode(), "/x")[0] == {"a": 1}
