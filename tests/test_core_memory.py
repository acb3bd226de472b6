"""Memory: what a scrape holds is bounded, whatever the targets send.

Decoding JSON costs memory per value, not per byte: 16 MiB of ``[1e1,1e1,...]``
is 4 million floats, about 130 MiB of Python objects, and a target fetches
several bodies at once. Every answer's memory (the body while it is read, the
JSON while it is decoded, the decoded answer while it is used) is taken from
the target's budget and the exporter's (see :class:`sparkwatch.httpbody.MemoryBudget`
and docs/security.md); an answer that does not fit is that request's ``limit``
error.

The end-to-end test runs the real exporter as a process of its own against
real HTTP servers on loopback serving hostile bodies, and reads its peak
resident size (``VmHWM``) before and after the scrape. An address-space limit
on the process keeps an exporter that does not bound its memory from taking
the machine's: it fails here instead.
"""

from __future__ import annotations

import gc
import json
import resource
import time
import tracemalloc
from contextlib import ExitStack, contextmanager

import pytest

from sparkwatch import httpclient
from sparkwatch.collector import Deadline, TargetError
from sparkwatch.httpbody import (MAX_BODY_BYTES, MAX_HELD_BYTES, MAX_TARGET_BYTES, PROCESS_BUDGET,
                                 RSS_OVERHEAD_BYTES, TARGET_FLOOR_BYTES, MemoryBudget, decode_json, json_cost)
from sparkwatch.httpclient import HttpClient
from sparkwatch.targetconfig import HttpTarget
from testbed.exporter import exporter_process, find, running_exporter, scrape, value
from testbed.faulty_http import faulty_server
from testbed.hostile_json import SHAPES, HostileServer, LyingServer, body, hostile_fleet, status_bytes
from testbed.spark import DATA, ReplayServer, load_recording, routes_from_recording

MiB = 1024 * 1024


@contextmanager
def _exporter_with_address_space_limit(config: dict, headroom: int = 3 * 1024 * MiB):
    with exporter_process(config) as (base, proc):
        cap = status_bytes(proc.pid, "VmSize") + headroom
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (cap, cap))
        yield base, proc


def test_hostile_bodies_are_each_a_limit_error_and_the_exporter_peak_memory_stays_within_the_bound():
    with ExitStack() as stack:
        # every shape; "apps": 40 applications whose every endpoint answers 16 MiB of floats
        # (fetched 8 at a time, ahead of the application being read); "gzip": 64 MiB of floats
        # gzip-compressed to a few hundred KiB on the wire
        servers = hostile_fleet(stack, MAX_BODY_BYTES)
        good = stack.enter_context(faulty_server("ok"))
        targets = [{"name": name, "url": srv.url, "timeout": 60} for name, srv in servers.items()]
        config = {"exporter": {"scrape_timeout": 60}, "spark": targets + [{"name": "good", "url": good.url}]}
        with _exporter_with_address_space_limit(config) as (base, proc):
            idle = status_bytes(proc.pid, "VmHWM")
            first = scrape(base)
            second = scrape(base)
            peak = status_bytes(proc.pid, "VmHWM")
            alive = proc.poll() is None

    assert alive
    for text in (first, second):
        assert value(text, "sparkwatch_target_up", kind="spark", target="good") == 1
        for name in SHAPES:
            assert value(text, "sparkwatch_target_up", kind="spark", target=name) == 0, name
        for name in list(SHAPES) + ["apps", "gzip"]:
            assert value(text, "sparkwatch_target_scrape_errors_total", kind="spark", target=name,
                         reason="limit") >= 1, name
    # the bound docs/security.md states: the process' budget, each target's floor, and what
    # the interpreter needs besides (threads, connections, headers)
    bound = MAX_HELD_BYTES + (len(servers) + 1) * TARGET_FLOOR_BYTES + RSS_OVERHEAD_BYTES
    grew = peak - idle
    print(f"peak resident size {peak / MiB:.0f} MiB, {grew / MiB:.0f} MiB above idle; bound {bound / MiB:.0f} MiB")
    assert grew <= bound, f"the exporter grew by {grew / MiB:.0f} MiB, more than the bound of {bound / MiB:.0f} MiB"


def _with_classpath(env: dict, size: int) -> bytes:
    """A driver's /environment grown to ``size`` bytes by a long classpath (as an
    application that ships its dependencies as jars has)."""
    env = json.loads(json.dumps(env))
    entries = env["classpathEntries"]
    out = json.dumps(env).encode()
    while len(out) < size:
        n = len(entries)
        entries += [[f"/opt/app/jars/dependency-{n + i:06d}.jar", "System Classpath"] for i in range(2000)]
        out = json.dumps(env).encode()
    return out


def _held_once_settled(app) -> list:
    """What each target's memory budget holds, then the process': once the request
    threads a scrape gave up on have ended (they do once the deadline closed their
    connections), at most 20 s later."""
    budgets = [t.collector.http.budget for t in app.targets] + [PROCESS_BUDGET]
    for _ in range(100):
        gc.collect()
        held = [b.used for b in budgets]
        if not any(held):
            break
        time.sleep(0.2)
    return held


def test_targets_that_declare_large_bodies_and_send_nothing_hold_no_budget_from_the_others():
    """A target that declares 16 MiB bodies and sends a byte now and then costs the
    exporter no memory: it must not hold the process' memory budget either. Three such
    targets (each UI read 4 requests at a time) and a healthy driver whose /environment
    is 1.7 MiB (asked for once the liars' answers have begun): the healthy target is up
    with its data. Afterwards, every budget is back to zero."""
    d = DATA / "spark-4.0.1"
    rec = load_recording(d)
    app_id = rec["index"]["app_id"]
    routes = routes_from_recording(d)
    env_path = f"/api/v1/applications/{app_id}/environment"
    big = _with_classpath(rec["environment.json"], int(1.7 * MiB))
    with ExitStack() as stack:
        liars = [stack.enter_context(LyingServer(MAX_BODY_BYTES)) for _ in range(3)]

        def environment() -> bytes:
            # the liars' bodies have begun (the exporter holds what it holds for them)
            for liar in liars:
                liar.wait_lying(2, 20)
            time.sleep(0.5)  # their heads read by the exporter
            return big

        routes[env_path] = (200, environment, "application/json")
        healthy = stack.enter_context(ReplayServer(routes))
        targets = [{"name": f"liar-{i}", "url": liar.url} for i, liar in enumerate(liars)]
        config = {"exporter": {"scrape_timeout": 15},
                  "spark": targets + [{"name": "healthy", "url": healthy.url}]}
        with running_exporter(config) as (base, app):
            text = scrape(base)
            held = _held_once_settled(app)

    errors = find(text, "sparkwatch_target_scrape_errors_total", target="healthy")
    assert not errors
    assert value(text, "sparkwatch_target_up", kind="spark", target="healthy") == 1, errors
    # its data: what its 1.7 MiB /environment says
    cleaner = find(text, "spark_cleaner_periodic_gc_interval_seconds", target="healthy", app_id=app_id)
    assert [v for _, _, v in cleaner] == [180], errors
    for i in range(len(liars)):
        assert value(text, "sparkwatch_target_up", kind="spark", target=f"liar-{i}") == 0
    assert held == [0] * len(held), "memory budgets still held after the scrape"


def test_every_failed_request_gives_back_what_it_held_and_never_more(monkeypatch):
    """Timeouts, cut-off and reset answers, answers that do not fit, redirects to nowhere,
    HTTP errors: once the scrape is over, every budget is back to zero; and no answer
    ever gave back more than was held (the accounting never goes below zero)."""
    over = []
    give = MemoryBudget.give

    def checked_give(self, n):
        if n > self.used:  # what is given back was taken, and is still counted in ``used``
            over.append((n, self.used))
        give(self, n)

    monkeypatch.setattr(MemoryBudget, "give", checked_give)
    modes = ["truncated", "hang", "trickle", "reset", "http500", "html", "deep", "containers", "slow_redirects"]
    with ExitStack() as stack:
        servers = {m: stack.enter_context(faulty_server(m)) for m in modes}
        servers["liar"] = stack.enter_context(LyingServer(MAX_BODY_BYTES))
        servers["floats"] = stack.enter_context(HostileServer("floats", MAX_BODY_BYTES))
        # every application's jobs, stages, executors, environment: too costly to decode
        servers["apps"] = stack.enter_context(HostileServer("floats", 2 * MiB, where="apps", apps=3))
        config = {"exporter": {"scrape_timeout": 5},
                  "spark": [{"name": name, "url": srv.url} for name, srv in servers.items()]}
        with running_exporter(config) as (base, app):
            texts = [scrape(base) for _ in range(2)]
            held = _held_once_settled(app)

    for text in texts:  # they did fail
        for name in servers:
            if name != "apps":
                assert value(text, "sparkwatch_target_up", kind="spark", target=name) == 0, name
        assert value(text, "sparkwatch_target_scrape_errors_total", kind="spark", target="apps", reason="limit") >= 1
    assert held == [0] * len(held), dict(zip(list(servers) + ["process"], held))
    assert not over, f"gave back more than was held: {over[:5]}"


# ---------------------------------------------------------------- the pieces, in-process


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_cost_of_decoding_is_never_underestimated(shape):
    """json_cost (what decode_json takes from the budget before it decodes) is at least
    what decoding really allocates at its peak, for every hostile shape."""
    raw = body(shape, 1 * MiB)
    budget = MemoryBudget(1 << 40)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        data = decode_json(raw, "/x", budget=budget)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert json_cost(raw) >= peak, f"{shape}: estimated {json_cost(raw)}, decoding took {peak}"
    assert budget.used > 0  # the decoded answer holds its share...
    del data
    gc.collect()
    assert budget.used == 0  # ...until it is dropped


def test_a_body_that_does_not_fit_the_budget_is_a_limit_error_before_it_is_decoded():
    raw = body("floats", 4 * MiB)
    budget = MemoryBudget(json_cost(raw) - 1)
    with pytest.raises(TargetError) as e:
        decode_json(raw, "/api/v1/applications", budget=budget)
    assert e.value.reason == "limit"
    assert budget.used == 0
    assert json.loads(raw)  # a valid body, refused for its cost only


def test_a_target_floor_is_kept_when_the_process_budget_is_spent():
    process = MemoryBudget(10 * MiB)
    hostile = MemoryBudget(8 * MiB, floor=1 * MiB, parent=process)
    healthy = MemoryBudget(8 * MiB, floor=1 * MiB, parent=process)
    assert hostile.take(8 * MiB) is None
    assert healthy.take(2 * MiB) is None  # 1 MiB of it beyond its floor: the process has 8 of 10 taken
    assert healthy.take(3 * MiB) is not None  # beyond its floor, the process budget is spent
    assert hostile.take(1) is not None  # its own budget is spent
    hostile.give(8 * MiB)
    assert healthy.take(3 * MiB) is None
    healthy.give(5 * MiB)
    assert (process.used, hostile.used, healthy.used) == (0, 0, 0)


def test_a_client_reading_hostile_bodies_holds_nothing_afterwards():
    """Every body, decoded or refused, gives its share back: the budget returns to zero."""
    with HostileServer("floats", 2 * MiB) as srv, faulty_server("ok") as ok:
        client = HttpClient(HttpTarget(url=srv.url, timeout=30))
        # 2 MiB of floats are read within 6 MiB, but cost ~70 MiB decoded
        client.budget = MemoryBudget(6 * MiB, parent=httpclient.PROCESS_BUDGET)
        try:
            with pytest.raises(TargetError) as e:
                client.get_json("/api/v1/applications", Deadline(30))
            assert e.value.reason == "limit"
            assert client.get_json(ok.url + "/api/v1/applications", Deadline(30)) == []
            resp = client.get("/api/v1/applications", Deadline(30))
            assert client.budget.used >= len(resp.content)  # a body held by its response
            del resp
            gc.collect()
            assert client.budget.used == 0
        finally:
            client.close()


def test_a_declared_length_that_could_never_fit_is_refused_before_the_body_is_read():
    """Declaring costs nothing, so a declared length holds nothing; but one larger than
    the target's whole budget (or the body cap) can never be read: a ``limit`` at once,
    not a read until the deadline."""
    with LyingServer(8 * MiB) as liar:
        client = HttpClient(HttpTarget(url=liar.url, timeout=30))
        client.budget = MemoryBudget(4 * MiB, parent=httpclient.PROCESS_BUDGET)
        try:
            with pytest.raises(TargetError) as e:
                client.get("/api/v1/applications/x/jobs", Deadline(5))
        finally:
            client.close()
    assert e.value.reason == "limit", e.value.message
    assert "4 MiB" in e.value.message
    assert client.budget.used == 0


def test_a_response_head_larger_than_the_cap_is_a_limit_error_before_it_is_all_read():
    """http.client alone reads 100 header lines of 64 KiB each (6.4 MiB per request in
    flight) before anything could count them; the head is capped at MAX_HEAD_BYTES."""
    import socket
    import threading

    from sparkwatch.httpclient import MAX_HEAD_BYTES

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    sent = []

    def serve():
        c, _ = srv.accept()
        with c:
            c.recv(65536)
            try:
                c.sendall(b"HTTP/1.1 200 OK\r\n")
                for i in range(90):  # 90 x 60 KiB: within http.client's limits
                    c.sendall(b"X-Filler-%d: " % i + b"a" * (60 * 1024) + b"\r\n")
                    sent.append(i)
                c.sendall(b"Content-Length: 2\r\n\r\n[]")
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = HttpClient(HttpTarget(url=f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=30))
    try:
        with pytest.raises(TargetError) as e:
            client.get_json("/api/v1/applications", Deadline(30))
    finally:
        client.close()
        t.join(10)
        srv.close()
    assert e.value.reason == "limit", e.value.message
    assert str(MAX_HEAD_BYTES) in e.value.message
    assert client.budget.used == 0
