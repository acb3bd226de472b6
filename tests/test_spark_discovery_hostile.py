"""Cluster discovery against hostile cluster data: whoever submits an application
chooses its driver UI's address (a standalone master's link, a YARN
trackingUrl), its name, and how many applications there are.

- a discovered UI is fetched only where the policy allows (the manager's own
  proxy, the master's host, or ``discovered_ui_allowed``), and never with the
  manager's credentials; a refused UI is counted, never silently dropped;
- the master's home page costs bounded bytes and CPU, and no CPU after the
  scrape has answered;
- applications missing from the home page are looked up at most
  ``max_applications`` at a time and within the deadline: the target is
  ``partial``, not down.

The masters are testbed.standalone_master (recorded pages of real masters),
the ResourceManager testbed.yarn, the drivers recorded answers of real drivers.
"""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from exporter.clusters import ui_links_of_master_page
from exporter.collector import Deadline
from testbed.exporter import find, no_scrape_threads_within, running_exporter, samples, scrape, value
from testbed.spark import ReplayServer, recording_dirs, routes_from_recording
from testbed.standalone_master import MasterApp, StandaloneMaster

def _recorded():
    out = []
    for d in recording_dirs():
        out.append((json.loads((d / "index.json").read_text())["app_id"], routes_from_recording(d)))
    return out


def _target_errors(ss, target, reason):
    found = find(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target=target, reason=reason)
    return found[0][2] if found else 0


# ---------------------------------------------------------------- item: the home page's cost

PAGE_CPU_BOUND = 1.0  # seconds of CPU after the answer; the unbounded parse burnt 7 s and more


def _cpu_after_answer(base: str, timeout_header: float):
    """Scrape; return (samples, seconds to answer, process CPU seconds from the answer
    until the scrape's work has ended)."""
    t0 = time.monotonic()
    text = scrape(base, timeout_header=timeout_header)
    elapsed = time.monotonic() - t0
    cpu0 = time.process_time()
    assert no_scrape_threads_within(120), "the scrape's work did not end"
    return samples(text), elapsed, time.process_time() - cpu0


@pytest.mark.parametrize("page", ["lt", "open_tag", "rows"])
def test_a_hostile_master_home_page_costs_no_cpu_after_the_answer(page):
    bodies = {
        "lt": lambda: b"<" * (16 * 1024 * 1024),  # 16 MiB of '<'
        "open_tag": lambda: b'<a href="' + b"x" * (15 * 1024 * 1024),  # a tag that never ends
        "rows": lambda: b'<tr><td><a href="app/?appId=app-1">x</a><a href="">' * 300_000,
    }
    with StandaloneMaster() as m:
        m.apps = [MasterApp("app-1", "a", ui="")]
        m.home_body = bodies[page]()
        cfg = {"exporter": {"scrape_timeout": 30, "timeout_offset": 0},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone"}]}
        with running_exporter(cfg) as (base, _):
            ss, elapsed, cpu = _cpu_after_answer(base, timeout_header=2)
    assert elapsed < 2 + 1.0, f"answered after {elapsed:.1f}s"
    assert cpu < PAGE_CPU_BOUND, f"{cpu:.2f}s of CPU after the scrape answered"
    # whatever the page, the target answered: down with a reason, or up and partial
    up = value(ss, "sparkwatch_target_up", kind="spark", target="m")
    reasons = {lab["reason"] for n, lab, v in ss if n == "sparkwatch_target_scrape_errors_total" and v}
    assert reasons and "internal" not in reasons
    if up == 0:
        assert reasons <= {"timeout", "invalid_response"}


def test_the_home_page_parse_keeps_bounded_memory_and_stops_at_the_deadline():
    rows = '<tr><td><a href="app/?appId=app-1">x</a></td><td><a href="http://d:4040">n</a></td></tr>'
    page = rows * 40_000 + '<a href="x">' + "y" * 2_000_000  # 3.6 MB of rows, a link 2 MB long
    tracemalloc.start()
    try:
        links = ui_links_of_master_page(page, "http://m/", wanted={"app-2"}, deadline=Deadline(60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert links == {}
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB for a {len(page) / 1e6:.0f} MB page"
    # an expired deadline stops the parse (a timeout), whatever the page
    from exporter.collector import TargetError

    with pytest.raises(TargetError) as e:
        ui_links_of_master_page("<" * 1_000_000, "http://m/", deadline=Deadline(0))
    assert e.value.reason == "timeout"


# ---------------------------------------------------------------- item: many hidden applications


def _hidden_apps(n, on_home_page):
    return [MasterApp(f"app-20261201000000-{i:04d}", f"batch-{i}", ui="", on_home_page=on_home_page)
            for i in range(n)]


@pytest.mark.parametrize("on_home_page", [True, False], ids=["listed-without-ui", "missing-from-home-page"])
def test_three_thousand_hidden_applications_leave_the_target_partial_not_down(on_home_page):
    rec = _recorded()
    with ReplayServer(rec[0][1]) as d0, ReplayServer(rec[1][1]) as d1, StandaloneMaster() as m:
        m.apps = ([MasterApp("app-20261130000000-0000", "seen-0", ui=d0.url),
                   MasterApp("app-20261130000000-0001", "seen-1", ui=d1.url)]
                  + _hidden_apps(3000, on_home_page))
        cfg = {"exporter": {"scrape_timeout": 5, "timeout_offset": 0},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", "max_applications": 50}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base, timeout_header=5))
        lookups = [p for p, _ in m.requests if p.startswith("/app/")]
    assert value(ss, "sparkwatch_target_up", kind="spark", target="m") == 1
    assert value(ss, "spark_cluster_applications", target="m") == 3002
    assert value(ss, "spark_cluster_applications_scraped", target="m") == 2
    assert sorted(lab["app_id"] for n, lab, _ in ss if n == "spark_app_info") == sorted(a for a, _ in rec[:2])
    assert _target_errors(ss, "m", "partial") >= 1
    assert _target_errors(ss, "m", "timeout") == 0
    if on_home_page:
        # the home page says they have no UI (an empty link): nothing to look up
        assert lookups == []
    else:
        assert 0 < len(lookups) <= 50
